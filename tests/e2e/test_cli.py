"""The ``towline`` command as a user runs it: a real process, its output and exit code."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from towline.worker.devserver import free_port

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "demo" / "plan.yaml"
TOWLINE = str(Path(sys.executable).parent / "towline")


@dataclass
class Result:
    code: int
    out: str
    err: str


async def towline(*args: str, env: dict[str, str] | None = None) -> Result:
    proc = await asyncio.create_subprocess_exec(
        TOWLINE, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


@pytest.fixture
def conn(dev_server: str, task_queue: str) -> list[str]:
    return ["--address", dev_server, "--task-queue", task_queue]


async def test_run_wait_json_prints_one_object_and_exits_0(conn: list[str]) -> None:
    r = await towline("run", str(DEMO), "--wait", "--json", *conn)
    assert r.code == 0, r.err
    out = json.loads(r.out)  # stdout holds the one object and nothing else
    assert out["status"] == "succeeded"
    assert out["run_id"].startswith("demo-")
    assert out["web_ui"].endswith(f"/namespaces/default/workflows/{out['run_id']}")
    build = out["workstreams"]["build"]
    assert build["status"] == "succeeded"
    assert build["tasks"]["version"] == {
        "status": "succeeded",
        "attempts": 1,
        "outputs": {"version": "1.4.2", "channel": "stable"},
    }
    announce = out["workstreams"]["release"]["tasks"]["announce"]["outputs"]["message"]
    assert announce == f"released 1.4.2 from run {out['run_id']}"
    assert out["usage"] == {"cost_usd": 0.0, "tokens": 0}


async def test_failed_run_exits_1_with_the_error_category(conn: list[str], tmp_path: Path) -> None:
    plan = {
        "version": 1,
        "name": "fails",
        "workstreams": [
            {
                "id": "w",
                "tasks": [
                    {
                        "id": "boom",
                        "tool": "shell",
                        "retry": {"max_attempts": 1},
                        "with": {"command": ["sh", "-c", "echo oops >&2; exit 4"]},
                    }
                ],
            }
        ],
    }
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan))
    r = await towline("run", str(path), "--wait", "--json", *conn)
    assert r.code == 1, r.err
    boom = json.loads(r.out)["workstreams"]["w"]["tasks"]["boom"]
    assert boom["status"] == "failed"
    assert boom["error"]["category"] == "tool"
    assert "exited with code 4" in boom["error"]["message"]


async def test_status_and_list_find_the_run_and_exit_codes_are_stable(conn: list[str]) -> None:
    r = await towline(
        "run", str(DEMO), "--id", f"stable-{time.time_ns()}", "--wait", "--json", *conn
    )
    assert r.code == 0, r.err
    rid = json.loads(r.out)["run_id"]
    # temporalio can crash at interpreter exit; the CLI's exit code must not depend on it.
    codes = [(await towline("status", rid, "--json", *conn)).code for _ in range(8)]
    assert codes == [0] * 8
    status = json.loads((await towline("status", rid, "--json", *conn)).out)
    assert status["status"] == "succeeded"
    for _ in range(50):  # visibility is eventually consistent
        listed = json.loads((await towline("list", "--json", "--status", "succeeded", *conn)).out)
        if any(x["run_id"] == rid for x in listed):
            break
        await asyncio.sleep(0.2)
    assert any(x["run_id"] == rid and x["plan"] == "demo" for x in listed)


async def test_invalid_plan_exits_2_naming_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "version: 1\nname: bad\nworkstreams:\n  - id: w\n    tasks:\n"
        "      - {id: apply, tool: echo}\n      - {id: test, tool: echo, needs: [aply]}\n"
        "      - {id: x, tool: shel}\n"
    )
    for command in ("validate", "run"):
        r = await towline(command, str(path))
        assert r.code == 2
        assert "workstreams[0].tasks[1].needs: unknown task 'aply' (did you mean 'apply'?)" in r.err
        assert "workstreams[0].tasks[2].tool: unknown tool 'shel' (did you mean 'shell'?)" in r.err
        assert "Traceback" not in r.err


async def test_missing_plan_file_exits_2(tmp_path: Path) -> None:
    r = await towline("validate", str(tmp_path / "nope.yaml"))
    assert r.code == 2
    assert "nope.yaml" in r.err
    assert "Traceback" not in r.err


async def test_unknown_run_exits_2(conn: list[str]) -> None:
    r = await towline("status", "no-such-run", *conn)
    assert r.code == 2
    assert "unknown run 'no-such-run'" in r.err


@pytest.mark.parametrize("run_id", ["coll/w", "a b", "..", "x:y"])
async def test_a_run_id_outside_the_contract_exits_2(conn: list[str], run_id: str) -> None:
    # "coll/w" would be the workflow id of run coll's workstream w.
    r = await towline("run", str(DEMO), "--id", run_id, *conn)
    assert r.code == 2, r.err
    assert f"not a valid run id: {run_id!r} (use letters, digits, '.', '_' and '-'" in r.err


async def test_unreachable_server_exits_3_quickly_naming_the_address() -> None:
    address = f"127.0.0.1:{free_port()}"
    r = await towline("status", "any", "--address", address)
    assert r.code == 3
    assert address in r.err
    assert "Traceback" not in r.err


async def test_bad_argument_exits_2() -> None:
    r = await towline("run")
    assert r.code == 2


async def test_schema_is_json_schema_for_plans() -> None:
    r = await towline("schema")
    assert r.code == 0
    schema = json.loads(r.out)
    assert {"version", "name", "workstreams"} <= set(schema["properties"])
