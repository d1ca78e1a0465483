"""The ``mcp`` tool through whole towline runs, against a real MCP server.

The server (tests/fakes/mcp_server.py, built with the SDK's MCPServer) is started by the
tool itself over stdio, or by the test over streamable HTTP on a free port.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RunPlan
from tests.helpers import plan, sh, ws
from towline.activities.artifacts import read_artifact
from towline.plan.load import PlanError, check_data
from towline.state import TaskState
from towline.worker.devserver import free_port, port_open

SERVER = Path(__file__).resolve().parents[1] / "fakes" / "mcp_server.py"
STDIO = [sys.executable, str(SERVER), "stdio"]
TOOLS = "add, echo, environment, fail, point, shout, sleep, where"
STARTUP = 30.0  # seconds the HTTP server may take to listen; polled, not slept


def _call(
    tid: str, tool: str, arguments: dict[str, Any] | None = None, **with_: Any
) -> dict[str, Any]:
    """An mcp task calling ``tool`` on the stdio server unless ``url`` is given."""
    args: dict[str, Any] = {"tool": tool, "arguments": arguments or {}, **with_}
    if "url" not in args:
        args.setdefault("command", STDIO)
    extra = {k: args.pop(k) for k in ("timeout",) if k in args}
    return {"id": tid, "tool": "mcp", "with": args, "retry": {"max_attempts": 1}, **extra}


async def _run(run_plan: RunPlan, *tasks: dict[str, Any], **wsargs: Any) -> dict[str, TaskState]:
    state = await run_plan(plan(ws("w", *tasks, **wsargs), failure_policy="continue"))
    return state.workstreams["w"].tasks


def _failed(t: TaskState) -> tuple[str, str]:
    assert t.status == "failed", t
    assert t.error is not None
    return t.error.category, t.error.message


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[str]:
    """The same server over streamable HTTP; its endpoint's URL."""
    port = free_port()
    log = (tmp_path / "mcp-http.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, str(SERVER), "http", str(port)], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + STARTUP
        while not port_open("127.0.0.1", port):
            assert proc.poll() is None, (tmp_path / "mcp-http.log").read_text()
            assert time.monotonic() < deadline, "the MCP server did not listen in time"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


async def test_tools_answer_over_stdio_with_structured_and_text_content(
    run_plan: RunPlan,
) -> None:
    tasks = await _run(
        run_plan,
        _call("add", "add", {"a": 2, "b": 3}),
        _call("point", "point", {"x": 1, "y": 2}),
    )

    add = tasks["add"]
    assert add.status == "succeeded", add.error
    assert add.outputs["structured"] == {"result": 5}
    assert add.outputs["text"] == "5"
    assert add.outputs["content"] == [{"type": "text", "text": "5"}]
    assert add.outputs["is_error"] is False
    assert add.outputs["server"] == "towline-test-server"
    read_artifact(add.outputs["log"])  # the server's stderr, kept even when empty
    assert tasks["point"].outputs["structured"] == {"x": 1, "y": 2}


async def test_a_stdio_server_runs_in_the_workspace_without_the_workers_secrets(
    run_plan: RunPlan, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOWLINE_SECRET_MCP_ONLY", "worker-held-secret")
    tasks = await _run(
        run_plan,
        sh("mkdir", "mkdir sub && pwd"),
        _call("given", "environment", {"name": "GREETING"}, env={"GREETING": "hi"}),
        _call("withheld", "environment", {"name": "TOWLINE_SECRET_MCP_ONLY"}),
        {**_call("cwd", "where", cwd="sub"), "needs": ["mkdir"]},
        _call("outside", "where", cwd=".."),
    )

    assert tasks["given"].outputs["text"] == "hi"
    assert tasks["withheld"].outputs["text"] == "<unset>"
    workspace = tasks["mkdir"].outputs["stdout"].strip()
    assert tasks["cwd"].outputs["text"] == f"{workspace}/sub"
    category, message = _failed(tasks["outside"])
    assert category == "validation"
    assert message.startswith("with.cwd: '..' is outside the workspace")


async def test_an_unknown_tool_or_bad_arguments_fail_once_as_validation(
    run_plan: RunPlan,
) -> None:
    tasks = await _run(
        run_plan,
        _call("unknown", "ad", {"a": 1}),
        _call("args", "add", {"a": "one"}),
    )

    server = f"the MCP server `{' '.join(STDIO)}`"
    assert _failed(tasks["unknown"]) == (
        "validation",
        f"{server} has no tool 'ad' (did you mean 'add'?); its tools: {TOOLS}",
    )
    assert tasks["unknown"].attempts == 1
    assert _failed(tasks["args"]) == (
        "validation",
        f"arguments do not fit tool 'add' of {server}: with.arguments: 'b' is a required "
        "property; with.arguments.a: 'one' is not of type 'integer'",
    )


async def test_a_tool_error_is_a_tool_failure_with_its_text(run_plan: RunPlan) -> None:
    tasks = await _run(run_plan, _call("fail", "fail", {"message": "the disk is full"}))

    t = tasks["fail"]
    assert _failed(t) == (
        "tool",
        "MCP tool 'fail' returned an error: Error executing tool fail: the disk is full",
    )
    assert t.outputs["is_error"] is True
    assert t.outputs["text"] == "Error executing tool fail: the disk is full"


async def test_servers_that_cannot_start_are_named(run_plan: RunPlan) -> None:
    crash = [sys.executable, "-c", "import sys; sys.exit('config file missing')"]
    tasks = await _run(
        run_plan,
        _call("missing", "add", command=["no-such-mcp-server-xyz"]),
        _call("crash", "add", command=crash),
        _call("silent", "add", command=["sleep", "60"], connect_timeout="1s"),
    )

    assert _failed(tasks["missing"]) == (
        "validation",
        "command not found: 'no-such-mcp-server-xyz' "
        "(starting the MCP server `no-such-mcp-server-xyz`)",
    )
    category, message = _failed(tasks["crash"])
    assert category == "tool"
    assert "ended the connection during the MCP handshake" in message
    assert tasks["crash"].error is not None
    assert tasks["crash"].error.output == "config file missing\n"  # its stderr
    assert read_artifact(tasks["crash"].outputs["log"]) == b"config file missing\n"
    assert _failed(tasks["silent"]) == (
        "tool",
        "the MCP server `sleep 60` did not answer the MCP handshake within 1s",
    )


async def test_a_secret_given_to_the_server_is_redacted_from_its_log(
    run_plan: RunPlan, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOWLINE_SECRET_MCP_TOKEN", "tok-5ecret-value")
    tasks = await _run(
        run_plan,
        _call(
            "shout",
            "shout",
            {"text": "${{ secrets.MCP_TOKEN }}"},
            env={"TOKEN": "${{ secrets.MCP_TOKEN }}"},
        ),
    )

    t = tasks["shout"]
    assert t.status == "succeeded", t.error
    assert read_artifact(t.outputs["log"]) == b"shouting: ***\n"


async def test_the_task_timeout_stops_the_call_and_the_server(
    run_plan: RunPlan, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    tasks = await _run(
        run_plan,
        _call(
            "slow", "sleep", {"seconds": 120}, env={"MCP_TEST_PID_FILE": str(pids)}, timeout="4s"
        ),
    )

    assert _failed(tasks["slow"])[0] == "timeout"
    (pid,) = map(int, pids.read_text().split())
    try:
        for _ in range(300):  # poll: the activity stops the server after the timeout
            if not _alive(pid):
                break
            await asyncio.sleep(0.05)
        assert not _alive(pid), "the MCP server outlived its task"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")


async def test_tools_answer_over_streamable_http(run_plan: RunPlan, http_server: str) -> None:
    refused = f"http://127.0.0.1:{free_port()}/mcp"
    tasks = await _run(
        run_plan,
        _call("add", "add", {"a": 40, "b": 2}, url=http_server),
        _call("unknown", "nope", url=http_server),
        _call("refused", "add", url=refused),
        _call("not-mcp", "add", url=http_server.removesuffix("/mcp") + "/elsewhere"),
    )

    add = tasks["add"]
    assert add.status == "succeeded", add.error
    assert add.outputs["structured"] == {"result": 42}
    assert "log" not in add.outputs
    assert _failed(tasks["unknown"]) == (
        "validation",
        f"the MCP server at {http_server} has no tool 'nope'; its tools: {TOOLS}",
    )
    assert _failed(tasks["refused"]) == (
        "tool",
        f"cannot reach the MCP server at {refused}: Connection refused",
    )
    elsewhere = http_server.removesuffix("/mcp") + "/elsewhere"
    assert _failed(tasks["not-mcp"]) == (
        "validation",
        f"the MCP server at {elsewhere} is not an MCP endpoint (HTTP 404 Not Found)",
    )


def test_bad_input_is_rejected_before_the_run_at_its_path() -> None:
    def task(**with_: Any) -> dict[str, Any]:
        return {"id": "t", "tool": "mcp", "with": with_}

    cases = [
        (task(tool="x"), "with: give 'command' (stdio) or 'url' (streamable HTTP), exactly one"),
        (
            task(tool="x", command=["s"], url="http://h/mcp"),
            "with: give 'command' (stdio) or 'url' (streamable HTTP), exactly one",
        ),
        (task(tool="x", url="http://h/mcp", env={"A": "b"}), "with: 'env' and 'cwd' go with"),
        (task(tool="x", command=["s"], headers={"A": "b"}), "with: 'headers' go with 'url'"),
        (task(tool="x", url="h/mcp"), "with: 'url' must start with http:// or https://"),
        (task(command=["s"]), "with: missing required key 'tool'"),
        (task(tool="x", command=[]), "with.command"),
    ]
    for spec, expected in cases:
        with pytest.raises(PlanError) as e:
            check_data(plan(ws("w", spec)))
        assert f"workstreams[0].tasks[0].{expected}" in str(e.value)
