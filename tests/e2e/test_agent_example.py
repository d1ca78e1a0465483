"""examples/agent-fix/ run with the CLI and its bundled fake model, as a newcomer would."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.e2e.test_cli import ROOT, towline
from towline.worker.devserver import free_port

pytestmark = pytest.mark.timeout(120)

EXAMPLE = ROOT / "examples" / "agent-fix"
FIX = "workstreams.calc.tasks.tests.on_failure.fix.with"


@pytest.fixture
def fake_model() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLE / "fake_model.py"), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert "fake model on" in proc.stdout.readline()
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait(10)


async def test_the_agent_fix_example_runs_with_its_fake_model(
    dev_server: str, task_queue: str, fake_model: str
) -> None:
    conn = ["--address", dev_server, "--task-queue", task_queue]
    plan = str(EXAMPLE / "plan.yaml")
    r = await towline(
        "run", plan, "--wait", "--json", "--set", f"{FIX}.base_url={fake_model}", *conn
    )
    out = json.loads(r.out)
    assert r.code == 0, r.err
    tests = out["workstreams"]["calc"]["tasks"]["tests"]
    assert tests["status"] == "succeeded"
    assert tests["fixes"] == 1
    fix = tests["fix"]
    assert (
        fix["summary"]
        == "add() in calc.py subtracted instead of adding; I made it add, and the tests pass."
    )
    assert "+    return a + b" in fix["diff"]
    assert fix["turns"] == 4
    assert out["usage"]["tokens"] == fix["tokens"] > 0

    estimate = await towline("estimate", plan, "--json")
    assert estimate.code == 0, estimate.err
    rows = {row["task"]: row for row in json.loads(estimate.out)["tasks"]}
    assert rows["calc.tests (fix)"]["tool"] == "agent"
