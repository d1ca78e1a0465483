"""Figures from the run history: percentiles, stats, timeout: auto and the ETA."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError

from tests.helpers import echo, plan, ws
from towline import estimates
from towline.estimates import Estimates, auto_timeout, percentile, resolve_auto_timeouts
from towline.history import Outcome, ToolCallRecord
from towline.plan.load import check_data
from towline.plan.spec import PlanSpec, TaskSpec
from towline.state import RunState, Status, TaskState, WorkstreamState
from towline.workflows.task import TaskEnv, attempt_timeout

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def call(
    tool: str = "shell",
    *,
    task: str = "t",
    plan: str = "p",
    outcome: Outcome = "succeeded",
    seconds: float = 1.0,
    cached: bool = False,
    **extra: Any,
) -> ToolCallRecord:
    return ToolCallRecord(
        run_id="r",
        plan=plan,
        workstream="w",
        task=task,
        tool=tool,
        attempt=1,
        outcome=outcome,
        category=None if outcome == "succeeded" else "tool",
        started_at=0.0,
        duration_s=seconds,
        cached=cached,
        **extra,
    )


# Percentiles


def test_percentile_interpolates_between_the_nearest_ranks() -> None:
    assert percentile([5, 1, 4, 2, 3], 50) == 3
    assert percentile([1, 2], 95) == pytest.approx(1.95)
    assert percentile([1, 2, 3, 4], 0) == 1
    assert percentile([1, 2, 3, 4], 100) == 4
    assert percentile([7.5], 99) == 7.5


def test_percentile_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
    with pytest.raises(ValueError, match="between 0 and 100"):
        percentile([1], 101)


# towline stats


def test_summarise_counts_outcomes_and_takes_durations_of_successes_that_ran() -> None:
    records = [
        call(seconds=1),
        call(seconds=3),
        call(seconds=100, outcome="failed"),
        call(seconds=50, outcome="cancelled"),
        call(seconds=0.001, cached=True),
        call("llm", seconds=2, tokens=100, cost_usd=0.5),
        call("llm", seconds=4, tokens=50, cost_usd=0.25),
    ]
    llm, shell = estimates.summarise(records)
    assert (shell.tool, shell.calls, shell.succeeded, shell.failed) == ("shell", 4, 2, 1)
    assert (shell.cancelled, shell.cached) == (1, 1)
    assert shell.success_rate == pytest.approx(2 / 3)  # a cancellation is no failure
    assert shell.p50_s == 2
    assert shell.p95_s == pytest.approx(2.9)
    assert (llm.tokens, llm.cost_usd, llm.p50_s) == (150, 0.75, 3)


def test_summarise_by_task_splits_a_tool_by_task() -> None:
    groups = estimates.summarise([call(task="a"), call(task="b"), call(task="a")], by_task=True)
    assert [(g.task, g.calls) for g in groups] == [("w.a", 2), ("w.b", 1)]


def test_a_group_without_decided_calls_has_no_success_rate() -> None:
    [g] = estimates.summarise([call(outcome="cancelled")])
    assert g.success_rate is None
    assert g.p50_s is None


# timeout: auto


def test_auto_timeout_is_p99_times_the_factor_rounded_up() -> None:
    durations = [100.0] * 99 + [200.0]
    p99 = percentile(durations, 99)
    expected = timedelta(seconds=int(p99 * estimates.AUTO_FACTOR) + 1)
    assert auto_timeout(durations, fallback=timedelta(hours=1)) == expected


def test_auto_timeout_has_a_floor_and_a_fallback() -> None:
    assert auto_timeout([0.5, 1.0], fallback=timedelta(hours=1)) == estimates.AUTO_FLOOR
    assert auto_timeout([], fallback=timedelta(minutes=7)) == timedelta(minutes=7)


def _auto_plan() -> PlanSpec:
    data = plan(
        ws("a", echo("auto", timeout="auto"), echo("fixed", timeout="5m")),
        ws("b", echo("auto", timeout="auto"), defaults={"timeout": "20m"}),
        ws("c", echo("auto", timeout="auto")),
    )
    data["defaults"] = {"timeout": "2h"}
    return check_data(data)


def test_resolve_auto_timeouts_uses_the_tasks_history_or_the_stated_default() -> None:
    history = {("a", "auto"): [100.0, 120.0]}
    resolved = resolve_auto_timeouts(_auto_plan(), lambda wid, t: history.get((wid, t.id), []))
    timeouts = {(w.id, t.id): t.timeout for w in resolved.workstreams for t in w.tasks}
    assert timeouts == {
        ("a", "auto"): auto_timeout([100.0, 120.0], fallback=timedelta(0)),
        ("a", "fixed"): timedelta(minutes=5),
        ("b", "auto"): timedelta(minutes=20),  # no history: the workstream's default
        ("c", "auto"): timedelta(hours=2),  # then the plan's
    }
    assert estimates.auto_tasks(resolved) == []
    # What the workflow receives: concrete durations, through the data converter's JSON.
    again = PlanSpec.model_validate_json(resolved.model_dump_json(by_alias=True))
    assert again == resolved


def test_resolve_auto_timeouts_looks_at_recent_history_only() -> None:
    old_and_slow = [1000.0] * 50
    recent = [10.0] * estimates.AUTO_WINDOW
    resolved = resolve_auto_timeouts(_auto_plan(), lambda wid, t: [*old_and_slow, *recent])
    assert resolved.workstreams[0].tasks[0].timeout == auto_timeout(recent, fallback=timedelta(0))


def test_without_history_the_default_is_one_hour() -> None:
    spec = check_data(plan(ws("w", echo("t", timeout="auto"))))
    resolved = resolve_auto_timeouts(spec, lambda wid, t: [])
    assert resolved.workstreams[0].tasks[0].timeout == timedelta(hours=1)


def test_the_workflow_refuses_an_unresolved_auto_timeout() -> None:
    spec = _auto_plan()
    env = TaskEnv(run_id="r", workstream="a", workspace="/", plan_dir="/", defaults=())
    with pytest.raises(ApplicationError, match="timeout 'auto' reached the workflow"):
        attempt_timeout(spec.workstreams[0].tasks[0], env)
    resolved = resolve_auto_timeouts(spec, lambda wid, t: [])
    assert attempt_timeout(resolved.workstreams[0].tasks[0], env) == timedelta(hours=2)


# ETA


def _task(status: Status, started: datetime | None = None) -> TaskState:
    return TaskState(tool="shell", status=status, started_at=started)


def _state(tasks: dict[str, dict[str, TaskState]]) -> RunState:
    return RunState(
        run_id="r",
        plan="p",
        status="running",
        workstreams={wid: WorkstreamState(status="running", tasks=t) for wid, t in tasks.items()},
    )


def _estimates(**seconds: float) -> Estimates:
    return Estimates(by_task={("w", k, "shell"): v for k, v in seconds.items()}, by_tool={})


def _shell(tid: str, **extra: Any) -> dict[str, Any]:
    return {"id": tid, "tool": "shell", "with": {"command": ["true"]}, **extra}


def test_eta_follows_the_longest_chain_of_remaining_tasks() -> None:
    spec = check_data(
        plan(ws("w", _shell("a"), _shell("b", needs=["a"]), _shell("c"), _shell("d", needs=["b"])))
    )
    state = _state(
        {"w": {"a": _task("succeeded"), "c": _task("running", NOW - timedelta(seconds=2))}}
    )
    eta = estimates.eta(spec, state, _estimates(a=100, b=5, c=10, d=6), now=NOW)
    assert eta == estimates.Eta(seconds=11, unknown=0)  # b then d; c has 8s left


def test_eta_is_at_least_the_remaining_work_over_the_parallel_slots() -> None:
    spec = check_data(
        plan(ws("w", *(_shell(f"t{i}") for i in range(4)), settings={"max_parallel": 2}))
    )
    eta = estimates.eta(spec, _state({}), _estimates(t0=10, t1=10, t2=10, t3=10), now=NOW)
    assert eta is not None
    assert eta.seconds == 20


def test_eta_crosses_workstream_needs_and_counts_tasks_without_history() -> None:
    spec = check_data(
        plan(
            ws("w", _shell("a")),
            ws("x", _shell("b"), _shell("c", needs=["b"]), needs=["w"]),
        )
    )
    known = Estimates(by_task={("w", "a", "shell"): 30}, by_tool={})
    eta = estimates.eta(spec, _state({}), known, now=NOW)
    assert eta == estimates.Eta(seconds=30, unknown=2)
    with_tool = Estimates(by_task=known.by_task, by_tool={"shell": 4})
    assert estimates.eta(spec, _state({}), with_tool, now=NOW) == estimates.Eta(38, 0)


def test_no_eta_without_history_or_once_the_run_ended() -> None:
    spec = check_data(plan(ws("w", _shell("a"))))
    assert estimates.eta(spec, _state({}), _estimates(), now=NOW) is None
    ended = _state({"w": {"a": _task("succeeded")}}).model_copy(
        update={"status": "succeeded", "ended_at": NOW}
    )
    assert estimates.eta(spec, ended, _estimates(a=5), now=NOW) is None


def test_estimates_prefer_the_tasks_own_history_then_the_tools() -> None:
    records = [
        call(task="t", seconds=10),
        call(task="t", seconds=30),
        call(task="other", seconds=1, plan="elsewhere"),
        call(task="t", seconds=999, outcome="failed"),
        call(task="t", seconds=0.0, cached=True),
    ]
    known = Estimates.from_records("p", records)
    t = TaskSpec.model_validate({"id": "t", "tool": "shell"})
    new = TaskSpec.model_validate({"id": "new", "tool": "shell"})
    assert known.seconds("w", t) == 20
    assert known.seconds("w", new) == 10  # the median of the tool's successful calls
    wait = TaskSpec.model_validate({"id": "nap", "tool": "wait", "with": {"for": "2m"}})
    assert known.seconds("w", wait) == 120
