"""``towline gc`` against real runs: it asks Temporal, and never takes what an open run needs."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from tests.helpers import plan, sh, ws
from tests.workerproc import aget, sample, start_worker, wait_status
from towline import history
from towline.activities.artifacts import artifact_store
from towline.activities.workspace import workspace_path
from towline.plan.load import check_data
from towline.retention import collect, policy, schedule
from towline.starter import api
from towline.store import open_store

pytestmark = pytest.mark.timeout(120)

NOW = policy.Retention(dict.fromkeys(policy.KINDS, timedelta(0)))  # every retention is over
TOWLINE = str(Path(sys.executable).parent / "towline")


def _plan() -> dict[str, Any]:
    # `gate` fails once approved: its workspace is kept (keep: on_failure), and a retry of
    # the run waits at the same approval, working in the same workspace.
    return plan(
        ws(
            "w",
            sh("build", "echo built > out.txt; echo built"),
            sh("gate", "exit 1", needs=["build"], approval=True),
        ),
        name="gc",
    )


async def _until_waiting(client: Client, rid: str) -> None:
    for _ in range(300):
        w = (await api.get_status(client, rid)).workstreams.get("w")
        gate = w.tasks.get("gate") if w else None
        if gate is not None and gate.status == "waiting":
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{rid} never waited for approval")


def _stored(kind: str, rid: str) -> bool:
    store, prefix = artifact_store() if kind == "artifacts" else (open_store(), "snapshots/")
    return any(store.list(f"{prefix}{rid}/"))


async def _things(rid: str) -> dict[str, bool]:
    rows = history.open_store().runs()
    return {
        "workspaces": workspace_path(rid, "w").parent.exists(),
        "artifacts": _stored("artifacts", rid),
        "history": rid in rows,
    }


async def test_gc_keeps_what_open_runs_need_and_removes_the_rest_once_they_close(
    client: Client, task_queue: str, towline_home: Path, tmp_path: Path
) -> None:
    spec = check_data(_plan())
    closed = await api.start_run(client, spec, plan_dir=tmp_path, task_queue=task_queue)
    await _until_waiting(client, closed)
    await api.answer(client, closed, "w.gate", "approve", by="test")
    assert (await api.wait_run(client, closed)).status == "failed"
    retry = await api.retry_run(client, closed, task_queue=task_queue)  # in closed's workspace
    waiting = await api.start_run(client, spec, plan_dir=tmp_path, task_queue=task_queue)
    await _until_waiting(client, retry)
    await _until_waiting(client, waiting)
    forgotten = towline_home / "workspaces" / "never-a-run-here"
    (forgotten / "w").mkdir(parents=True)
    for rid in (closed, waiting):
        assert await _things(rid) == {"workspaces": True, "artifacts": True, "history": True}

    dry = await collect.collect(client, NOW, dry_run=True)
    assert dry.removed["workspaces"] == ["never-a-run-here"]
    assert forgotten.exists()  # a dry run removes nothing

    kept = await collect.collect(client, NOW)
    # closed's things stay: the retry works in them; the waiting run is open
    assert await _things(closed) == {"workspaces": True, "artifacts": True, "history": True}
    assert await _things(waiting) == {"workspaces": True, "artifacts": True, "history": True}
    assert {closed, waiting} <= set(kept.kept_open)
    assert not forgotten.exists()  # Temporal has no such run and the retention is over

    default = await collect.collect(client, policy.from_environment({}))
    assert default.removed == {"workspaces": [], "snapshots": [], "artifacts": [], "history": []}

    for rid in (retry, waiting):
        await api.cancel_run(client, rid)
        await api.wait_run(client, rid)
    done = await collect.collect(client, NOW)
    for rid in (closed, waiting):
        assert await _things(rid) == {"workspaces": False, "artifacts": False, "history": False}
    assert closed in done.removed["workspaces"]
    assert done.freed["workspaces"] > 0


async def test_the_daily_schedule_runs_gc_on_the_task_queues_workers(
    client: Client, task_queue: str, towline_home: Path
) -> None:
    (towline_home / "workspaces" / "gone-long-ago" / "w").mkdir(parents=True)
    old = time.time() - 30 * 86400
    for p in (
        towline_home / "workspaces" / "gone-long-ago",
        towline_home / "workspaces" / "gone-long-ago" / "w",
    ):
        os.utime(p, (old, old))
    sid = await schedule.install(client, task_queue, "03:30")
    handle = client.get_schedule_handle(sid)
    try:
        assert await schedule.install(client, task_queue, "04:15") == sid  # updated, not doubled
        desc = await handle.describe()
        (calendar,) = desc.schedule.spec.calendars
        assert (calendar.hour[0].start, calendar.minute[0].start) == (4, 15)
        await handle.trigger()
        for _ in range(100):
            actions = (await handle.describe()).info.recent_actions
            if actions:
                break
            await asyncio.sleep(0.1)
        started = actions[0].action
        result = await client.get_workflow_handle(started.workflow_id).result()  # type: ignore[attr-defined]
        assert result["removed"]["workspaces"] == ["gone-long-ago"]
        assert not (towline_home / "workspaces" / "gone-long-ago").exists()
    finally:
        await handle.delete()


async def test_the_cli_and_the_worker_endpoint(
    dev_server: str, towline_home: Path, tmp_path: Path
) -> None:
    big = towline_home / "workspaces" / "some-run" / "w" / "blob"
    big.parent.mkdir(parents=True)
    big.write_bytes(b"x" * 300_000)
    env = {**os.environ, "TEMPORAL_CONFIG_FILE": os.devnull}

    async def gc(*args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            TOWLINE,
            *("gc", "--address", dev_server, *args),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        out, err = await proc.communicate()
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    code, out, err = await gc("--older-than", "1h", "--dry-run", "--json")
    assert code == 0, err
    assert json.loads(out)["removed"]["workspaces"] == []  # touched just now
    code, _, err = await gc("--older-than", "a while")
    assert code == 2
    assert "--older-than: not a duration" in err

    w = start_worker(dev_server, "gc-endpoint", home=towline_home)
    try:
        await wait_status(w, "/readyz", 200)
        _, page = await aget(w.url("/metrics"))
        used = sample(page, "towline_disk_used_bytes", kind="workspaces")
        assert used is not None
        assert used >= 300_000
        assert sample(page, "towline_disk_used_bytes", kind="history") is not None
    finally:
        w.stop()
