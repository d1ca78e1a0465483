"""Figures from the run history: percentiles, per-tool statistics, ETAs and auto timeouts.

Pure functions over :class:`towline.history.ToolCallRecord` lists, so each is tested on
its own, and two readers that feed them from a store (:func:`resolve_from_history`,
:func:`load_estimates`).

- ``towline stats`` groups calls by tool (or by task of one plan) with
  :func:`summarise`.
- ``timeout: auto`` becomes ``max(floor, p99 x factor)`` of the task's past successful
  calls (:func:`auto_timeout`), resolved by the starter before the run begins, so the
  workflow only ever sees a concrete duration (:func:`resolve_auto_timeouts`).
- The ETA in ``watch`` (:func:`eta`) takes each unfinished task's median duration (of
  that task in past runs of the plan, else of its tool), less the time it has already
  run, and returns the larger of two lower bounds on what is left: the longest chain of
  remaining tasks through their ``needs``, and each workstream's remaining work divided
  by its ``max_parallel``.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from graphlib import TopologicalSorter

from towline.durations import parse_duration
from towline.history import HistoryStore, ToolCallRecord, open_store
from towline.plan import effective
from towline.plan.spec import PlanSpec, TaskSpec
from towline.state import FINISHED, RunState

log = logging.getLogger("towline.history")

AUTO_PERCENTILE = 99.0
AUTO_FACTOR = 3.0
AUTO_FLOOR = timedelta(minutes=1)
AUTO_WINDOW = 100  # the most recent successful calls a timeout is taken from


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), interpolating between the two nearest ranks."""
    if not values:
        raise ValueError("no values to take a percentile of")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be between 0 and 100, not {q}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


# ---------------------------------------------------------------- towline stats


@dataclass(frozen=True)
class GroupStats:
    """What the history says about one tool, or one task of a plan."""

    tool: str
    task: str | None  # "workstream.task" when grouped by task
    calls: int  # tool calls that ran (cache hits are counted apart)
    succeeded: int
    failed: int
    cancelled: int
    cached: int
    p50_s: float | None  # of the calls that ran and succeeded
    p95_s: float | None
    tokens: int
    cost_usd: float

    @property
    def success_rate(self) -> float | None:
        """Succeeded over succeeded and failed calls; cancellations are nobody's failure."""
        decided = self.succeeded + self.failed
        return self.succeeded / decided if decided else None


def summarise(records: Iterable[ToolCallRecord], *, by_task: bool = False) -> list[GroupStats]:
    """Statistics per tool (or per task and tool), sorted by name."""
    groups: dict[tuple[str, str | None], list[ToolCallRecord]] = defaultdict(list)
    for r in records:
        groups[(r.tool, f"{r.workstream}.{r.task}" if by_task else None)].append(r)
    out = []
    for (tool, task), rows in sorted(groups.items(), key=lambda kv: (kv[0][1] or "", kv[0][0])):
        ran = [r for r in rows if not r.cached]
        ok = [r.duration_s for r in ran if r.outcome == "succeeded"]
        out.append(
            GroupStats(
                tool=tool,
                task=task,
                calls=len(ran),
                succeeded=len(ok),
                failed=sum(r.outcome == "failed" for r in ran),
                cancelled=sum(r.outcome == "cancelled" for r in ran),
                cached=len(rows) - len(ran),
                p50_s=percentile(ok, 50) if ok else None,
                p95_s=percentile(ok, 95) if ok else None,
                tokens=sum(r.tokens for r in rows),
                cost_usd=sum(r.cost_usd for r in rows),
            )
        )
    return out


# ---------------------------------------------------------------- timeout: auto


def auto_timeout(durations: Sequence[float], *, fallback: timedelta) -> timedelta:
    """``max(AUTO_FLOOR, p99 x AUTO_FACTOR)`` of ``durations`` (seconds), whole seconds up;
    ``fallback`` when there are none."""
    if not durations:
        return fallback
    seconds = math.ceil(percentile(durations, AUTO_PERCENTILE) * AUTO_FACTOR)
    return max(AUTO_FLOOR, timedelta(seconds=seconds))


def auto_fallback(plan: PlanSpec, workstream: str) -> timedelta:
    """The timeout an ``auto`` task gets without history: its workstream's default, else
    the plan's, else towline's (1h)."""
    ws = next(w for w in plan.workstreams if w.id == workstream)
    return effective.default_timeout(effective.workstream(ws, plan).defaults)


def auto_tasks(plan: PlanSpec) -> list[tuple[str, TaskSpec]]:
    """The tasks whose timeout is ``auto``, with their workstream's id."""
    return [(ws.id, t) for ws in plan.workstreams for t in ws.tasks if t.timeout == "auto"]


def resolve_auto_timeouts(
    plan: PlanSpec, durations: Callable[[str, TaskSpec], Sequence[float]]
) -> PlanSpec:
    """``plan`` with every ``timeout: auto`` replaced by a duration.

    ``durations(workstream, task)`` gives the task's past successful call durations
    (seconds, most recent last); the last :data:`AUTO_WINDOW` of them count.
    """
    resolved = {
        (wid, t.id): auto_timeout(
            list(durations(wid, t))[-AUTO_WINDOW:], fallback=auto_fallback(plan, wid)
        )
        for wid, t in auto_tasks(plan)
    }
    if not resolved:
        return plan
    workstreams = [
        ws.model_copy(
            update={
                "tasks": [
                    t.model_copy(update={"timeout": resolved[(ws.id, t.id)]})
                    if (ws.id, t.id) in resolved
                    else t
                    for t in ws.tasks
                ]
            }
        )
        for ws in plan.workstreams
    ]
    return plan.model_copy(update={"workstreams": workstreams})


