"""No secret reaches the worker's log, whichever logger writes it: third-party ones too.

A real MCP stdio server, given a secret by the plan, prints it on stdout before it
speaks MCP; the MCP library's own logger then reports each line it could not read,
quoting it (a long one cut short in the middle, by pydantic). The worker's log must show
those reports, with the secret redacted, whole or cut.
"""

from __future__ import annotations

import secrets
import sys
import uuid
from pathlib import Path

import pytest
from temporalio.client import Client

from tests.helpers import plan, ws
from tests.workerproc import start_worker, wait_status
from towline.plan.load import check_data
from towline.starter import api

pytestmark = pytest.mark.timeout(90)

SERVER = Path(__file__).resolve().parents[1] / "fakes" / "mcp_server.py"
SECRET = f"sk-live-{secrets.token_hex(16)}"


async def test_a_secret_an_mcp_server_prints_is_redacted_from_the_library_log(
    client: Client, dev_server: str, tmp_path: Path
) -> None:
    queue = f"secret-logs-{uuid.uuid4().hex[:8]}"
    worker = start_worker(
        dev_server,
        queue,
        home=tmp_path / "home",
        args=["--log-level", "debug"],
        env={"TOWLINE_SECRET_MCP_TOKEN": SECRET},
    )
    try:
        await wait_status(worker, "/readyz", 200)
        task = {
            "id": "chatty",
            "tool": "mcp",
            "retry": {"max_attempts": 1},
            "with": {
                "command": [sys.executable, str(SERVER), "stdio"],
                "env": {
                    "MCP_TEST_PRINT": "token=${{ secrets.MCP_TOKEN }}\n"
                    + "x" * 10
                    + "${{ secrets.MCP_TOKEN }}"
                    + "y" * 80
                },
                "tool": "echo",
                "arguments": {"text": "hello"},
            },
        }
        spec = check_data(plan(ws("w", task)))
        rid = await api.start_run(client, spec, plan_dir=tmp_path, task_queue=queue)
        state = await api.wait_run(client, rid)
    finally:
        worker.stop()

    assert state.workstreams["w"].tasks["chatty"].status == "succeeded", state
    log = worker.output()
    assert log.count("Failed to parse JSONRPC message") == 2  # the library logged both lines
    assert "token=***" in log
    assert "xxxxxxxxxx***..." in log  # what pydantic kept of the long line
    pieces = {SECRET[i : i + 6] for i in range(len(SECRET) - 5)}
    assert not [p for p in pieces if p in log]
