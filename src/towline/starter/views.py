"""What a person is told about a run: what waits and how to answer it, the decisions people
made, the fixes and re-runs, each task's one-line note.

Pure functions of a :class:`RunState`, shared by ``towline status``, the live view,
``towline list`` and the dashboard, so all of them say the same thing in the same words.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import get_args

from towline.state import Decision, ErrorInfo, RunState, Status, TaskState

STATUSES: tuple[str, ...] = get_args(Status)

# The answers a task waiting for a person takes, by what it waits for. Budget and breaker
# waits are not answered per task: the run's budget is raised, or the breaker closes.
ANSWERS: dict[str, tuple[str, ...]] = {
    "approval": ("approve", "reject"),
    "operator": ("retry", "skip", "abort"),
}
_PAST = {
    "approve": "approved",
    "reject": "rejected",
    "retry": "retried",
    "skip": "skipped",
    "abort": "aborted",
}
_WHO = {
    "approval": "a person's approval",
    "operator": "an operator (the task failed)",
    "budget": "more budget",
    "breaker": "a circuit breaker to close",
}


@dataclass(frozen=True)
class Wait:
    """A task that waits, for what, and how it is answered."""

    task: str  # workstream.task
    waiting_for: str  # approval | operator | budget | breaker
    reason: str
    answers: tuple[str, ...]
    deadline: datetime | None
    error: ErrorInfo | None
    tool: str = ""

    @property
    def awaits(self) -> str:
        """Who or what the task waits for, in words."""
        return _WHO.get(self.waiting_for, self.waiting_for)

    def command(self, run_id: str) -> str:
        """The command that answers it (for budget and breaker waits: what the reason says)."""
        if self.answers:
            return f"towline {'|'.join(self.answers)} {run_id} {self.task}"
        _, sep, how = self.reason.partition(": towline ")
        return f"towline {how}" if sep else ""


def waits(state: RunState) -> list[Wait]:
    """Every task of the run that waits, in plan order."""
    found = []
    for wid, ws in state.workstreams.items():
        for tid, t in ws.tasks.items():
            if t.status == "waiting" and t.waiting_for is not None:
                found.append(
                    Wait(
                        task=f"{wid}.{tid}",
                        waiting_for=t.waiting_for,
                        reason=t.reason or "",
                        answers=ANSWERS.get(t.waiting_for, ()),
                        deadline=t.wait_deadline,
                        error=t.error if t.waiting_for == "operator" else None,
                        tool=t.tool,
                    )
                )
    return found


_OF = {
    "approval": "approval of {}",
    "operator": "an operator for {} (it failed)",
    "budget": "budget for {}",
    "breaker": "a circuit breaker before {}",
}


def waits_in_words(state: RunState, *, commands: bool = False) -> str:
    """What the run waits for, in one line: ``approval of prod.deploy``; with
    ``commands``, each followed by the command that answers it."""
    parts = []
    for w in waits(state):
        text = _OF.get(w.waiting_for, w.waiting_for + " of {}").format(w.task)
        if commands and (command := w.command(state.run_id)):
            text += f": {command}"
        parts.append(text)
    if state.status == "waiting" and state.reason and state.reason.startswith("paused"):
        resume = f": towline resume {state.run_id}" if commands else ""
        parts.insert(0, state.reason + resume)
    return "; ".join(parts)


def decision_text(d: Decision) -> str:
    """``approved by ana: ship it``; ``rejected at its timeout (no answer in time)``."""
    verb = _PAST.get(d.answer, d.answer)
    who = "at its timeout" if d.by == "timeout" else f"by {d.by}"
    note = f": {d.note}" if d.note and d.by != "timeout" else ""
    if d.by == "timeout" and d.note:
        note = f" ({d.note})"
    return f"{verb} {who}{note}"


# Tools whose failure message is the command they ran: what the command printed last says
# why it failed, so it comes first. Other tools' messages already say why.
_SAYS_WHY_IN_OUTPUT = frozenset({"shell"})


def error_text(error: ErrorInfo, tool: str | None = None) -> str:
    """The error as a person reads it: its category and its message; for a command
    (``shell``), what it printed last first, then the message that names the command."""
    said = _last_line(error.output) if tool in _SAYS_WHY_IN_OUTPUT else ""
    if said and not error.message.endswith(said):
        return f"{error.category}: {said} ({_short(error.message, 60)})"
    return f"{error.category}: {error.message}"


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _last_line(text: str | None) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def history_parts(t: TaskState) -> list[str]:
    """Decisions, fixes and re-runs of a task, each in a few words."""
    parts = [decision_text(d) for d in t.decisions]
    if t.fixes:
        parts.append(f"{t.fixes} fix{'es' if t.fixes != 1 else ''}")
    if t.runs > 1:
        parts.append(f"ran {t.runs} times")
    if t.rollback_error is not None:
        parts.append(f"rollback failed: {error_text(t.rollback_error)}")
    return parts


def task_note(run_id: str, task: str, t: TaskState) -> str:
    """What a person needs to know about a task beyond its status, in one line."""
    parts: list[str] = []
    if t.status == "waiting" and t.waiting_for is not None:
        wait = Wait(task, t.waiting_for, t.reason or "", ANSWERS.get(t.waiting_for, ()), None, None)
        if t.error is not None and t.waiting_for == "operator":
            parts.append(f"failed: {error_text(t.error, t.tool)}")
        if wait.answers:
            parts.append(f"waiting for {wait.awaits}: {wait.command(run_id)}")
        else:
            parts.append(t.reason or f"waiting for {wait.awaits}")
    elif t.error is not None:
        parts.append(error_text(t.error, t.tool))
    elif t.cached:
        parts.append("cached: an earlier identical result, the tool did not run")
    elif t.reason:
        parts.append(t.reason)
    parts += history_parts(t)
    return "; ".join(parts)
