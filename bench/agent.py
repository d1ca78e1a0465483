"""What durability costs an agent: ``agent_turns``.

An agent task of 20 turns, each a model call that asks for one tool call (``list_files``)
and that tool call, then a final answer, against the scripted chat-completions fake of
the tests (a real HTTP server on a socket, in this process). Two sides:

- **towline**: the ``agent`` tool in a towline run, on the benchmark's towline worker
  (its own process): each model call and each tool call an activity, the conversation a
  child workflow;
- **direct**: the same loop in this process, calling the same fake over HTTP with the
  same request and running the same tool function (``list_files``) in between: what an
  agent costs with no durability at all.

A turn is timed by the fake: the time between the arrivals of two consecutive model
requests (a model call, its tool call, and for towline the orchestration between them).
Reported: the median ms per turn of each side, and the overhead per turn (towline less
direct); goal <= :data:`GOAL_MS`.

    python -m bench.agent        # alone: its own dev server and towline worker
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client
from tests.fakes.chat import agent_server, answer, call
from tests.fakes.servers import LocalServer

from bench import harness
from towline.activities import agent_tools
from towline.agent.tools import schemas
from towline.plan.load import check_data
from towline.starter import api
from towline.state import RunState
from towline.toolcall import ToolContext
from towline.workflows.agent import SYSTEM

TURNS = 20
GOAL_MS = 30.0
MODEL = "bench-agent"


@dataclass
class AgentTurns:
    turns: int
    towline_ms: list[float] = field(default_factory=list)  # per turn, median of a run
    direct_ms: list[float] = field(default_factory=list)

    @property
    def overhead_ms(self) -> float:
        return statistics.median(self.towline_ms) - statistics.median(self.direct_ms)


def _script(turns: int) -> list[Any]:
    return [call("list_files", path=".") for _ in range(turns)] + [answer("done")]


class _Timed:
    """The fake, with the arrival time of each request."""

    def __init__(self, turns: int) -> None:
        self.server: LocalServer = agent_server({MODEL: _script(turns)})
        self.times: list[float] = []
        inner = self.server.handler

        def handler(request: Any) -> Any:
            self.times.append(time.perf_counter())
            return inner(request)

        self.server.handler = handler

    def per_turn_ms(self) -> float:
        gaps = [b - a for a, b in zip(self.times, self.times[1:], strict=False)]
        return 1000 * statistics.median(gaps)


async def towline_side(client: Client, queue: str, plan_dir: Path, turns: int) -> float:
    timed = _Timed(turns)
    with timed.server:
        plan = {
            "version": 1,
            "name": "bench-agent",
            "workstreams": [
                {
                    "id": "w",
                    "tasks": [
                        {
                            "id": "agent",
                            "tool": "agent",
                            "with": {
                                "instructions": "List the files, again and again.",
                                "model": MODEL,
                                "base_url": timed.server.url + "/v1",
                                "max_turns": turns + 1,
                                "memory": False,
                            },
                        }
                    ],
                }
            ],
        }
        rid = f"bench-agent-{uuid.uuid4().hex[:8]}"
        await api.start_run(
            client, check_data(plan), plan_dir=plan_dir, task_queue=queue, run_id=rid
        )
        state = await client.get_workflow_handle(rid, result_type=RunState).result()
    if state.status != "succeeded" or len(timed.times) != turns + 1:
        raise RuntimeError(f"the towline agent run {rid} ended {state.status}: {state.reason}")
    return timed.per_turn_ms()


async def direct_side(folder: Path, turns: int) -> float:
    """The same loop with no durability: HTTP calls and the tool function in-process."""
    timed = _Timed(turns)
    root = folder / "direct"
    root.mkdir(exist_ok=True)
    ctx = ToolContext(
        run_id="direct", workstream="w", task="agent", workspace=str(root), plan_dir=str(folder)
    )
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "List the files, again and again."},
    ]
    with timed.server:
        async with httpx.AsyncClient(timeout=60) as http:
            while True:
                reply = await http.post(
                    timed.server.url + "/v1/chat/completions",
                    json={"model": MODEL, "messages": messages, "tools": schemas()},
                )
                message = reply.json()["choices"][0]["message"]
                messages.append(message)
                if not message.get("tool_calls"):
                    break
                for c in message["tool_calls"]:
                    args = agent_tools.parse_arguments(c["function"]["arguments"])
                    text = await agent_tools.list_files(root, args, ctx, c["id"])
                    messages.append({"role": "tool", "tool_call_id": c["id"], "content": text})
    return timed.per_turn_ms()


async def measure(
    client: Client, queue: str, folder: Path, *, reps: int = 3, turns: int = TURNS
) -> AgentTurns:
    out = AgentTurns(turns)
    await towline_side(client, queue, folder, 3)  # warm-up: the agent's code paths
    for i in range(reps):
        sides = [("towline", out.towline_ms), ("direct", out.direct_ms)]
        for name, samples in sides[i % 2 :] + sides[: i % 2]:
            if name == "towline":
                value = await towline_side(client, queue, folder, turns)
            else:
                value = await direct_side(folder, turns)
            samples.append(value)
            print(
                f"  agent_turns {name} #{i + 1}: {value:.1f} ms/turn", file=sys.stderr, flush=True
            )
    return out


async def _alone() -> None:
    from towline.worker.client import wait_until_serving

    with tempfile.TemporaryDirectory(prefix="towline-bench-agent-") as tmp:
        folder = Path(tmp)
        server, address = harness.start_server(folder)
        worker = None
        try:
            client = await wait_until_serving(address, "default")
            queue = f"bench-agent-{uuid.uuid4().hex[:6]}"
            worker = harness.start_towline_worker(folder, address, queue, folder / "marks.txt")
            await harness.wait_polling(client, queue, worker, 60)
            result = await measure(client, queue, folder)
        finally:
            if worker is not None:
                worker.stop()
            server.stop()
    t, d = statistics.median(result.towline_ms), statistics.median(result.direct_ms)
    mark = "✓" if result.overhead_ms <= GOAL_MS else "✗"
    print(
        f"agent_turns: {result.turns} turns; towline {t:.1f} ms/turn, direct {d:.1f} ms/turn;"
        f" overhead {result.overhead_ms:.1f} ms per turn (goal <= {GOAL_MS:.0f} {mark})"
    )


if __name__ == "__main__":
    asyncio.run(_alone())
