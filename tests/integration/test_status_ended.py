"""A run that has ended is read from Temporal's histories: its status needs no worker."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from pathlib import Path

from temporalio.client import Client

from tests.helpers import echo, plan, sh, ws
from towline.plan.load import check_data
from towline.starter import api
from towline.worker.main import build_tool_workers, build_worker


async def test_the_status_of_ended_runs_needs_no_worker(
    client: Client, towline_home: Path, tmp_path: Path
) -> None:
    good = plan(ws("w", echo("a", **{"with": {"v": 1}})), ws("x", echo("b")))
    bad = plan(ws("w", echo("a"), sh("b", "echo no; exit 3", needs=["a"])))
    queue = f"ended-{uuid.uuid4().hex[:8]}"
    async with contextlib.AsyncExitStack() as stack:
        for worker in (
            build_worker(client, queue, sandboxed=True),
            *build_tool_workers(client, queue),
        ):
            await stack.enter_async_context(worker)
        rids = [
            await api.start_run(client, check_data(p), plan_dir=tmp_path, task_queue=queue)
            for p in (good, bad)
        ]
        asked = [await api.wait_run(client, rid) for rid in rids]  # queries, a worker answers
    assert [s.status for s in asked] == ["succeeded", "failed"]

    # No worker polls the queue now: a query would wait for one (and fail after 30 s).
    read = [await asyncio.wait_for(api.get_status(client, rid), 10) for rid in rids]

    assert read == asked
    assert read[0].workstreams["w"].tasks["a"].outputs == {"v": 1}
    failed = read[1].workstreams["w"].tasks["b"]
    assert failed.status == "failed"
    assert failed.error is not None
    assert (failed.error.category, failed.error.output) == ("tool", "no\n")
