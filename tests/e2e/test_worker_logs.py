"""``towline worker --log-format json``: one JSON object a line, carrying the run's ids."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from tests.helpers import plan, sh, ws
from tests.workerproc import start_worker, wait_status
from towline.plan.load import check_data
from towline.starter import api

pytestmark = pytest.mark.timeout(90)


async def test_json_logs_carry_run_workstream_task_and_attempt_ids(
    client: Client, dev_server: str, tmp_path: Path
) -> None:
    queue = f"logs-{uuid.uuid4().hex[:8]}"
    worker = start_worker(
        dev_server,
        queue,
        home=tmp_path / "home",
        args=["--log-format", "json", "--log-level", "debug"],
    )
    try:
        await wait_status(worker, "/readyz", 200)
        # Fails once, then succeeds: the second attempt's lines say attempt 2.
        marker = tmp_path / "tried"
        script = f"test -f {marker} || {{ touch {marker}; exit 1; }}"
        spec = check_data(
            plan(ws("w", sh("flaky", script, retry={"max_attempts": 2, "initial_interval": "1s"})))
        )
        rid = await api.start_run(client, spec, plan_dir=tmp_path, task_queue=queue)
        assert (await api.wait_run(client, rid)).status == "succeeded"
    finally:
        worker.stop()

    lines = [line for line in worker.output().splitlines() if line.strip()]
    records: list[dict[str, Any]] = [json.loads(line) for line in lines]  # every line is JSON
    ours = [r for r in records if r.get("run_id") == rid]
    ids = {"run_id": rid, "workstream": "w", "task": "flaky"}
    # From the activity: one line per tool call, with its attempt.
    calls = [r for r in ours if r["logger"] == "temporalio.activity" and r.get("task") == "flaky"]
    # A failed call at info; a successful one at debug (its task's line says it at info).
    assert [(r["attempt"], r["message"].split()[2], r["level"]) for r in calls] == [
        (1, "failed", "info"),
        (2, "succeeded", "debug"),
    ]
    assert all(r.items() >= ids.items() and r["tool"] == "shell" for r in calls)
    # From the workflow (replay-safe): the task's outcome, once.
    done = [
        r
        for r in ours
        if r["logger"] == "temporalio.workflow"
        and r.get("task") == "flaky"
        and r["level"] == "info"
    ]
    assert [r["message"].split(" (")[0] for r in done] == ["task w.flaky succeeded"]
    assert done[0].items() >= {**ids, "attempt": 2}.items()
    assert done[0]["workflow_id"] == f"{rid}/w"
    assert {r["level"] for r in records} <= {"debug", "info", "warning", "error", "critical"}
