"""Multi-day plans on Temporal's time-skipping test server: days pass in seconds."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from tests.helpers import echo, plan, ws
from towline.plan.load import check_data
from towline.starter import api
from towline.state import workstream_workflow_id
from towline.worker.main import build_worker

pytestmark = pytest.mark.timeout(120)


async def _timer_summaries(client: Client, workflow_id: str) -> list[str]:
    """What each timer of a workflow's history says in the Web UI."""
    found = []
    async for event in client.get_workflow_handle(workflow_id).fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_TIMER_STARTED:
            payload = event.user_metadata.summary
            found.append(client.data_converter.payload_converter.from_payload(payload, str))
    return found


async def test_a_three_day_wait_between_two_tasks_completes_in_seconds(
    time_skipping: WorkflowEnvironment, towline_home: Path, tmp_path: Path
) -> None:
    client = time_skipping.client
    queue = f"ts-{uuid.uuid4().hex[:8]}"
    spec = check_data(
        plan(
            ws(
                "w",
                echo("before"),
                {"id": "wait", "tool": "wait", "needs": ["before"], "with": {"for": "3d"}},
                echo("after", needs=["wait"]),
            ),
            name="multi-day",
        )
    )
    async with build_worker(client, queue):
        rid = await api.start_run(
            client, spec, plan_dir=tmp_path, task_queue=queue, search_attributes=False
        )
        async with time_skipping.time_skipping_unlocked():  # type: ignore[attr-defined]
            state = await api.wait_run(client, rid)
    t = state.workstreams["w"].tasks
    assert state.status == "succeeded"
    assert t["after"].status == "succeeded"
    waited = t["wait"].ended_at - t["wait"].started_at  # type: ignore[operator]
    assert waited.total_seconds() >= 3 * 86400
    summaries = await _timer_summaries(client, workstream_workflow_id(rid, "w"))
    assert summaries == ["wait: waiting for time to pass (3d)"]


async def test_an_unanswered_48h_approval_applies_its_on_timeout(
    time_skipping: WorkflowEnvironment, towline_home: Path, tmp_path: Path
) -> None:
    client = time_skipping.client
    queue = f"ts-{uuid.uuid4().hex[:8]}"
    spec = check_data(
        plan(
            ws(
                "w",
                echo(
                    "deploy", approval={"required": True, "timeout": "48h", "on_timeout": "reject"}
                ),
                echo("after", needs=["deploy"]),
            ),
            name="approval-timeout",
        )
    )
    async with build_worker(client, queue):
        rid = await api.start_run(
            client, spec, plan_dir=tmp_path, task_queue=queue, search_attributes=False
        )
        async with time_skipping.time_skipping_unlocked():  # type: ignore[attr-defined]
            state = await api.wait_run(client, rid)
    deploy = state.workstreams["w"].tasks["deploy"]
    assert deploy.status == "failed"
    assert [(d.answer, d.by) for d in deploy.decisions] == [("reject", "timeout")]
    waited = deploy.decisions[0].at - deploy.started_at  # type: ignore[operator]
    assert waited.total_seconds() >= 48 * 3600
    assert state.workstreams["w"].tasks["after"].status == "cancelled"
    summaries = await _timer_summaries(client, workstream_workflow_id(rid, "w"))
    assert summaries == ["deploy: waiting for approval (2d)"]
