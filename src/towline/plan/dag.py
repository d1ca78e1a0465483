"""Pure scheduling for one workstream's DAG of tasks.

The scheduler keeps, for each task, how many of its needs are still unmet, and a heap of
ready tasks ordered by priority (higher first) and then plan order. Finishing a task
touches only its dependents, so a whole run costs O(tasks + edges) plus heap operations:
a 10,000-task workstream never recomputes its ready set from scratch.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

from towline.plan.expressions import task_refs
from towline.plan.spec import PlanSpec


@dataclass(frozen=True)
class Node:
    id: str
    needs: tuple[str, ...] = ()
    priority: int = 0


@dataclass
class Scheduler:
    """Ready-set bookkeeping. ``needs`` name local task ids or ``ws.task`` refs outside.

    A task leaves the ready set when it is popped, taken (:meth:`take`), settled or
    blocked; entries of the latter kinds leave the heap lazily, so :meth:`has_ready` and
    :meth:`ready_count` never count a task that can no longer start. After :meth:`stop`
    nothing is ready any more, whatever finishes later.
    """

    nodes: list[Node]
    _unmet: dict[str, int] = field(default_factory=dict)
    _order: dict[str, int] = field(default_factory=dict)
    _priority: dict[str, int] = field(default_factory=dict)
    _dependents: dict[str, list[str]] = field(default_factory=dict)
    _ready: list[tuple[int, int, str]] = field(default_factory=list)
    _gone: set[str] = field(default_factory=set)  # settled, blocked or taken: never ready
    _blocked: set[str] = field(default_factory=set)
    _outcomes: dict[str, bool] = field(default_factory=dict)
    _stopped: bool = False

    def __post_init__(self) -> None:
        for i, n in enumerate(self.nodes):
            self._order[n.id] = i
            self._priority[n.id] = n.priority
            self._unmet[n.id] = len(n.needs)
            for need in n.needs:
                self._dependents.setdefault(need, []).append(n.id)
        for n in self.nodes:
            if not n.needs:
                self._push(n.id)

    def _push(self, task_id: str) -> None:
        if not self._stopped:
            heapq.heappush(self._ready, (-self._priority[task_id], self._order[task_id], task_id))

    def _prune(self) -> None:
        while self._ready and self._ready[0][2] in self._gone:
            heapq.heappop(self._ready)

    def has_ready(self) -> bool:
        self._prune()
        return bool(self._ready)

    def ready_count(self) -> int:
        """How many tasks are ready (an upper bound: entries gone below the top leave lazily)."""
        self._prune()
        return len(self._ready)

    def pop_ready(self) -> str | None:
        """The highest-priority ready task, now taken out of the ready set."""
        self._prune()
        if not self._ready:
            return None
        task_id = heapq.heappop(self._ready)[2]
        self._gone.add(task_id)
        return task_id

    def take(self, task_id: str) -> None:
        """Take ``task_id`` out of the ready set without popping it (it is already running,
        e.g. a task carried across a continue-as-new while it waits for a person)."""
        self._gone.add(task_id)

    def stop(self) -> None:
        """Nothing is ready any more, now or later (fail_fast, cancellation)."""
        self._stopped = True
        self._ready.clear()

    def finish(self, ref: str, *, succeeded: bool) -> list[tuple[str, str]]:
        """Record that ``ref`` (a local id or an outside ``ws.task``) finished.

        Returns the local tasks that can now never run, with the need that blocks them,
        in dependency order: a task runs only when all of its needs succeeded.
        """
        if ref in self._outcomes:
            return []
        self._outcomes[ref] = succeeded
        if ref in self._order:
            self._gone.add(ref)
        blocked: list[tuple[str, str]] = []
        if succeeded:
            for dep in self._dependents.get(ref, ()):
                self._unmet[dep] -= 1
                if self._unmet[dep] == 0 and dep not in self._blocked:
                    self._push(dep)
            return blocked
        stack = [(dep, ref) for dep in reversed(self._dependents.get(ref, ()))]
        while stack:
            task_id, because = stack.pop()
            if task_id in self._blocked or task_id in self._outcomes:
                continue
            self._blocked.add(task_id)
            self._gone.add(task_id)
            blocked.append((task_id, because))
            stack.extend((dep, task_id) for dep in reversed(self._dependents.get(task_id, ())))
        return blocked

    def restore(self, outcomes: Mapping[str, bool]) -> list[tuple[str, str]]:
        """Replay finished outcomes (outside refs first, then local ones in plan order),
        e.g. after a continue-as-new or for upstream tasks that finished before this
        workstream started. Returns the local tasks they block, as :meth:`finish` does."""
        blocked: list[tuple[str, str]] = []
        for ref in sorted(outcomes, key=lambda r: (self._order.get(r, -1), r)):
            blocked += self.finish(ref, succeeded=outcomes[ref])
        return blocked


def cross_workstream_refs(plan: PlanSpec) -> dict[str, set[str]]:
    """For each workstream, the ``ws.task`` refs of other workstreams its tasks use.

    That is their ``needs`` and the tasks their expressions read (which validation has
    already checked are upstream, possibly through a workstream-level need).
    """
    refs: dict[str, set[str]] = defaultdict(set)
    for ws in plan.workstreams:
        for task in ws.tasks:
            used = {n for n in task.needs if "." in n} | task_refs(task.with_)
            if task.if_ is not None:
                used |= task_refs(task.if_)
            refs[ws.id] |= {r for r in used if "." in r and not r.startswith(f"{ws.id}.")}
    return refs
