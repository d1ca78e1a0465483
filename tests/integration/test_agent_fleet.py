"""An agent's conversation survives the SIGKILL of the worker holding its workspace.

Two real ``towline worker`` processes, blind to each other's disks (see test_fleet.py).
The worker holding the workspace is killed while the agent's ``run`` tool call runs on
it, between two model calls. The other worker takes the workspace over from its newest
snapshot (the agent's patch in it) and carries on with the next step: the model server
counts its requests, and none is made twice.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from tests.fakes.chat import agent_server, answer, call, conversation
from tests.integration.test_agent import FIX, PY, _text, fix_plan, project
from tests.integration.test_fleet import TAKEOVER, Fleet, _wait
from tests.integration.test_fleet import fleet as fleet  # the fixture
from towline.plan.load import check_data
from towline.starter import api

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]


async def test_killing_the_holder_between_two_turns_repeats_no_model_call(
    client: Client, fleet: Fleet, tmp_path: Path
) -> None:
    repo, plan_dir = project(tmp_path)
    pytest_q = f"{PY} -m pytest -q -p no:cacheprovider"
    script: list[Any] = [
        call("read_file", path="calc.py"),
        call("apply_patch", patch=FIX),
        call("run", command=["sh", "-c", f"sleep 6; {pytest_q}"]),
        answer("Added sub(a, b); the tests pass."),
    ]
    with agent_server({"fixer": script}) as server:
        plan = fix_plan(repo, server.url + "/v1")
        plan["workstreams"][0]["repo"] = {"url": f"file://{repo}"}
        plan["settings"] = {"takeover": TAKEOVER}
        spec = check_data(plan)
        await fleet.start("a", "b")
        rid = await api.start_run(client, spec, plan_dir=plan_dir, task_queue=fleet.queue)
        for _ in range(600):  # until the model has asked for the slow run
            if len(server.requests) >= 3:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"the agent never got to its third turn:\n{fleet.logs()}")
        await asyncio.sleep(1.5)  # the run tool call is under way on the holder
        killed = fleet.holder(await api.get_status(client, rid), "api")
        fleet.workers[killed].proc.kill()
        fleet.workers[killed].proc.wait()

        state = await _wait(client, fleet, rid)
        requests = [conversation(r) for r in server.requests]

    assert state.status == "succeeded", f"{state.model_dump_json(indent=1)}\n{fleet.logs()}"
    # Each model call made once: the kill cost a tool call, never a turn.
    assert [len(m) for m in requests] == [2, 4, 6, 8]
    assert "2 passed" in requests[3][7]["content"]  # the run, again, on the new holder
    holding = state.workstreams["api"].holding
    assert holding is not None
    assert holding.number == 2  # taken over once
    assert fleet.holder(state, "api") != killed
    fix = state.workstreams["api"].tasks["test"].fix_outputs
    assert fix is not None
    assert fix["turns"] == 4
    assert "+def sub(a, b):" in _text(fix["diff"])
