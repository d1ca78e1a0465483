"""``towline worker``'s HTTP endpoint, as a real process: /metrics, /healthz, /readyz."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from pathlib import Path

import pytest
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client

from tests.helpers import echo, plan, sh, ws
from tests.workerproc import (
    TOWLINE,
    WorkerProcess,
    aget,
    metrics,
    sample,
    start_worker,
    until_metric,
    wait_status,
)
from towline.plan.load import check_data
from towline.starter import api
from towline.worker import devserver

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def queue() -> str:
    return f"endpoint-{uuid.uuid4().hex[:8]}"


async def test_metrics_count_runs_and_tasks_by_plan_tool_status_and_category(
    client: Client, dev_server: str, queue: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    w = start_worker(dev_server, queue, home=tmp_path / "home")
    workers.append(w)
    await wait_status(w, "/readyz", 200)
    name = f"metrics-{queue}"
    spec = check_data(
        plan(
            ws("w", echo("a"), echo("b", needs=["a"]), sh("bad", "exit 3")),
            name=name,
            failure_policy="continue",
        )
    )
    rid = await api.start_run(client, spec, plan_dir=tmp_path, task_queue=queue)
    state = await api.wait_run(client, rid)
    assert state.status == "failed"

    page = await metrics(w)
    finished = "towline_tasks_finished_total"
    assert sample(page, finished, plan=name, tool="echo", status="succeeded", category="") == 2
    assert sample(page, finished, plan=name, tool="shell", status="failed", category="tool") == 1
    assert sample(page, "towline_tasks_started_total", plan=name) == 3
    assert sample(page, "towline_task_duration_seconds_count", plan=name, tool="echo") == 2
    assert sample(page, "towline_runs_started_total", plan=name) == 1
    assert sample(page, "towline_runs_finished_total", plan=name, status="failed") == 1
    assert sample(page, "towline_runs_finished_total", plan=name, status="succeeded") is None
    # Each tool call (activity attempt), from the activity side.
    calls = "towline_tool_calls_total"
    assert sample(page, calls, tool="echo", status="succeeded") == 2
    assert sample(page, calls, tool="shell", status="failed", category="tool") == 1
    assert sample(page, "towline_tool_call_duration_seconds_count", tool="shell") == 1
    assert sample(page, "towline_tasks_waiting", reason="approval") == 0
    assert sample(page, "towline_task_wait_oldest_seconds") is None  # nothing waits
    assert sample(page, "towline_worker_ready") == 1
    # The Temporal SDK's own metrics and the process's, on the same page.
    assert sample(page, "temporal_long_request_total", operation="PollWorkflowTaskQueue")
    assert sample(page, "process_resident_memory_bytes") is not None

    assert await aget(w.url("/healthz")) == (200, "ok\n")
    assert await aget(w.url("/readyz")) == (200, "ready\n")
    code, _ = await aget(w.url("/nope"))
    assert code == 404

    # The Web UI shows the run's progress summary as its "current details": counts by
    # status, what failed and why, the latest change.
    metadata = await client.get_workflow_handle(rid).query(
        "__temporal_workflow_metadata", result_type=WorkflowMetadata
    )
    details = metadata.current_details
    assert details.startswith("**Run failed**: 1 workstream(s): 1 failed"), details
    assert "- w: workstream w failed" in details, details


async def test_readyz_answers_503_once_the_server_is_gone_while_healthz_stays_200(
    tmp_path: Path, queue: str, workers: list[WorkerProcess]
) -> None:
    opts = devserver.DevServerOptions(port=devserver.free_port(), ui_port=None)
    server = devserver.start(opts, log=tmp_path / "server.log")
    try:
        w = start_worker(f"{opts.ip}:{opts.port}", queue, home=tmp_path / "home")
        workers.append(w)
        await wait_status(w, "/readyz", 200)
    finally:
        devserver.stop(server)
    body = await wait_status(w, "/readyz", 503)
    assert "the Temporal server does not answer" in body
    assert sample(await metrics(w), "towline_worker_ready") == 0
    assert await aget(w.url("/healthz")) == (200, "ok\n")


async def test_a_restarted_worker_counts_nothing_twice_and_still_reports_the_wait(
    client: Client, dev_server: str, queue: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    """Counters are replay-safe; the waiting gauge is state, rebuilt by the replay."""
    name = f"restart-{queue}"
    spec = check_data(
        plan(
            ws("w", echo("first"), sh("deploy", "true", needs=["first"], approval=True)), name=name
        )
    )
    first = start_worker(dev_server, queue, home=tmp_path / "home")
    workers.append(first)
    await wait_status(first, "/readyz", 200)
    rid = await api.start_run(client, spec, plan_dir=tmp_path, task_queue=queue)
    page = await until_metric(first, "towline_tasks_waiting", 1, reason="approval")
    assert sample(page, "towline_task_waits_total", reason="approval") == 1
    assert sample(page, "towline_tasks_finished_total", plan=name, tool="echo") == 1
    waited = sample(page, "towline_task_wait_oldest_seconds", reason="approval")
    assert waited is not None
    assert waited >= 0
    first.stop()

    second = start_worker(dev_server, queue, home=tmp_path / "home")
    workers.append(second)
    await wait_status(second, "/readyz", 200)
    await api.get_status(client, rid)  # the query makes the new worker replay the run
    page = await until_metric(second, "towline_tasks_waiting", 1, reason="approval")
    # The replay rebuilt the wait, from when it began, and counted nothing twice.
    again = sample(page, "towline_task_wait_oldest_seconds", reason="approval")
    assert again is not None
    assert again > waited
    assert sample(page, "towline_task_waits_total", reason="approval") is None
    assert sample(page, "towline_tasks_finished_total", plan=name) is None
    assert sample(page, "towline_runs_started_total", plan=name) is None

    await api.answer(client, rid, "w.deploy", "approve", by="test")
    assert (await api.wait_run(client, rid)).status == "succeeded"
    page = await metrics(second)
    finished = "towline_tasks_finished_total"
    assert sample(page, finished, plan=name, tool="shell", status="succeeded") == 1
    assert sample(page, finished, plan=name, tool="echo") is None
    assert sample(page, "towline_runs_finished_total", plan=name, status="succeeded") == 1
    assert sample(page, "towline_tasks_waiting", reason="approval") == 0
    assert sample(page, "towline_task_wait_oldest_seconds", reason="approval") is None


async def test_a_taken_port_is_bad_input_naming_the_port(
    dev_server: str, queue: str, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = await asyncio.create_subprocess_exec(
            TOWLINE,
            "worker",
            "--address",
            dev_server,
            "--task-queue",
            queue,
            "--http-host",
            "127.0.0.1",
            "--http-port",
            str(port),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "TOWLINE_HOME": str(tmp_path)},
        )
        _, err = await proc.communicate()
    assert proc.returncode == 2
    assert f"cannot serve /metrics on 127.0.0.1:{port}" in err.decode()
    assert "--http-port" in err.decode()
