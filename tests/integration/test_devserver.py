"""The embedded dev server's settings keep what it acknowledged when it is killed.

towline's dev server trades the rollback journal for a write-ahead log without an fsync
per commit (see ``towline.worker.devserver``). A commit is then in the operating
system's hands before the server answers, so SIGKILL must lose nothing acknowledged.
"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest
from temporalio.client import WorkflowExecutionStatus

from tests.helpers import echo, plan, ws
from towline.plan.load import check_data
from towline.starter import api
from towline.worker import devserver
from towline.worker.client import connect
from towline.worker.main import build_worker

pytestmark = pytest.mark.timeout(90)


def _start(db: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    opts = devserver.DevServerOptions(port=devserver.free_port(), ui_port=None, db_filename=db)
    return devserver.start(opts, log=log), f"{opts.ip}:{opts.port}"


async def test_a_killed_server_loses_nothing_it_acknowledged(
    tmp_path: Path, towline_home: Path
) -> None:
    db = tmp_path / "temporal.db"
    proc, address = _start(db, tmp_path / "server.log")
    queue = f"durable-{uuid.uuid4().hex[:6]}"
    try:
        client = await connect(address, "default")
        async with build_worker(client, queue):
            done = await api.start_run(
                client,
                check_data(plan(ws("w", echo("a", **{"with": {"x": 1}}), echo("b", needs=["a"])))),
                plan_dir=tmp_path,
                task_queue=queue,
            )
            finished = await api.wait_run(client, done)
        assert finished.status == "succeeded"
        # Acknowledged, but no worker will ever take it before the kill.
        started = await api.start_run(
            client, check_data(plan(ws("w", echo("a")))), plan_dir=tmp_path, task_queue=queue
        )
    finally:
        proc.kill()  # SIGKILL: no shutdown, no checkpoint
        proc.wait()

    proc, address = _start(db, tmp_path / "server-again.log")
    try:
        client = await connect(address, "default")
        desc = await client.get_workflow_handle(done).describe()
        assert desc.status == WorkflowExecutionStatus.COMPLETED
        async with build_worker(client, queue):
            again = await api.get_status(client, done)
            assert again.workstreams["w"].tasks["a"].outputs == {"x": 1}
            assert (await api.wait_run(client, started)).status == "succeeded"
    finally:
        devserver.stop(proc)
