"""Notifications (``notify:``) to a real local HTTP receiver, through whole runs."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType, RetryState
from temporalio.client import Client

from tests.fakes.servers import LocalServer, Reply, Request
from tests.helpers import echo, plan, ws
from towline.plan.load import check_data
from towline.starter import api
from towline.worker.devserver import free_port

pytestmark = pytest.mark.timeout(120)


def _ok(request: Request) -> Reply:
    return Reply.of_json({"ok": True})


async def _start(client: Client, queue: str, tmp_path: Path, spec: dict[str, Any]) -> str:
    return await api.start_run(client, check_data(spec), plan_dir=tmp_path, task_queue=queue)


async def _until_waiting(client: Client, rid: str) -> None:
    for _ in range(600):
        if (await api.get_status(client, rid)).status == "waiting":
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the run never waited")


async def test_a_run_tells_its_webhook_of_each_transition_once_with_the_command_to_answer(
    client: Client,
    task_queue: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with LocalServer(_ok) as receiver:
        hook = f"{receiver.url}/hooks/secret-path-abc123"
        monkeypatch.setenv("TOWLINE_SECRET_HOOK", hook)  # the worker runs in this process
        spec = plan(ws("w", echo("build"), echo("deploy", needs=["build"], approval=True)))
        spec["labels"] = {"team": "platform"}
        spec["notify"] = [{"webhook": "${{ secrets.HOOK }}"}]
        rid = await _start(client, task_queue, tmp_path, spec)
        await _until_waiting(client, rid)
        for _ in range(100):  # the waiting event is sent without holding up the run
            if receiver.requests:
                break
            await asyncio.sleep(0.1)
        await api.answer(client, rid, "w.deploy", "approve", by="ana")
        state = await api.wait_run(client, rid)

        assert state.status == "succeeded"
        events = [r.json() for r in receiver.requests]
        assert [e["event"] for e in events] == ["waiting", "succeeded"]
        assert all(r.path == "/hooks/secret-path-abc123" for r in receiver.requests)
        keys = [r.headers["idempotency-key"] for r in receiver.requests]
        assert keys == [f"{rid}:1:waiting", f"{rid}:2:succeeded"]
        waiting = events[0]
        assert waiting["run_id"] == rid
        assert waiting["labels"] == {"team": "platform"}
        assert waiting["waiting"][0]["task"] == "w.deploy"
        assert waiting["waiting"][0]["for"] == "approval"
        assert f"towline approve {rid} w.deploy" in waiting["waiting"][0]["commands"]
        assert waiting["web_ui"].endswith(f"/workflows/{rid}")
        # The webhook's URL, a secret, is in no history.
        for wid in (rid, f"{rid}/w"):
            handle = client.get_workflow_handle(wid)
            text = json.dumps([str(e) async for e in handle.fetch_history_events()])
            assert "secret-path-abc123" not in text


async def test_a_receiver_that_is_down_for_a_while_gets_the_event_when_it_is_back(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    port = free_port()
    spec = plan(ws("w", echo("a", approval=True)))
    spec["notify"] = [{"webhook": f"http://127.0.0.1:{port}/hook", "on": ["waiting"]}]
    rid = await _start(client, task_queue, tmp_path, spec)
    await _until_waiting(client, rid)
    await asyncio.sleep(2)  # the first deliveries (1 s apart, then 2 s) find no one
    answers = iter([Reply(503)])  # then it answers, badly at first

    def flaky(request: Request) -> Reply:
        return next(answers, Reply.of_json({"ok": True}))

    with LocalServer(flaky, port=port) as receiver:
        for _ in range(300):
            if len(receiver.requests) >= 2:
                break
            await asyncio.sleep(0.1)
        await api.answer(client, rid, "w.a", "approve")
        state = await api.wait_run(client, rid)

    assert state.status == "succeeded"
    assert len(receiver.requests) == 2  # 503, then delivered, and never again
    assert {r.headers["idempotency-key"] for r in receiver.requests} == {f"{rid}:1:waiting"}
    assert receiver.requests[-1].json()["event"] == "waiting"


async def test_a_receiver_that_never_answers_neither_blocks_nor_fails_the_run(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    spec = plan(ws("w", echo("a")))
    dead = f"http://127.0.0.1:{free_port()}/hook"
    spec["notify"] = [{"webhook": dead, "timeout": "3s"}]
    rid = await _start(client, task_queue, tmp_path, spec)
    state = await api.wait_run(client, rid)

    assert state.status == "succeeded"
    events = [e async for e in client.get_workflow_handle(rid).fetch_history_events()]
    # Retried until its deadline, then given up (failed, retry state: timeout).
    [gave_up] = [e for e in events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED]
    failure = gave_up.activity_task_failed_event_attributes
    assert failure.retry_state == RetryState.RETRY_STATE_TIMEOUT
    assert events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED
