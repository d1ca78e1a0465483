"""Record the histories that tests/integration/test_replay.py replays.

Run it after a deliberate change to what towline's workflows do (and guard that change
with ``workflow.patched()`` if runs of the old code may still be in flight):

    .venv/bin/python -m tests.histories.record            # all of them
    .venv/bin/python -m tests.histories.record NAME...    # only these plans

Recording only the plans a change concerns keeps the older histories, which show that
runs started before the change still replay.

It starts a dev server, runs a few plans that exercise most of the workflow code (cross-
workstream outputs, an approval, an operator's retry, a failure with rollbacks, a
cancelled run, notifications, an agent that writes a file and asks a person, a run of
engine 2 with workstreams taking turns and a concurrency key), and writes each run's,
workstream's and agent's history as JSON beside this file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowHistory

from tests.fakes.chat import agent_server, answer, call
from tests.helpers import echo, plan, sh, ws
from towline.plan.load import check_data
from towline.starter import api
from towline.worker import devserver
from towline.worker.client import wait_until_serving
from towline.worker.main import build_workers

HERE = Path(__file__).parent
QUEUE = "record"
# A neutral folder for the runs' files: its paths end up in the recorded histories.
SCRATCH = Path("/srv/towline-replay")
# Runs recorded continuing-as-new: their history limit.
SHORT_HISTORY = {"asked": 25}


def _plans(scratch: Path, model_url: str) -> dict[str, dict[str, Any]]:
    undo = {"tool": "shell", "with": {"command": ["sh", "-c", "echo undone"]}}
    return {
        "cross-workstream": plan(
            ws("api", echo("build", **{"with": {"v": 1}}), echo("use", needs=["build"])),
            ws(
                "web",
                echo(
                    "deploy",
                    needs=["api.build"],
                    **{"with": {"v": "${{ tasks.api.build.outputs.v }}"}},
                ),
            ),
            ws("docs", echo("publish"), needs=["web"]),
            name="cross-workstream",
        ),
        "operator": plan(
            ws(
                "w",
                echo("gate", approval=True),
                sh("flaky", f"test -f {scratch / 'fixed'}", needs=["gate"], on_failure="pause"),
                {"id": "nap", "tool": "wait", "needs": ["flaky"], "with": {"for": "1s"}},
            ),
            name="operator",
        ),
        "rollback": plan(
            ws("w", echo("a", rollback=undo), sh("b", "exit 1", needs=["a"])),
            name="rollback",
        ),
        "cancelled": plan(ws("w", sh("slow", "sleep 30")), name="cancelled"),
        # Tools that need no folder: no scratch workspace (WorkstreamInput.workspace_free).
        "no-scratch": plan(ws("w", echo("a"), echo("b", needs=["a"])), name="no-scratch"),
        # Webhooks told of the wait and the end (notify:), by activities not awaited.
        "notify": {
            **plan(ws("w", echo("gate", approval=True)), name="notify"),
            "notify": [{"webhook": "http://127.0.0.1:9/hook", "timeout": "2s"}],
        },
        # A workspace held by one worker: calls go to its own queue, each change is
        # snapshotted, a failure rolls back there, and the holder cleans up.
        "held": plan(
            ws(
                "w",
                sh("a", "echo a > a.txt", rollback=undo),
                {"id": "t", "tool": "test_gate", "needs": ["a"], "with": {"command": ["true"]}},
                sh("b", "cat a.txt; exit 1", needs=["t"]),
            ),
            name="held",
        ),
        # Run engine 2 (any width): workstreams in turn (max_parallel_workstreams), the
        # plan's max_parallel shared out, a concurrency key, a need between workstreams.
        "wide": {
            **plan(
                *(
                    ws(f"r{i}", echo("a"), echo("b", needs=["a"]), concurrency={"key": "repo"})
                    if i < 2
                    else ws(f"r{i}", echo("a"), echo("b", needs=["a"]))
                    for i in range(5)
                ),
                ws("last", echo("a"), needs=["r0"]),
                name="wide",
            ),
            "settings": {"max_parallel_workstreams": 2, "max_parallel": 3},
        },
        # Run engine 2 continuing-as-new (a short history limit) with workstreams in
        # flight: it asks them to report their end by signal first.
        "asked": plan(
            *(ws(f"a{i}", echo("a"), echo("b", needs=["a"])) for i in range(8)),
            name="asked",
            max_parallel_workstreams=4,
        ),
        # An agent (its conversation a child workflow): a write, a question, an answer.
        "agent": plan(
            ws(
                "w",
                {
                    "id": "a",
                    "tool": "agent",
                    "with": {
                        "instructions": "Write a greeting, asking which one.",
                        "model": "recorder",
                        "base_url": model_url,
                        "tools": ["workspace", "ask_human"],
                    },
                },
            ),
            name="agent",
        ),
    }


_AGENT_SCRIPT = [
    call("write_file", path="hello.txt", content="hello\n"),
    call("ask_human", question="Which greeting?"),
    answer("Wrote hello.txt."),
]


async def _record(client: Client, rid: str, name: str) -> None:
    state = await api.get_status(client, rid)
    children = [
        f"{rid}/{w}/{t}"
        for w, ws_state in state.workstreams.items()
        for t, ts in ws_state.tasks.items()
        if ts.tool == "agent"
    ]
    for wid in [rid, *(f"{rid}/{w}" for w in state.workstreams), *children]:
        history = await client.get_workflow_handle(wid).fetch_history()
        _write(HERE / f"{name}{wid.removeprefix(rid).replace('/', '.')}.json", history)
    # A run that continued-as-new: its earlier executions too, oldest first (<name>-1, ...).
    earlier = [e.run_id async for e in client.list_workflows(f'WorkflowId = "{rid}"')][1:]
    for i, run_id in enumerate(reversed(earlier), start=1):
        history = await client.get_workflow_handle(rid, run_id=run_id).fetch_history()
        _write(HERE / f"{name}-{i}.json", history)


def _write(out: Path, history: WorkflowHistory) -> None:
    out.write_text(json.dumps(_without_stack_traces(history.to_json_dict()), indent=1) + "\n")


def _without_stack_traces(value: object) -> object:
    """Failures' stack traces name this machine's files; replay does not need them."""
    if isinstance(value, dict):
        return {k: _without_stack_traces(v) for k, v in value.items() if k != "stackTrace"}
    if isinstance(value, list):
        return [_without_stack_traces(v) for v in value]
    return value


async def _until_waiting(client: Client, rid: str, task: str) -> None:
    while True:
        state = await api.get_status(client, rid)
        t = state.workstreams["w"].tasks.get(task)
        if t is not None and t.status == "waiting":
            return
        await asyncio.sleep(0.1)


async def main(names: list[str]) -> None:
    scratch = SCRATCH / "plans"
    scratch.mkdir(parents=True, exist_ok=True)
    os.environ["TOWLINE_HOME"] = str(SCRATCH / "home")
    opts = devserver.DevServerOptions(port=devserver.free_port(), ui_port=None)
    proc = devserver.start(opts)
    try:
        client = await wait_until_serving(f"{opts.ip}:{opts.port}", "default")
        async with contextlib.AsyncExitStack() as stack:
            for w in build_workers(client, QUEUE, holder_queue=f"{QUEUE}/recorder", sandboxed=True):
                await stack.enter_async_context(w)
            model = stack.enter_context(agent_server({"recorder": _AGENT_SCRIPT}))
            plans = _plans(scratch, model.url + "/v1")

            async def start(name: str) -> str:
                return await api.start_run(
                    client,
                    check_data(plans[name]),
                    plan_dir=scratch,
                    task_queue=QUEUE,
                    run_id=name,
                    max_history=SHORT_HISTORY.get(name),
                )

            wanted = set(names or plans)
            for name in ("cross-workstream", "rollback", "no-scratch", "held", "wide", "asked"):
                if name in wanted:
                    await api.wait_run(client, await start(name))
                    await _record(client, name, name)
            if "operator" in wanted:
                await _operator(client, start, scratch)
            if "cancelled" in wanted:
                await _cancelled(client, start)
            if "notify" in wanted:
                await _notify(client, start)
            if "agent" in wanted:
                await _agent(client, start)
    finally:
        devserver.stop(proc)
        shutil.rmtree(SCRATCH, ignore_errors=True)


async def _operator(client: Client, start: Callable[[str], Awaitable[str]], scratch: Path) -> None:
    rid = await start("operator")
    await _until_waiting(client, rid, "gate")
    await api.answer(client, rid, "w.gate", "approve", by="recorder")
    await _until_waiting(client, rid, "flaky")
    (scratch / "fixed").touch()
    await api.answer(client, rid, "w.flaky", "retry", by="recorder")
    await api.wait_run(client, rid)
    await _record(client, rid, "operator")


async def _cancelled(client: Client, start: Callable[[str], Awaitable[str]]) -> None:
    rid = await start("cancelled")
    while (await api.get_status(client, rid)).workstreams["w"].tasks.get("slow") is None:
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)
    await api.cancel_run(client, rid)
    await api.wait_run(client, rid)
    await _record(client, rid, "cancelled")


async def _notify(client: Client, start: Callable[[str], Awaitable[str]]) -> None:
    """Nothing listens on the webhook's port (9, discard): each delivery is retried until
    its deadline and given up, and the run goes on regardless."""
    rid = await start("notify")
    await _until_waiting(client, rid, "gate")
    await asyncio.sleep(3)  # the waiting event's delivery gives up meanwhile
    await api.answer(client, rid, "w.gate", "approve", by="recorder")
    await api.wait_run(client, rid)
    await _record(client, rid, "notify")


async def _agent(client: Client, start: Callable[[str], Awaitable[str]]) -> None:
    rid = await start("agent")
    while True:
        task = (await api.get_status(client, rid)).workstreams["w"].tasks.get("a")
        if task is not None and task.waiting_for == "answer":
            break
        await asyncio.sleep(0.1)
    await api.answer_question(client, rid, "w.a", "hello", by="recorder")
    await api.wait_run(client, rid)
    await _record(client, rid, "agent")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
