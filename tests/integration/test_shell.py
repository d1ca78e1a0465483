"""The ``shell`` tool through whole towline runs, on a real Temporal dev server.

Commands run for real; every test that starts a long-lived process records its pids
and checks they are gone, and kills whatever is left when it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from tests.conftest import RunPlan
from tests.helpers import plan, ws
from towline.activities.artifacts import read_artifact
from towline.activities.process import run_streamed
from towline.activities.workspace import workspace_path
from towline.plan.load import PlanError, check_data
from towline.starter import api
from towline.state import RunState, TaskState

# A shell with a grandchild: the background sleep would outlive a shell killed alone.
SLEEP_WITH_CHILD = "sleep 600 & echo $! > {pids}; echo $$ >> {pids}; wait"
GONE_WITHIN = 15.0  # seconds; a generous bound on polling, not a performance check


def _plan(with_: dict[str, Any], *, repo: str | None = None, **task: Any) -> dict[str, Any]:
    """A plan of one shell task ``ws.t``, in ``repo`` if given, else a scratch workspace."""
    extra = {"repo": {"path": repo}} if repo is not None else {}
    return plan(ws("ws", {"id": "t", "tool": "shell", "with": with_, **task}, **extra))


def _task(state: RunState) -> TaskState:
    return state.workstreams["ws"].tasks["t"]


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie (dead, waiting to be reaped) does not count."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return not Path("/proc").is_dir()
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


async def _until(condition: Callable[[], bool], *, within: float = GONE_WITHIN) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


def _read_pids(path: Path) -> list[int]:
    if not path.exists():
        return []
    return [int(p) for p in path.read_text().split()]


@pytest.fixture
def pid_file(tmp_path: Path) -> Iterator[Path]:
    """Where a test's command writes its pids; whatever still runs is killed at the end."""
    path = tmp_path / "pids"
    yield path
    for pid in _read_pids(path):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A local folder used as the workstream's workspace (``repo: {path: ./repo}``)."""
    folder = tmp_path / "repo"
    (folder / "src" / "pkg").mkdir(parents=True)
    return folder


async def test_argv_command_outputs_its_stdout_and_exit_code(run_plan: RunPlan) -> None:
    state = await run_plan(_plan({"command": ["echo", "hello", "world"]}))

    task = _task(state)
    assert task.status == "succeeded", task.error
    assert task.outputs["exit_code"] == 0
    assert task.outputs["stdout"] == "hello world\n"
    assert task.outputs["stderr"] == ""
    assert task.outputs["stdout_truncated"] is False
    assert read_artifact(task.outputs["log"]) == b"hello world\n"


async def test_shell_string_runs_with_sh(run_plan: RunPlan) -> None:
    state = await run_plan(
        _plan({"command": "echo one && echo two >&2 && test 1 -lt 2", "shell": True})
    )

    task = _task(state)
    assert task.status == "succeeded", task.error
    assert task.outputs["stdout"] == "one\n"
    assert task.outputs["stderr"] == "two\n"


def test_string_command_without_shell_is_rejected_before_the_run() -> None:
    with pytest.raises(PlanError, match=r"tasks\[0\]\.with\.command: a string needs shell: true"):
        check_data(_plan({"command": "echo hi"}))


async def test_string_command_known_only_at_run_time_needs_shell_too(run_plan: RunPlan) -> None:
    state = await run_plan(
        plan(
            ws(
                "ws",
                {"id": "make", "tool": "echo", "with": {"cmd": "echo hi"}},
                {
                    "id": "t",
                    "tool": "shell",
                    "needs": ["make"],
                    "with": {"command": "${{ tasks.make.outputs.cmd }}"},
                    "retry": {"max_attempts": 3},
                },
            )
        )
    )

    task = _task(state)
    assert task.status == "failed"
    assert task.error is not None
    assert task.error.category == "validation"
    assert "with.command: a string needs shell: true" in task.error.message
    assert task.attempts == 1


async def test_env_is_added_to_the_environment(run_plan: RunPlan) -> None:
    state = await run_plan(
        _plan(
            {
                "command": ["sh", "-c", 'echo "$GREETING:${PATH:+has-path}"'],
                "env": {"GREETING": "hi"},
            }
        )
    )

    task = _task(state)
    assert task.status == "succeeded", task.error
    assert task.outputs["stdout"] == "hi:has-path\n"


