"""The plans in examples/recovery/, run with the CLI as a newcomer would."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.e2e.test_cli import ROOT, towline

pytestmark = pytest.mark.timeout(120)

EXAMPLES = ROOT / "examples" / "recovery"


@pytest.fixture
def conn(dev_server: str, task_queue: str) -> list[str]:
    return ["--address", dev_server, "--task-queue", task_queue]


async def _run_wait(name: str, conn: list[str]) -> tuple[int, dict[str, Any]]:
    r = await towline("run", str(EXAMPLES / name), "--wait", "--json", *conn)
    return r.code, json.loads(r.out)


async def _status(rid: str, conn: list[str]) -> dict[str, Any]:
    r = await towline("status", rid, "--json", *conn)
    assert r.code == 0, r.err
    state: dict[str, Any] = json.loads(r.out)
    return state


async def _start(name: str, conn: list[str]) -> str:
    r = await towline("run", str(EXAMPLES / name), "--json", *conn)
    assert r.code == 0, r.err
    return str(json.loads(r.out)["run_id"])


async def _until_waiting(rid: str, ref: str, conn: list[str]) -> dict[str, Any]:
    """Poll until the task waits, and the run says so too (it hears of it by a signal)."""
    ws, task = ref.split(".")
    while True:
        status = await _status(rid, conn)
        t = status["workstreams"][ws]["tasks"].get(task)
        if t is not None and t["status"] == "waiting" and status["status"] == "waiting":
            return status
        await asyncio.sleep(0.2)


async def test_flaky_task_is_retried(conn: list[str]) -> None:
    code, out = await _run_wait("flaky.yaml", conn)
    assert code == 0
    task = out["workstreams"]["service"]["tasks"]["call-flaky-service"]
    assert task["status"] == "succeeded"
    assert task["attempts"] == 3


async def test_failing_test_gate_is_fixed_by_a_fix_task(conn: list[str]) -> None:
    code, out = await _run_wait("fix.yaml", conn)
    assert code == 0, out
    tests = out["workstreams"]["calc"]["tasks"]["tests"]
    assert tests["status"] == "succeeded"
    assert tests["fixes"] == 1
    assert tests["runs"] == 2
    table = await towline("status", out["run_id"], *conn)  # as the README says: a person sees it
    assert "1 fix; ran 2 times" in _row(table.out, "tests"), table.out
    logs = await towline("logs", out["run_id"], "calc.tests", *conn)
    assert logs.code == 0, logs.err
    titles = [line for line in logs.out.splitlines() if line.startswith("==> ")]
    assert [t.split(";")[0] for t in titles] == [
        "==> call 1 (test_gate): failed",
        "==> call 1 (test_gate): failed",
        "==> fix 1 (shell): succeeded",
        "==> call 2 (test_gate): succeeded",
    ], titles
    assert "fixing after: test_failed" in logs.out  # the fix call's own output


async def test_paused_task_is_retried_by_an_operator_command(conn: list[str]) -> None:
    rid = await _start("pause.yaml", conn)
    status = await _until_waiting(rid, "release.deploy", conn)
    assert status["status"] == "waiting"
    assert status["workstreams"]["release"]["tasks"]["deploy"]["waiting_for"] == "operator"
    table = await towline("status", rid, *conn)
    waiting = _row(table.out, "deploy")
    assert "target busy" in waiting, table.out  # what the tool said, not only its command
    assert f"towline retry|skip|abort {rid} release.deploy" in waiting, table.out
    listed = await towline("list", "--status", "waiting", "--query", f'WorkflowId = "{rid}"', *conn)
    assert (
        f"an operator for release.deploy (it failed): towline retry|skip|abort {rid}"
        in " ".join(listed.out.split())
    ), listed.out
    r = await towline("retry", rid, "release.deploy", "--by", "ops", "--note", "freed it", *conn)
    assert r.code == 0, r.err
    r = await towline("watch", rid, *conn)
    assert r.code == 0, r.err
    deploy = (await _status(rid, conn))["workstreams"]["release"]["tasks"]["deploy"]
    assert deploy["status"] == "succeeded"
    assert [d["answer"] for d in deploy["decisions"]] == ["retry"]
    table = await towline("status", rid, *conn)
    assert "retried by ops: freed it; ran 2 times" in _row(table.out, "deploy"), table.out


async def test_approval_is_given_from_the_cli(conn: list[str]) -> None:
    rid = await _start("approval.yaml", conn)
    await _until_waiting(rid, "prod.deploy", conn)
    r = await towline("approve", rid, "prod.nope", *conn)
    assert r.code == 2  # an unknown task is bad input
    r = await towline("approve", rid, "prod.deploy", "--by", "ana", "--note", "ship it", *conn)
    assert r.code == 0, r.err
    r = await towline("approve", rid, "prod.deploy", *conn)
    assert r.code == 2  # answered already: the task no longer waits for it
    assert "cannot take 'approve'" in r.err, r.err
    r = await towline("watch", rid, *conn)
    assert r.code == 0
    deploy = (await _status(rid, conn))["workstreams"]["prod"]["tasks"]["deploy"]
    assert deploy["status"] == "succeeded"
    assert deploy["decisions"][0]["by"] == "ana"
    assert deploy["decisions"][0]["note"] == "ship it"
    assert "at" in deploy["decisions"][0]
    table = await towline("status", rid, *conn)
    assert "approved by ana: ship it" in _row(table.out, "deploy"), table.out


async def test_failed_workstream_is_rolled_back(conn: list[str]) -> None:
    code, out = await _run_wait("rollback.yaml", conn)
    assert code == 1
    assert out["status"] == "rolled_back"
    db = out["workstreams"]["db"]
    assert db["status"] == "rolled_back"
    assert db["tasks"]["create-table"]["status"] == "rolled_back"
    assert db["tasks"]["backfill"]["status"] == "rolled_back"
    assert db["tasks"]["migrate-app"]["error"]["category"] == "tool"
    logs = await towline("logs", out["run_id"], "db.create-table", *conn)
    assert logs.code == 0, logs.err
    # It printed nothing, and its rollback neither: said so, call by call.
    assert logs.out == (
        "==> call 1 (shell): succeeded <==\n(no output)\n"
        "==> rollback (shell): succeeded <==\n(no output)\n"
    )
    logs = await towline("logs", out["run_id"], "db.migrate-app", *conn)
    assert "app migration failed: schema mismatch" in logs.out


def _row(table: str, task: str) -> str:
    """A task's row of ``towline status``'s table, its folded lines joined."""
    lines = table.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split("│")[0].strip() == task)
    row = [lines[start]]
    for line in lines[start + 1 :]:
        if line.split("│")[0].strip():
            break
        row.append(line)
    cells = [
        " ".join(c.strip() for c in col) for col in zip(*(r.split("│") for r in row), strict=True)
    ]
    return " ".join(" ".join(cells).split())
