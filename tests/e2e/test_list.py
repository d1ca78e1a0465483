"""``towline list``: runs filtered by status, label and a visibility query."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from tests.helpers import echo, plan, sh, ws
from towline.plan.load import check_data
from towline.starter import api

pytestmark = pytest.mark.timeout(90)

TOWLINE = str(Path(sys.executable).parent / "towline")


async def _list(dev_server: str, *args: str) -> tuple[int, Any, str]:
    proc = await asyncio.create_subprocess_exec(
        TOWLINE,
        "list",
        "--json",
        "--address",
        dev_server,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, json.loads(out) if proc.returncode == 0 else None, err.decode()


async def _ids(dev_server: str, *args: str, expect: list[str]) -> list[str]:
    """The run ids listed, polled until they are ``expect`` (visibility lags a little)."""
    got: list[str] = []
    for _ in range(50):
        code, runs, err = await _list(dev_server, *args)
        assert code == 0, err
        got = [r["run_id"] for r in runs]
        if got == expect:
            break
        await asyncio.sleep(0.2)
    return got


async def test_list_filters_by_status_label_and_query(
    client: Client, dev_server: str, task_queue: str, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    good = check_data(plan(ws("w", echo("a")), name=f"list-{tag}-good") | {"labels": {"t": tag}})
    bad = check_data(
        plan(ws("w", sh("b", "exit 1")), name=f"list-{tag}-bad") | {"labels": {"t": f"{tag}-x"}}
    )
    rid_good = await api.start_run(client, good, plan_dir=tmp_path, task_queue=task_queue)
    rid_bad = await api.start_run(client, bad, plan_dir=tmp_path, task_queue=task_queue)
    await api.wait_run(client, rid_good)
    await api.wait_run(client, rid_bad)

    assert await _ids(dev_server, "--label", f"t={tag}", expect=[rid_good]) == [rid_good]
    query = f'TowlinePlan = "list-{tag}-bad"'
    assert await _ids(dev_server, "--query", query, expect=[rid_bad]) == [rid_bad]
    by_status = ["--status", "failed", "--label", f"t={tag}-x"]
    assert await _ids(dev_server, *by_status, expect=[rid_bad]) == [rid_bad]
    none = ["--status", "succeeded", "--label", f"t={tag}-x"]
    assert await _ids(dev_server, *none, expect=[]) == []

    code, _, err = await _list(dev_server, "--label", "no-equals-sign")
    assert code == 2
    assert "--label 'no-equals-sign': expected KEY=VALUE" in err


async def test_list_prints_whole_ids_when_piped(
    client: Client, dev_server: str, task_queue: str, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    long_id = f"a-run-whose-id-is-longer-than-a-terminal-is-wide-{tag}-" + "x" * 40
    spec = check_data(plan(ws("w", echo("a")), name=f"list-{tag}-long"))
    await api.start_run(client, spec, plan_dir=tmp_path, task_queue=task_queue, run_id=long_id)
    await api.wait_run(client, long_id)
    await _ids(dev_server, "--query", f'WorkflowId = "{long_id}"', expect=[long_id])
    proc = await asyncio.create_subprocess_exec(
        TOWLINE,
        "list",
        "--address",
        dev_server,
        "--query",
        f'WorkflowId = "{long_id}"',
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    row = next(line for line in out.decode().splitlines() if long_id[:20] in line)
    assert long_id in row.split(), out.decode()  # whole, on one line, though past 80 columns
    assert f"list-{tag}-long" in row
