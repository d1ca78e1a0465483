"""Effective settings (towline.plan.effective): the task's own, else its workstream's
defaults, else the plan's, else towline's."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from tests.helpers import echo, plan, ws
from towline.estimates import auto_fallback
from towline.plan import effective
from towline.plan.load import check_data
from towline.plan.spec import DEFAULT_MAX_PARALLEL, DEFAULT_TIMEOUT, PlanSpec, RetrySpec, TaskSpec


def _spec(data: dict[str, Any]) -> PlanSpec:
    return check_data(data)


def _task(spec: PlanSpec, wid: str, tid: str) -> tuple[TaskSpec, effective.Workstream]:
    w = next(w for w in spec.workstreams if w.id == wid)
    return next(t for t in w.tasks if t.id == tid), effective.workstream(w, spec)


def test_a_task_without_settings_gets_towlines_defaults() -> None:
    task, limits = _task(_spec(plan(ws("w", echo("t")))), "w", "t")

    assert effective.timeout(task, limits.defaults) == DEFAULT_TIMEOUT
    assert effective.retry(task, limits.defaults) == RetrySpec()
    assert effective.on_failure(task, limits.defaults, limits.failure_policy).strategy == "fail"
    assert limits.max_parallel == DEFAULT_MAX_PARALLEL
    assert (limits.failure_policy, limits.rollback) == ("fail_fast", "auto")


def test_the_task_wins_then_its_workstream_then_the_plan() -> None:
    data = plan(
        ws(
            "w",
            echo("own", timeout="5m", retry={"max_attempts": 7}, on_failure="skip"),
            echo("inherits"),
            defaults={"timeout": "2m", "retry": {"max_attempts": 2}},
        ),
        ws("v", echo("t")),
    )
    data["defaults"] = {"timeout": "9m", "retry": {"max_attempts": 9}, "on_failure": "pause"}
    spec = _spec(data)

    own, w = _task(spec, "w", "own")
    assert effective.timeout(own, w.defaults) == timedelta(minutes=5)
    assert effective.retry(own, w.defaults).max_attempts == 7
    assert effective.on_failure(own, w.defaults).strategy == "skip"

    inherits, _ = _task(spec, "w", "inherits")
    assert effective.timeout(inherits, w.defaults) == timedelta(minutes=2)
    assert effective.retry(inherits, w.defaults).max_attempts == 2
    assert effective.on_failure(inherits, w.defaults).strategy == "pause"  # the plan's

    t, v = _task(spec, "v", "t")
    assert effective.timeout(t, v.defaults) == timedelta(minutes=9)
    assert effective.retry(t, v.defaults).max_attempts == 9


def test_failure_policy_pause_makes_tasks_without_a_strategy_wait() -> None:
    spec = _spec(plan(ws("w", echo("t"), echo("s", on_failure="skip")), failure_policy="pause"))
    t, w = _task(spec, "w", "t")
    s, _ = _task(spec, "w", "s")

    assert w.failure_policy == "pause"
    assert effective.on_failure(t, w.defaults, w.failure_policy).strategy == "pause"
    assert effective.on_failure(s, w.defaults, w.failure_policy).strategy == "skip"


def test_a_workstreams_settings_win_over_the_plans() -> None:
    spec = _spec(
        plan(
            ws("w", echo("t"), settings={"max_parallel": 2, "failure_policy": "continue"}),
            ws("v", echo("t")),
            max_parallel=8,
            rollback="manual",
        )
    )

    w = effective.workstream(spec.workstreams[0], spec)
    v = effective.workstream(spec.workstreams[1], spec)
    assert (w.max_parallel, w.failure_policy, w.rollback) == (2, "continue", "manual")
    assert (v.max_parallel, v.failure_policy, v.rollback) == (8, "fail_fast", "manual")


def test_timeout_auto_stays_auto_and_falls_back_to_the_default_timeout() -> None:
    spec = _spec(plan(ws("w", echo("t", timeout="auto"), defaults={"timeout": "3m"})))
    t, w = _task(spec, "w", "t")

    assert effective.timeout(t, w.defaults) == "auto"
    # Without history, `auto` becomes the timeout the task would have had without it.
    assert auto_fallback(spec, "w") == effective.default_timeout(w.defaults)
    assert auto_fallback(spec, "w") == timedelta(minutes=3)
