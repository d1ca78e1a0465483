"""Bad arguments and environment values: each gets its exit code and a message naming it.

The CLI runs in-process (``run_cli``, what ``towline`` calls) for speed; the real
processes of tests/e2e/test_cli.py cover the entry point itself. Never a traceback:
each case checks that stderr holds no "Traceback" and no "unexpected error".
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.helpers import echo, plan, ws
from towline.plan.load import check_data
from towline.starter import api, local
from towline.starter.cli import run_cli
from towline.worker.devserver import free_port

pytestmark = pytest.mark.timeout(60)

TOWLINE = str(Path(sys.executable).parent / "towline")
PLAN = "version: 1\nname: p\nworkstreams: [{id: w, tasks: [{id: t, tool: echo}]}]\n"


@dataclass(frozen=True)
class Case:
    argv: list[str]
    code: int
    says: str
    env: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        env = " ".join(f"{k}={v!r}" for k, v in self.env.items())
        return f"{env} {' '.join(self.argv)}".strip()


# Each case fails before any server is needed; `PLAN` stands for a valid plan file.
OFFLINE = [
    Case(["worker"], 2, "TOWLINE_HTTP_PORT='abc': not a port number", {"TOWLINE_HTTP_PORT": "abc"}),
    Case(["worker", "--http-port", "99999"], 2, "argument --http-port: not a port number"),
    Case(["worker", "--http-port", "-1"], 2, "argument --http-port: not a port number"),
    Case(["worker", "--max-concurrent-activities", "-1"], 2, "not a whole number from 1"),
    Case(["worker", "--max-concurrent-activities", "0"], 2, "not a whole number from 1"),
    Case(
        ["worker"], 2, "TOWLINE_LOG_LEVEL='bogus': not a log level", {"TOWLINE_LOG_LEVEL": "bogus"}
    ),
    Case(["worker", "--log-level", "loud"], 2, "argument --log-level: not a log level"),
    Case(
        ["worker"], 2, "TOWLINE_LOG_FORMAT='xml': not a log format", {"TOWLINE_LOG_FORMAT": "xml"}
    ),
    Case(
        ["worker", "--rate-limit", "llm=nan"], 2, "--rate-limit 'llm=nan': 'nan' must be a finite"
    ),
    Case(["worker", "--rate-limit", "llm=0"], 2, "the rate must be above 0"),
    Case(["worker", "--http-host", " "], 2, "argument --http-host: not a host to listen on"),
    Case(["up", "--port", "99999"], 2, "argument --port: not a port number"),
    Case(["dev", "--ui-port", "0"], 2, "argument --ui-port: not a port number"),
    Case(["status", "r", "--address", "::::"], 2, "argument --address: not host:port: '::::'"),
    Case(["status", "r", "--address", ""], 2, "argument --address: not host:port: ''"),
    Case(["status", "r", "--address", "localhost:99999"], 2, "not a port number in"),
    Case(["status", "r", "--address", "localhost:abc"], 2, "argument --address: not host:port"),
    Case(["status", "r", "--address", "localhost"], 2, "argument --address: not host:port"),
    Case(
        ["status", "r"], 2, "TEMPORAL_ADDRESS='nope': not host:port", {"TEMPORAL_ADDRESS": "nope"}
    ),
    Case(["status", "r", "--namespace", ""], 2, "argument --namespace: must not be empty"),
    Case(["status", "r", "--task-queue", ""], 2, "argument --task-queue: must not be empty"),
    Case(
        ["status", "r"],
        2,
        "TOWLINE_TASK_QUEUE=' q': not a usable name",
        {"TOWLINE_TASK_QUEUE": " q"},
    ),
    Case(["status", ""], 2, "argument RUN: a run id must not be empty"),
    Case(["cancel", " "], 2, "argument RUN: a run id must not be empty"),
    Case(
        ["status", "r"],
        2,
        "TOWLINE_UI_URL='ftp://x': not an http(s) URL",
        {"TOWLINE_UI_URL": "ftp://x"},
    ),
    Case(["list", "--limit", "0"], 2, "argument --limit: not a whole number from 1"),
    Case(["list", "--status", "bogus"], 2, "argument --status: invalid choice: 'bogus'"),
    Case(["list", "--label", "novalue"], 2, "--label 'novalue': expected KEY=VALUE"),
    Case(["run", "PLAN", "--id", "a b"], 2, "argument --id: not a valid run id: 'a b'"),
    Case(["run", "PLAN", "--id", ".."], 2, "argument --id: not a valid run id: '..'"),
    Case(["run", "PLAN", "--id", ""], 2, "argument --id: not a valid run id: ''"),
    Case(["retry", "r", "--id", "x/y"], 2, "argument --id: not a valid run id"),
    Case(
        ["run", "PLAN", "--set", "settings.timeout=.inf"],
        2,
        "settings.timeout: numbers must be finite",
    ),
    Case(["run", "PLAN", "--set", "settings.timeout=99999999999999d"], 2, "duration too long"),
    Case(["validate", "PLAN", "--set", "name=&x [*x]"], 2, "recursive alias"),
    Case(["validate", "/dev/zero"], 2, "larger than 4 MiB"),
    Case(["validate", ""], 2, "argument PLAN: the path of a plan file must not be empty"),
    Case(["validate", "PLAN"], 0, "valid (1 workstream, 1 task)", {"TOWLINE_HTTP_PORT": "abc"}),
    Case(["validate", "PLAN"], 0, "valid (1 workstream, 1 task)", {"TOWLINE_UI_URL": "nope"}),
    Case(
        ["resume", "r", "--raise-budget", "max_cost_usd=-1"],
        2,
        "'-1' must be a finite number, 0 or more",
    ),
    Case(["resume", "r", "--raise-budget", "max_cost_usd=inf"], 2, "'inf' must be a finite number"),
    Case(["resume", "r", "--raise-budget", "max_cost_usd=nan"], 2, "'nan' must be a finite number"),
    Case(["resume", "r", "--raise-budget", "max_cost_usd=1e400"], 2, "'1e400' must be a finite"),
    Case(
        ["resume", "r", "--raise-budget", "max_tokens=1.5"], 2, "must be a whole number of tokens"
    ),
    Case(
        ["resume", "r", "--raise-budget", "tokens=5"], 2, "expected max_cost_usd=N or max_tokens=N"
    ),
]


def run(
    case: Case, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, plan_file: Path
) -> tuple[int, str, str]:
    for key in ("TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "TOWLINE_TASK_QUEUE", "TOWLINE_UI_URL"):
        monkeypatch.delenv(key, raising=False)
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    argv = [str(plan_file) if a == "PLAN" else a for a in case.argv]
    code = run_cli(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def plan_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TOWLINE_HOME", str(tmp_path / "home"))
    path = tmp_path / "plan.yaml"
    path.write_text(PLAN)
    return path


@pytest.mark.parametrize("case", OFFLINE, ids=str)
def test_bad_input_exits_with_its_code_and_names_it(
    case: Case, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, plan_file: Path
) -> None:
    code, out, err = run(case, capsys, monkeypatch, plan_file)
    assert code == case.code, (out, err)
    assert case.says in (err if case.code else out), err
    assert "Traceback" not in err
    assert "unexpected error" not in err


def test_an_unreachable_server_is_exit_3_naming_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, plan_file: Path
) -> None:
    address = f"127.0.0.1:{free_port()}"
    for argv in (["status", "r"], ["run", "PLAN"], ["cancel", "r"], ["list"]):
        case = Case(
            [*argv, "--address", address], 3, f"cannot reach the Temporal server at {address}"
        )
        code, _, err = run(case, capsys, monkeypatch, plan_file)
        assert code == 3, err
        assert case.says in err


# With a server: what it refuses.


async def online(
    argv: list[str], capsys: pytest.CaptureFixture[str], dev_server: str
) -> tuple[int, str, str]:
    code = await asyncio.to_thread(run_cli, [*argv, "--address", dev_server])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    assert "unexpected error" not in err
    return code, out, err


async def test_an_unknown_namespace_is_bad_input_naming_it(
    capsys: pytest.CaptureFixture[str], dev_server: str
) -> None:
    says = f"the Temporal server at {dev_server} has no namespace 'no-such-ns'"
    for argv in (["status", "r"], ["list"], ["cancel", "r"]):
        code, _, err = await online([*argv, "--namespace", "no-such-ns"], capsys, dev_server)
        assert code == 2, (argv, err)
        assert says in err
    # A worker sets up the process's logging: a process of its own.
    worker = await asyncio.create_subprocess_exec(
        TOWLINE,
        *("worker", "--http-port", "0", "--namespace", "no-such-ns", "--address", dev_server),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, raw = await asyncio.wait_for(worker.communicate(), 30)
    assert worker.returncode == 2, raw
    assert says in raw.decode()


async def test_a_query_the_server_rejects_is_bad_input(
    capsys: pytest.CaptureFixture[str], dev_server: str
) -> None:
    code, _, err = await online(["list", "--query", "(((("], capsys, dev_server)
    assert code == 2, err
    assert "towline: the server rejected the query '((((':" in err


async def test_commands_for_a_run_in_progress_say_a_finished_run_has_finished(
    capsys: pytest.CaptureFixture[str],
    dev_server: str,
    client: object,
    task_queue: str,
    tmp_path: Path,
) -> None:
    from temporalio.client import Client

    assert isinstance(client, Client)
    rid = f"finished-{secrets.token_hex(3)}"
    spec = check_data(plan(ws("w", echo("t"))))
    await api.start_run(client, spec, plan_dir=tmp_path, task_queue=task_queue, run_id=rid)
    assert (await api.wait_run(client, rid)).status == "succeeded"

    for command, says in (
        ("cancel", f"run {rid} has already finished (succeeded): there is nothing to cancel"),
        ("pause", f"run {rid} has already finished (succeeded): 'pause' applies only to a run"),
        ("resume", f"run {rid} has already finished (succeeded): 'resume' applies only to a run"),
    ):
        code, _, err = await online([command, rid], capsys, dev_server)
        assert code == 2, (command, err)
        assert says in err
    code, _, err = await online(["cancel", f"{rid}-nope"], capsys, dev_server)
    assert code == 2
    assert f"unknown run '{rid}-nope'" in err


# Web UI links


def test_web_ui_links_use_the_ui_port_the_local_server_was_started_with(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOWLINE_HOME", str(tmp_path))
    monkeypatch.delenv("TOWLINE_UI_URL", raising=False)
    local.record_server(os.getpid(), 7233, 9999)  # a live pid: this process
    assert local.web_ui_link("localhost:7233", "default", "r1") == (
        "http://localhost:9999/namespaces/default/workflows/r1"
    )
    assert local.ui_url_for("localhost:7300") == "http://localhost:8233"  # another server
    local.forget_server(os.getpid())
    assert local.ui_url_for("localhost:7233") == "http://localhost:8233"


def test_a_recorded_server_that_is_gone_is_not_trusted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOWLINE_HOME", str(tmp_path))
    monkeypatch.delenv("TOWLINE_UI_URL", raising=False)
    (tmp_path / "server.json").write_text(
        json.dumps({"pid": 2**22 + 7, "port": 7233, "ui_port": 9999})
    )
    assert local.ui_url_for("localhost:7233") == "http://localhost:8233"


def test_web_ui_links_for_any_server_come_from_towline_ui_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TOWLINE_UI_URL", "https://temporal.example.com/")
    assert local.web_ui_link("temporal.internal:7233", "prod", "r1") == (
        "https://temporal.example.com/namespaces/prod/workflows/r1"
    )
