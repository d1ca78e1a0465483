"""towline's metrics recorded from workflow code, replay-safe.

Counters and histograms go through ``workflow.metric_meter()``, which records nothing
while a workflow replays its history: a run replayed after a worker restart is not
counted twice. They reach ``/metrics`` through the SDK's runtime (see
:mod:`towline.worker.metrics`), labelled with the workflow's namespace and task queue.

The waiting and breaker gauges are different: they are state ("how many tasks wait, and
why", "is this breaker open"), not events, so they are rebuilt by replay instead of
skipped. Each workflow instance keeps its own; an instance the worker drops (evicted
from its cache, or finished) is forgotten with it, and the worker's gauge sums the
instances it holds. A worker restarted mid-wait reports the wait again once it has
replayed the workflow, and a fleet's total is the sum over its workers.
"""

from __future__ import annotations

import threading
import weakref
from collections import Counter
from datetime import timedelta

from temporalio import workflow

from towline.state import TaskState

# Names as they appear on /metrics (counters get ``_total`` from the exporter).
RUNS_STARTED = "towline_runs_started"
RUNS_FINISHED = "towline_runs_finished"
TASKS_STARTED = "towline_tasks_started"
TASKS_FINISHED = "towline_tasks_finished"
TASK_DURATION = "towline_task_duration_seconds"
TASK_WAITS = "towline_task_waits"
BREAKER_STATE = "towline_breaker_state"
BREAKER_OPENINGS = "towline_breaker_openings"
TASKS_WAITING = "towline_tasks_waiting"
OLDEST_WAIT = "towline_task_wait_oldest_seconds"
BUDGET_USED = "towline_run_budget_used_ratio"

# Tasks last from milliseconds (echo) to days (a wait for a person).
TASK_DURATION_BUCKETS: tuple[float, ...] = (
    0.05,
    0.25,
    1,
    5,
    15,
    60,
    300,
    900,
    3600,
    4 * 3600,
    24 * 3600,
    7 * 24 * 3600,
)
WAIT_REASONS: tuple[str, ...] = ("approval", "operator", "budget", "breaker", "answer")
BREAKER_STATES: dict[str, int] = {"closed": 0, "half_open": 1, "open": 2}

# Per workflow instance: task -> (reason, when the wait began); run -> budget spent.
_waiting: weakref.WeakKeyDictionary[object, dict[str, tuple[str, float]]] = (
    weakref.WeakKeyDictionary()
)
_budgets: weakref.WeakKeyDictionary[object, tuple[str, str, float]] = weakref.WeakKeyDictionary()
_breakers: weakref.WeakKeyDictionary[object, tuple[str, int]] = weakref.WeakKeyDictionary()
_lock = threading.Lock()  # workflow tasks run on several threads; scrapes on another


def run_started(plan: str) -> None:
    workflow.metric_meter().create_counter(RUNS_STARTED, "runs started").add(1, {"plan": plan})


def run_finished(plan: str, status: str) -> None:
    workflow.metric_meter().create_counter(RUNS_FINISHED, "runs finished, by status").add(
        1, {"plan": plan, "status": status}
    )


def task_started(plan: str, tool: str) -> None:
    workflow.metric_meter().create_counter(TASKS_STARTED, "tasks started").add(
        1, {"plan": plan, "tool": tool}
    )


def task_finished(plan: str, task: TaskState) -> None:
    """Count a task that reached a final status, and observe how long it took."""
    meter = workflow.metric_meter()
    category = task.error.category if task.error is not None else ""
    labels = {"plan": plan, "tool": task.tool, "status": task.status}
    meter.create_counter(TASKS_FINISHED, "tasks finished, by status and error category").add(
        1, {**labels, "category": category}
    )
    if task.started_at is not None and task.ended_at is not None:
        seconds = max((task.ended_at - task.started_at) / timedelta(seconds=1), 0.0)
        meter.create_histogram_float(
            TASK_DURATION, "a task's time from start to final status", "s"
        ).record(seconds, labels)


def waiting(before: str | None, after: str | None, *, task: str = "") -> None:
    """Task ``task``'s reason to wait changed from ``before`` to ``after`` (None: not
    waiting); a new wait starts now (``workflow.now()``, the same on replay).

    Reasons are :data:`WAIT_REASONS`. Call it on every execution, replay included: the
    waits belong to this workflow instance and are rebuilt with it.
    """
    if before == after:
        return
    with _lock:
        waits = _waiting.setdefault(workflow.instance(), {})
        if after is None:
            waits.pop(task, None)
        else:
            waits[task] = (after, workflow.now().timestamp())
    if after is not None:
        workflow.metric_meter().create_counter(TASK_WAITS, "tasks that began to wait").add(
            1, {"reason": after}
        )


def waiting_now() -> dict[str, int]:
    """Tasks waiting in the workflows this worker holds, by reason (every reason listed)."""
    total: Counter[str] = Counter(dict.fromkeys(WAIT_REASONS, 0))
    with _lock:
        for waits in list(_waiting.values()):
            total.update(reason for reason, _ in waits.values())
    return dict(total)


def oldest_waits() -> dict[str, float]:
    """When the longest wait of each reason began (a Unix time), among this worker's."""
    oldest: dict[str, float] = {}
    with _lock:
        for waits in list(_waiting.values()):
            for reason, since in waits.values():
                oldest[reason] = min(since, oldest.get(reason, since))
    return oldest


def budget(run_id: str, plan: str, used: float | None) -> None:
    """The share of its budget run ``run_id`` has spent (1.0: all), None without a
    budget. State of the run's workflow instance, like the waits: call it on replay too."""
    with _lock:
        if used is None:
            _budgets.pop(workflow.instance(), None)
        else:
            _budgets[workflow.instance()] = (run_id, plan, used)


def budgets_now() -> list[tuple[str, str, float]]:
    """``(run_id, plan, share spent)`` of each run with a budget that this worker holds."""
    with _lock:
        return sorted(_budgets.values())


def breaker_state(target: str, state: str) -> None:
    """The circuit breaker for ``target`` is ``closed``, ``half_open`` or ``open``.

    Like the waiting gauge, this is state kept per workflow instance (the breaker's entity
    workflow): call it on every execution, replay included.
    """
    with _lock:
        _breakers[workflow.instance()] = (target, BREAKER_STATES[state])


def breaker_opened(target: str) -> None:
    """The circuit breaker for ``target`` has just opened (an event: not on replay)."""
    workflow.metric_meter().create_counter(
        BREAKER_OPENINGS, "circuit breakers that opened (failures reached, or a probe failed)"
    ).add(1, {"target": target})


def breakers_now() -> dict[str, int]:
    """Each breaker this worker holds, by target: 0 closed, 1 half-open, 2 open."""
    out: dict[str, int] = {}
    with _lock:
        for target, code in list(_breakers.values()):
            out[target] = max(code, out.get(target, 0))
    return out
