"""A run starts only from a plan its worker can take: nothing that passes can wedge it.

The largest plan the limits allow runs to its end on a real worker without a single
failed workflow task (the SDK fails a workflow task whose code runs past its deadlock
limit, and the server retries it forever: a wedged run). A run input the server or
worker could not take is refused before anything starts.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.service import RPCError

from tests.conftest import RunPlan
from tests.helpers import echo, plan, ws
from towline.plan import limits
from towline.plan.load import PlanError, check_data
from towline.starter import api
from towline.state import workstream_workflow_id


async def _failed_workflow_tasks(client: Client, workflow_id: str) -> int:
    failed = 0
    async for event in client.get_workflow_handle(workflow_id).fetch_history_events():
        if event.event_type in (
            EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED,
            EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT,
        ):
            failed += 1
    return failed


async def test_a_plan_at_the_limits_runs_without_a_failed_workflow_task(
    run_plan: RunPlan, client: Client
) -> None:
    room = 100  # for the plan's own values around `with`
    values = [i % 1000 for i in range(limits.MAX_VALUES - room)]
    data = plan(ws("w", echo("big", **{"with": {"values": values}}), echo("after", needs=["big"])))
    state = await run_plan(data)

    assert state.status == "succeeded", state.reason
    assert state.workstreams["w"].tasks["after"].status == "succeeded"
    for wid in (state.run_id, workstream_workflow_id(state.run_id, "w")):
        assert await _failed_workflow_tasks(client, wid) == 0, wid


async def test_a_run_input_too_large_to_send_is_refused_before_it_starts(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    noise = [secrets.token_hex(limits.MAX_STRING // 4) for _ in range(4)]  # incompressible
    spec = check_data(plan(ws("w", echo("t", **{"with": {"noise": noise}}))))
    run_id = f"too-large-{secrets.token_hex(3)}"
    with pytest.raises(PlanError, match=r"the run's input is .* encoded, above the limit of 1 MiB"):
        await api.start_run(client, spec, plan_dir=tmp_path, task_queue=task_queue, run_id=run_id)
    with pytest.raises(RPCError, match="not found"):
        await client.get_workflow_handle(run_id).describe()


async def test_a_plan_past_the_limits_is_refused_however_it_was_made(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    spec = check_data(plan(ws("w", echo("t"))))
    bloated = spec.model_copy(
        update={
            "workstreams": [
                spec.workstreams[0].model_copy(
                    update={
                        "tasks": [
                            spec.workstreams[0]
                            .tasks[0]
                            .model_copy(update={"with_": {"many": [0] * (limits.MAX_VALUES + 1)}})
                        ]
                    }
                )
            ]
        }
    )
    with pytest.raises(PlanError, match="more than 250,000 values"):
        await api.start_run(client, bloated, plan_dir=tmp_path, task_queue=task_queue)


async def test_a_wait_whose_duration_resolves_to_nonsense_fails_its_task(
    run_plan: RunPlan, client: Client
) -> None:
    data = plan(
        ws(
            "w",
            echo("delay", **{"with": {"d": "soon"}}),
            {
                "id": "pause",
                "tool": "wait",
                "needs": ["delay"],
                "with": {"for": "${{ tasks.delay.outputs.d }}"},
            },
        )
    )
    state = await run_plan(data)

    task = state.workstreams["w"].tasks["pause"]
    assert task.status == "failed"
    assert task.error is not None
    assert task.error.category == "validation"
    assert task.error.message == "with.for: not a duration: 'soon' (use e.g. 90s, 10m, 48h, 3d)"
    assert await _failed_workflow_tasks(client, workstream_workflow_id(state.run_id, "w")) == 0