async def test_secrets_reach_the_command_only_when_asked_and_never_its_output(
    run_plan: RunPlan, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOWLINE_SECRET_SHELL_TEST", "hunter2-s3cr3t")
    script = 'echo "token=$TOKEN"; echo "inherited=${TOWLINE_SECRET_SHELL_TEST:-no}"; exit 4'

    state = await run_plan(
        _plan(
            {"command": ["sh", "-c", script], "env": {"TOKEN": "${{ secrets.SHELL_TEST }}"}},
            retry={"max_attempts": 1},
        )
    )

    task = _task(state)
    assert task.status == "failed"
    assert task.outputs["stdout"] == "token=***\ninherited=no\n"
    assert task.error is not None
    assert "hunter2" not in (task.error.output or "") + task.error.message
    assert b"hunter2" not in read_artifact(task.outputs["log"])


async def test_cwd_is_relative_to_the_workspace(
    run_plan: RunPlan, repo: Path, tmp_path: Path
) -> None:
    state = await run_plan(
        _plan({"command": ["pwd", "-P"], "cwd": "src/pkg"}, repo="./repo"), plan_dir=tmp_path
    )

    task = _task(state)
    assert task.status == "succeeded", task.error
    # The workspace is the workstream's own copy of the folder, never the folder itself.
    workspace = workspace_path(state.run_id, "ws")
    assert task.outputs["stdout"].strip() == str((workspace / "src" / "pkg").resolve())


@pytest.mark.parametrize("cwd", ["../..", "/", "src/../../", "link-out", "link-out/sub"])
async def test_cwd_outside_the_workspace_is_rejected(
    run_plan: RunPlan, repo: Path, tmp_path: Path, cwd: str
) -> None:
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    (repo / "link-out").symlink_to(outside)

    state = await run_plan(
        _plan({"command": ["pwd"], "cwd": cwd}, repo="./repo", retry={"max_attempts": 3}),
        plan_dir=tmp_path,
    )

    task = _task(state)
    assert task.status == "failed"
    assert task.error is not None
    assert task.error.category == "validation"
    assert "outside the workspace" in task.error.message
    assert task.attempts == 1


async def test_nonzero_exit_fails_with_category_tool_after_its_retries(
    run_plan: RunPlan,
) -> None:
    state = await run_plan(
        _plan(
            {"command": ["sh", "-c", "echo doing work; echo it broke >&2; exit 3"]},
            retry={"max_attempts": 2, "initial_interval": "1s"},
        )
    )

    task = _task(state)
    assert task.status == "failed"
    assert task.error is not None
    assert task.error.category == "tool"
    assert "exited with code 3" in task.error.message
    assert task.error.output is not None
    assert "it broke" in task.error.output
    assert task.attempts == 2
    assert task.outputs["exit_code"] == 3
    assert task.outputs["stderr"] == "it broke\n"


async def test_output_beyond_max_output_keeps_the_tail_and_the_full_log(
    run_plan: RunPlan,
) -> None:
    script = (
        "import sys\n"
        "for i in range(20000): print(f'line {i:05d}')\n"
        "print('err-' * 1000, file=sys.stderr)\n"
    )
    state = await run_plan(_plan({"command": [sys.executable, "-c", script], "max_output": 1024}))

    task = _task(state)
    assert task.status == "succeeded", task.error
    out = task.outputs
    assert out["stdout_truncated"] is True
    assert out["stderr_truncated"] is True
    assert len(out["stdout"].encode()) <= 1024
    assert out["stdout"].endswith("line 19999\n")
    full = read_artifact(out["log"]).decode()
    assert full.count("\n") == 20001
    assert "line 00000\n" in full
    assert "line 19999\n" in full
    assert "err-" * 1000 in full


async def test_command_not_found_is_a_validation_error_not_retried(
    run_plan: RunPlan,
) -> None:
    state = await run_plan(
        _plan({"command": ["towline-no-such-command", "--x"]}, retry={"max_attempts": 3})
    )

    task = _task(state)
    assert task.status == "failed"
    assert task.error is not None
    assert task.error.category == "validation"
    assert "towline-no-such-command" in task.error.message
    assert task.attempts == 1


async def test_timeout_stops_the_whole_process_group(run_plan: RunPlan, pid_file: Path) -> None:
    state = await run_plan(
        _plan(
            {"command": ["bash", "-c", SLEEP_WITH_CHILD.format(pids=pid_file)]},
            timeout="2s",
            retry={"max_attempts": 1},
        )
    )

    task = _task(state)
    assert task.status == "failed"
    assert task.error is not None
    assert task.error.category == "timeout"
    pids = _read_pids(pid_file)
    assert len(pids) == 2
    # The server times the attempt out; the worker learns it on its next heartbeat.
    assert await _until(lambda: not any(_alive(p) for p in pids)), (
        f"still running: {[p for p in pids if _alive(p)]}"
    )


async def test_cancelling_the_run_kills_the_command_and_its_children(
    client: Client, task_queue: str, tmp_path: Path, pid_file: Path
) -> None:
    spec = check_data(_plan({"command": ["bash", "-c", SLEEP_WITH_CHILD.format(pids=pid_file)]}))
    run_id = await api.start_run(client, spec, plan_dir=tmp_path, task_queue=task_queue)
    assert await _until(lambda: len(_read_pids(pid_file)) == 2, within=60), "never started"
    pids = _read_pids(pid_file)
    assert all(_alive(p) for p in pids)

    await api.cancel_run(client, run_id)
    state = await api.wait_run(client, run_id)

    assert await _until(lambda: not any(_alive(p) for p in pids)), (
        f"still running: {[p for p in pids if _alive(p)]}"
    )
    assert state.status == "cancelled"
    assert _task(state).status == "cancelled", _task(state)


async def test_stdout_and_stderr_keep_their_order_in_the_log_while_a_secret_is_held(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOWLINE_SECRET_SOME_TOKEN", "a-long-secret-value-0123456789")
    script = (
        "import sys, time\n"
        "for i in range(4):\n"
        "    for stream in (sys.stdout, sys.stderr):\n"
        "        stream.write(f'{stream.name[4:-1]}{i}\\n'); stream.flush(); time.sleep(0.05)\n"
    )
    log = io.BytesIO()
    code, _ = await run_streamed(
        [sys.executable, "-c", script], cwd=tmp_path, env={}, log=log, max_output=4096
    )
    assert code == 0
    expected = "".join(f"out{i}\nerr{i}\n" for i in range(4))
    assert log.getvalue().decode() == expected
