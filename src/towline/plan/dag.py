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
    """Ready-set bookkeeping. ``needs`` name local task ids or ``ws.task`` refs outside."""

    nodes: list[Node]
    _unmet: dict[str, int] = field(default_factory=dict)
    _order: dict[str, int] = field(default_factory=dict)
    _priority: dict[str, int] = field(default_factory=dict)
    _dependents: dict[str, list[str]] = field(default_factory=dict)
    _ready: list[tuple[int, int, str]] = field(default_factory=list)
    _settled: set[str] = field(default_factory=set)
    _blocked: set[str] = field(default_factory=set)
    _outcomes: dict[str, bool] = field(default_factory=dict)

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
        heapq.heappush(self._ready, (-self._priority[task_id], self._order[task_id], task_id))

    def has_ready(self) -> bool:
        return bool(self._ready)

    def ready_count(self) -> int:
        """How many tasks are ready (an upper bound: blocked ones leave lazily)."""
        return len(self._ready)

    def pop_ready(self) -> str | None:
        """The highest-priority ready task, now taken out of the ready set."""
        while self._ready:
            task_id = heapq.heappop(self._ready)[2]
            if task_id not in self._settled and task_id not in self._blocked:
                return task_id
        return None

    def drain_ready(self) -> list[str]:
        """Take every ready task out of the ready set (used when the rest is cancelled)."""
        out = []
        while (task_id := self.pop_ready()) is not None:
            out.append(task_id)
        return out

    def finish(self, ref: str, *, succeeded: bool) -> list[tuple[str, str]]:
        """Record that ``ref`` (a local id or an outside ``ws.task``) finished.

        Returns the local tasks that can now never run, with the need that blocks them,
        in dependency order: a task runs only when all of its needs succeeded.
        """
        if ref in self._outcomes:
            return []
        self._outcomes[ref] = succeeded
        if ref in self._order:
            self._settled.add(ref)
        blocked: list[tuple[str, str]] = []
        if succeeded:
            for dep in self._dependents.get(ref, ()):
                self._unmet[dep] -= 1
                if self._unmet[dep] == 0 and dep not in self._blocked:
                    self._push(dep)
            return blocked
        stack = [(dep, ref) for dep in self._dependents.get(ref, ())]
        while stack:
            task_id, because = stack.pop()
            if task_id in self._blocked or task_id in self._settled:
                continue
            self._blocked.add(task_id)
            blocked.append((task_id, because))
            stack.extend((dep, task_id) for dep in self._dependents.get(task_id, ()))
        return blocked

    def restore(self, outcomes: Mapping[str, bool]) -> None:
        """Replay finished outcomes, e.g. after a continue-as-new."""
        for ref in sorted(outcomes, key=lambda r: self._order.get(r, -1)):
            self.finish(ref, succeeded=outcomes[ref])


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