def resolve_from_history(plan: PlanSpec, store: HistoryStore | None = None) -> PlanSpec:
    """:func:`resolve_auto_timeouts` with the durations in ``store`` (default: the
    configured one). A store that cannot be read counts as empty, with a warning."""
    if not auto_tasks(plan):
        return plan
    store = store or open_store()
    samples: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    try:
        for r in store.calls(plan=plan.name, succeeded_only=True):
            samples[(r.workstream, r.task, r.tool)].append(r.duration_s)
    except Exception as e:
        log.warning(
            "cannot read the run history at %s (%s): timeout auto uses defaults", store.location, e
        )
    return resolve_auto_timeouts(plan, lambda wid, t: samples.get((wid, t.id, t.tool), []))


# ---------------------------------------------------------------- ETA


@dataclass(frozen=True)
class Estimates:
    """Median durations (seconds) of past successful calls, per task of a plan and per tool."""

    by_task: Mapping[tuple[str, str, str], float]  # (workstream, task, tool)
    by_tool: Mapping[str, float]

    @classmethod
    def from_records(cls, plan: str, records: Iterable[ToolCallRecord]) -> Estimates:
        tasks: dict[tuple[str, str, str], list[float]] = defaultdict(list)
        tools: dict[str, list[float]] = defaultdict(list)
        for r in records:
            if r.outcome != "succeeded" or r.cached:
                continue
            tools[r.tool].append(r.duration_s)
            if r.plan == plan:
                tasks[(r.workstream, r.task, r.tool)].append(r.duration_s)
        return cls(
            by_task={k: median(v) for k, v in tasks.items()},
            by_tool={k: median(v) for k, v in tools.items()},
        )

    def seconds(self, workstream: str, task: TaskSpec) -> float | None:
        """How long the task usually takes, or None when nothing is known."""
        known = self.by_task.get((workstream, task.id, task.tool), self.by_tool.get(task.tool))
        if known is None and task.tool == "wait":
            try:
                return parse_duration(task.with_.get("for", "")).total_seconds()
            except ValueError:
                return None  # an expression, known only at run time
        return known


def load_estimates(plan: PlanSpec, store: HistoryStore | None = None) -> Estimates:
    """The :class:`Estimates` for ``plan``'s tasks from ``store`` (default: the configured one)."""
    store = store or open_store()
    tools = sorted({t.tool for ws in plan.workstreams for t in ws.tasks})
    records = [r for tool in tools for r in store.calls(tool=tool, succeeded_only=True)]
    return Estimates.from_records(plan.name, records)


@dataclass(frozen=True)
class Eta:
    seconds: float
    unknown: int  # unfinished tasks with no history, counted as taking no time


def eta(plan: PlanSpec, state: RunState, estimates: Estimates, *, now: datetime) -> Eta | None:
    """What is left of the run by history (see the module's docstring), or None when no
    unfinished task has any history to go by, or nothing is left."""
    remaining: dict[str, float] = {}
    unknown = known = 0
    for ws in plan.workstreams:
        tasks = state.workstreams[ws.id].tasks if ws.id in state.workstreams else {}
        for t in ws.tasks:
            ref = f"{ws.id}.{t.id}"
            current = tasks.get(t.id)
            if current is not None and current.status in FINISHED:
                remaining[ref] = 0.0
                continue
            typical = estimates.seconds(ws.id, t)
            if typical is None:
                unknown += 1
                remaining[ref] = 0.0
                continue
            known += 1
            if current is not None and current.status == "running" and current.started_at:
                typical -= (now - current.started_at).total_seconds()
            remaining[ref] = max(typical, 0.0)
    if not known or (state.status in FINISHED and state.ended_at is not None):
        return None
    chain = _longest_chain(plan, remaining)
    load = max(
        sum(remaining[f"{ws.id}.{t.id}"] for t in ws.tasks)
        / effective.workstream(ws, plan).max_parallel
        for ws in plan.workstreams
    )
    return Eta(seconds=max(chain, load), unknown=unknown)


def _longest_chain(plan: PlanSpec, remaining: Mapping[str, float]) -> float:
    """The longest path of remaining time through the tasks' and workstreams' needs."""
    members = {ws.id: [f"{ws.id}.{t.id}" for t in ws.tasks] for ws in plan.workstreams}
    needs: dict[str, list[str]] = {}
    for ws in plan.workstreams:
        upstream = [ref for w in ws.needs for ref in members.get(w, [])]
        for t in ws.tasks:
            local = [n if "." in n else f"{ws.id}.{n}" for n in t.needs]
            needs[f"{ws.id}.{t.id}"] = [n for n in (*local, *upstream) if n in remaining]
    finish: dict[str, float] = {}
    # A valid plan has no cycles (validation rejects them), so the order exists.
    for ref in TopologicalSorter(needs).static_order():
        before = max((finish[n] for n in needs.get(ref, [])), default=0.0)
        finish[ref] = remaining.get(ref, 0.0) + before
    return max(finish.values(), default=0.0)
