"""Effective settings: what a task or a workstream gets for a key its plan leaves out.

A task's own ``timeout``, ``retry`` and ``on_failure`` win; then its workstream's
``defaults``, then the plan's, then towline's. A workstream's ``settings`` win over the
plan's, then towline's defaults. The cascade is written here once, as plain functions:
the task lifecycle (workflow code, so these stay pure), the estimates and the starter
all ask here.

    limits = effective.workstream(ws, plan)
    effective.retry(task, limits.defaults)         # RetrySpec(max_attempts=3, ...)
    effective.on_failure(task, limits.defaults, limits.failure_policy)

They resolve when asked rather than once into the run's input: the workflows get the
plan as it was written (what the Web UI shows and recorded histories replay), and the
answer is the same wherever it is asked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from towline.plan.spec import (
    DEFAULT_MAX_PARALLEL,
    DEFAULT_TIMEOUT,
    Defaults,
    FailurePolicy,
    OnFailureSpec,
    PlanSpec,
    RetrySpec,
    TaskSpec,
    WorkstreamSpec,
)


@dataclass(frozen=True)
class Workstream:
    """A workstream's effective settings."""

    max_parallel: int
    failure_policy: FailurePolicy
    rollback: Literal["auto", "manual"]
    defaults: tuple[Defaults, ...]  # for its tasks: the workstream's, then the plan's


def workstream(ws: WorkstreamSpec, plan: PlanSpec) -> Workstream:
    """``ws``'s settings, else the plan's, else towline's defaults.

    A plan-level ``max_parallel`` is also a cap across all workstreams together: that
    one is the run's to keep (``settings.max_parallel`` of the plan, not resolved here).
    """
    return Workstream(
        max_parallel=ws.settings.max_parallel or plan.settings.max_parallel or DEFAULT_MAX_PARALLEL,
        failure_policy=ws.settings.failure_policy or plan.settings.failure_policy or "fail_fast",
        rollback=ws.settings.rollback or plan.settings.rollback or "auto",
        defaults=(ws.defaults, plan.defaults),
    )


def timeout(task: TaskSpec, defaults: Sequence[Defaults]) -> timedelta | Literal["auto"]:
    """One attempt's limit: the task's own (``auto`` until the starter resolves it from
    the run history), else the first of ``defaults`` that sets one, else 1h."""
    if task.timeout is not None:
        return task.timeout
    return default_timeout(defaults)


def default_timeout(defaults: Sequence[Defaults]) -> timedelta:
    """The timeout a task without one gets (and a ``timeout: auto`` without history)."""
    for d in defaults:
        if d.timeout is not None:
            return d.timeout
    return DEFAULT_TIMEOUT


def retry(task: TaskSpec, defaults: Sequence[Defaults]) -> RetrySpec:
    """The task's retry policy, else the first of ``defaults`` that sets one, else
    towline's (:class:`RetrySpec`'s defaults)."""
    if task.retry is not None:
        return task.retry
    for d in defaults:
        if d.retry is not None:
            return d.retry
    return RetrySpec()


def on_failure(
    task: TaskSpec, defaults: Sequence[Defaults], failure_policy: FailurePolicy = "fail_fast"
) -> OnFailureSpec:
    """The task's recovery strategy, else the first of ``defaults`` that sets one; else
    ``pause`` under ``failure_policy: pause`` (every task without a strategy waits for an
    operator), and ``fail`` otherwise."""
    if task.on_failure is not None:
        return task.on_failure
    for d in defaults:
        if d.on_failure is not None:
            return d.on_failure
    return OnFailureSpec(strategy="pause" if failure_policy == "pause" else "fail")
