"""``ask_human``: an agent task waits, for days if need be, for ``towline answer``
(the real CLI), on Temporal's time-skipping test server."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from tests.fakes.chat import agent_server, answer, call
from towline.plan.load import check_data
from towline.starter import api
from towline.worker.main import build_worker

pytestmark = pytest.mark.timeout(120)
TOWLINE = str(Path(sys.executable).parent / "towline")


def _greet(body: dict[str, Any]) -> dict[str, Any]:
    said = body["messages"][-1]["content"]
    return answer(f"I will greet with what was asked: {said}")


async def test_ask_human_waits_a_day_for_towline_answer(
    time_skipping: WorkflowEnvironment, towline_home: Path, tmp_path: Path
) -> None:
    client = time_skipping.client
    queue = f"ts-{uuid.uuid4().hex[:8]}"
    script: list[Any] = [call("ask_human", question="Which greeting should I use?"), _greet]
    with agent_server({"asker": script}) as server:
        spec = check_data(
            {
                "version": 1,
                "name": "ask",
                "workstreams": [
                    {
                        "id": "w",
                        "tasks": [
                            {
                                "id": "ask",
                                "tool": "agent",
                                "with": {
                                    "instructions": "Choose a greeting.",
                                    "model": "asker",
                                    "base_url": server.url + "/v1",
                                    "tools": ["ask_human"],
                                },
                            }
                        ],
                    }
                ],
            }
        )
        async with build_worker(client, queue):
            rid = await api.start_run(
                client, spec, plan_dir=tmp_path, task_queue=queue, search_attributes=False
            )
            for _ in range(200):
                state = await api.get_status(client, rid)
                ask = state.workstreams["w"].tasks.get("ask")  # listed once it is reached
                if ask is not None and ask.waiting_for == "answer":
                    break
                await asyncio.sleep(0.1)
            task = state.workstreams["w"].tasks["ask"]
            assert task.status == "waiting", state.model_dump_json(indent=1)
            assert state.status == "waiting"
            assert "Which greeting should I use?" in (task.reason or "")
            await time_skipping.sleep(timedelta(days=1))
            still = await api.get_status(client, rid)
            assert still.workstreams["w"].tasks["ask"].waiting_for == "answer"

            address = client.service_client.config.target_host
            done = await asyncio.to_thread(
                subprocess.run,
                [
                    TOWLINE,
                    "answer",
                    "--address",
                    address,
                    rid,
                    "w.ask",
                    "Good morning",
                    "--by",
                    "ana",
                ],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 0, done.stderr
            again = await asyncio.to_thread(
                subprocess.run,
                [TOWLINE, "answer", "--address", address, rid, "w.ask", "twice"],
                capture_output=True,
                text=True,
                timeout=60,
            )
            state = await api.wait_run(client, rid)

    assert again.returncode == 2, again.stderr  # no question waits any more
    task = state.workstreams["w"].tasks["ask"]
    assert state.status == "succeeded", state.model_dump_json(indent=1)
    assert task.outputs["summary"] == "I will greet with what was asked: ana answered: Good morning"
    (given,) = task.outputs["answers"]
    assert (given["question"], given["text"], given["by"]) == (
        "Which greeting should I use?",
        "Good morning",
        "ana",
    )
    assert task.started_at is not None
    assert task.ended_at is not None
    assert task.ended_at - task.started_at >= timedelta(days=1)
