"""The run's bookkeeping, as plain classes: what workflow code keeps, with no Temporal in it.

:class:`SlotPool` shares a plan-level ``max_parallel`` among the workstreams in flight,
:class:`ExportRoutes` says which workstreams wait for which task of another, and
:class:`Progress` keeps the run's counts and its short lists (what waits, what failed,
what ended last) for the Web UI. Every operation costs O(1) (or O(what it touches)), so a
run of thousands of workstreams does the same work per event as a run of one.
"""

from __future__ import annotations

from collections import Counter, defaultdict, deque
from collections.abc import Iterable, Mapping

from pydantic import BaseModel, Field


class SlotPool(BaseModel):
    """A plan-level ``max_parallel``: tasks in flight across the whole run.

    Each workstream gets a share of the pool when it starts, as its own ``max_parallel``,
    and gives it back when it ends: no signal per task between the run and its
    workstreams. A share is the pool split evenly among the workstreams still to end
    (at least one slot), never more than the workstream's own limit or what is free.
    """

    size: int
    held: dict[str, int] = Field(default_factory=dict)

    @property
    def free(self) -> int:
        return self.size - sum(self.held.values())

    def take(self, ws_id: str, *, limit: int, unfinished: int) -> int | None:
        """Slots for ``ws_id`` (now held), or None when none are free."""
        if self.free < 1:
            return None
        share = max(1, self.size // max(1, min(unfinished, self.size)))
        got = max(1, min(limit, share, self.free))
        self.held[ws_id] = got
        return got

    def give_back(self, ws_id: str) -> None:
        self.held.pop(ws_id, None)


class ExportRoutes:
    """Who needs which ``ws.task`` of another workstream, both ways, in plan order."""

    def __init__(self, needs: Mapping[str, Iterable[str]]) -> None:
        # Sorted lists, never sets: a set's order changes between processes (hash
        # randomisation), and signals sent in that order would not replay elsewhere.
        self.needs: dict[str, list[str]] = {ws: sorted(refs) for ws, refs in needs.items()}
        waiters: dict[str, list[str]] = defaultdict(list)
        exports: dict[str, set[str]] = defaultdict(set)
        for ws, refs in self.needs.items():
            for ref in refs:
                waiters[ref].append(ws)
                owner, tid = ref.split(".", 1)
                exports[owner].add(tid)
        self._waiters = {ref: sorted(ws) for ref, ws in waiters.items()}
        self._exports = {owner: sorted(tids) for owner, tids in exports.items()}

    def exports(self, ws_id: str) -> list[str]:
        """The tasks of ``ws_id`` other workstreams need."""
        return self._exports.get(ws_id, [])

    def waiters(self, ref: str) -> list[str]:
        """The workstreams that need ``ref``."""
        return self._waiters.get(ref, [])

    def wanted_by(self, ws_id: str) -> list[str]:
        """The refs ``ws_id`` needs from other workstreams."""
        return self.needs.get(ws_id, [])


SHOWN = 8  # entries of each short list in the run's details
_ANSWERS = {
    "approval": ("approve", "reject"),
    "operator": ("retry", "skip", "abort"),
    "answer": ("answer",),
}


class Progress:
    """The run's counts by status and its short lists, kept as things happen.

    Built from the workstreams' statuses once per run execution (O(workstreams), after a
    start or a continue-as-new), then O(1) per change.
    """

    def __init__(self, statuses: Mapping[str, str]) -> None:
        self.total = len(statuses)
        self.counts: Counter[str] = Counter(statuses.values())
        self.waiting: dict[str, list[str]] = {}
        self.waiting_total = 0  # the waits in ``waiting``, all workstreams together
        self.failed: dict[str, str] = {}
        self.failures = 0
        self.recent: deque[str] = deque(maxlen=SHOWN)

    def moved(self, ws_id: str, old: str, new: str, reason: str | None = None) -> None:
        """Workstream ``ws_id`` went from ``old`` to ``new``."""
        if old == new:
            return
        self.counts[old] -= 1
        self.counts[new] += 1
        if new in ("failed", "rolled_back"):
            self.failures += 1
            if len(self.failed) < SHOWN:
                self.failed[ws_id] = reason or new
        if new in ("succeeded", "failed", "skipped", "cancelled", "rolled_back"):
            self.waiting_total -= len(self.waiting.pop(ws_id, []))
            self.recent.append(f"{ws_id} {new.replace('_', ' ')}")

    def waits(self, ws_id: str, what: list[str]) -> None:
        """What the tasks of ``ws_id`` wait for now (``["deploy: approval"]``)."""
        self.waiting_total -= len(self.waiting.pop(ws_id, []))
        if what:
            self.waiting[ws_id] = list(what)
            self.waiting_total += len(what)

    def summary(self) -> str:
        """``3 running, 120 pending, 877 succeeded``: the counts in a fixed order."""
        order = (
            "running",
            "waiting",
            "pending",
            "succeeded",
            "failed",
            "rolled_back",
            "skipped",
            "cancelled",
        )
        parts = [f"{self.counts[s]} {s.replace('_', ' ')}" for s in order if self.counts[s] > 0]
        return ", ".join(parts) or "nothing yet"

    def details(self, run_id: str, status: str, *, paused_by: str | None) -> str:
        """The run's page in the Web UI ("current details"): what is happening, who is
        awaited for what and the update that answers, what failed; bounded in size."""
        lines = [f"**Run {status}**: {self.total} workstream(s): {self.summary()}"]
        if paused_by:
            lines.append(
                f"\nPaused by {paused_by}: send the update `resume` (or "
                f"`towline resume {run_id}`) to start tasks again."
            )
        if self.waiting:
            lines.append("\n**Waiting for a person**")
            shown = 0
            for ws_id, waits in self.waiting.items():  # stops after SHOWN: O(1) per call
                for wait in waits[: SHOWN - shown]:
                    lines.append(f"- {_how_to_answer(run_id, ws_id, wait)}")
                    shown += 1
                if shown >= SHOWN:
                    break
            if self.waiting_total > shown:
                lines.append(f"- ... and {self.waiting_total - shown} more")
        if self.failed:
            lines.append("\n**Failed**")
            lines += [f"- {ws_id}: {why}" for ws_id, why in self.failed.items()]
            if self.failures > len(self.failed):
                lines.append(f"- ... and {self.failures - len(self.failed)} more")
        if self.recent:
            lines.append("\n**Latest**: " + ", ".join(reversed(self.recent)))
        return "\n".join(lines)


def _how_to_answer(run_id: str, ws_id: str, wait: str) -> str:
    """``api.deploy waits for approval: update approve (or reject) with "api.deploy"``."""
    tid, _, what = wait.partition(": ")
    ref = f"{ws_id}.{tid}"
    answers = _ANSWERS.get(what)
    if answers is None:
        return f"{ref} waits for {what or 'something'}"
    names = " or ".join(f"`{a}`" for a in answers)
    cli = "|".join(answers)
    return (
        f"{ref} waits for {'an ' if what[0] in 'aeiou' else ''}{what}: send the update {names} "
        f'with `"{ref}"` (or `towline {cli} {run_id} {ref}`)'
    )
