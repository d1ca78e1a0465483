"""The pure parts of affinity: timeouts from the takeover bound, what says a holder is
lost, which snapshot is newer, and which calls are asked to save the workspace."""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    RetryState,
    TimeoutError,
    TimeoutType,
)

from towline.holding import HeldWorkspace, Holding, Snapshot, newer
from towline.plan.spec import Defaults, WorkstreamSpec
from towline.state import WorkstreamInput, WorkstreamState
from towline.workflows.affinity import for_workstream, holder_lost, snapshot_request, timeouts


def _activity_error(cause: BaseException) -> ActivityError:
    err = ActivityError(
        "activity failed",
        scheduled_event_id=5,
        started_event_id=0,
        identity="",
        activity_type="shell",
        activity_id="t",
        retry_state=RetryState.NON_RETRYABLE_FAILURE,
    )
    err.__cause__ = cause
    return err


def test_the_bound_is_shared_by_heartbeat_start_and_retry() -> None:
    heartbeat, to_start = timeouts(timedelta(seconds=60))
    assert heartbeat == to_start == timedelta(seconds=20)
    assert heartbeat + to_start < timedelta(seconds=60)


@pytest.mark.parametrize(
    ("kind", "lost"),
    [
        (TimeoutType.SCHEDULE_TO_START, True),
        (TimeoutType.HEARTBEAT, True),
        (TimeoutType.START_TO_CLOSE, False),
        (TimeoutType.SCHEDULE_TO_CLOSE, False),
    ],
)
def test_only_a_call_no_worker_took_or_kept_alive_means_the_holder_is_lost(
    kind: TimeoutType, lost: bool
) -> None:
    timeout = TimeoutError("timed out", type=kind, last_heartbeat_details=[])
    assert holder_lost(_activity_error(timeout)) is lost


def test_a_failing_tool_is_not_a_lost_holder() -> None:
    assert not holder_lost(_activity_error(ApplicationError("exit 1", type="tool")))
    assert not holder_lost(RuntimeError("not an activity error"))


def _snap(holding: int, taken_ns: int) -> Snapshot:
    return Snapshot(key=f"k{holding}-{taken_ns}", holding=holding, taken_ns=taken_ns)


def test_the_newer_snapshot_is_the_later_holding_then_the_later_clock() -> None:
    a, b = _snap(1, 100), _snap(1, 200)
    assert newer(a, b) is b
    assert newer(b, a) is b  # a call that ends last may have been sent first
    after_takeover = _snap(2, 5)  # another machine's clock: smaller, yet later
    assert newer(b, after_takeover) is after_takeover
    assert newer(None, a) is a
    assert newer(a, None) is a
    assert newer(None, None) is None


def test_only_tools_that_may_change_the_workspace_save_it() -> None:
    holding = Holding(held=HeldWorkspace(path="/w", queue="q/me", base="abc"), number=3)

    req = snapshot_request("shell", "run-1", "api", holding)

    assert req is not None
    assert (req.run_id, req.workstream, req.base, req.holding) == ("run-1", "api", "abc", 3)
    assert snapshot_request("test_gate", "run-1", "api", holding) is None
    assert snapshot_request("echo", "run-1", "api", holding) is None
    assert snapshot_request("a-new-tool", "run-1", "api", holding) is not None


def _input(**extra: object) -> WorkstreamInput:
    spec = WorkstreamSpec.model_validate({"id": "w", "tasks": [{"id": "t", "tool": "shell"}]})
    return WorkstreamInput(
        run_id="r",
        plan_dir="/p",
        spec=spec,
        plan_defaults=Defaults(),
        max_parallel=4,
        failure_policy="fail_fast",
        **extra,
    )


def test_workstreams_started_before_holding_replay_without_it() -> None:
    assert for_workstream(_input(), WorkstreamState()) is None  # no takeover in its input
    free = _input(takeover=timedelta(seconds=60), workspace_free=True)
    assert for_workstream(free, WorkstreamState()) is None  # no workspace to hold


def test_a_retry_holds_the_first_runs_workspace_and_keeps_a_carried_holding() -> None:
    holding = Holding(held=HeldWorkspace(path="/w"), number=2)
    inp = _input(takeover=timedelta(seconds=9), workspace_of="first")

    aff = for_workstream(inp, WorkstreamState(holding=holding))

    assert aff is not None
    assert (aff.run_id, aff.bound, aff.holding) == ("first", timedelta(seconds=9), holding)
