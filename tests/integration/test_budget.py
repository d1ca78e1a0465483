"""Budgets and the llm tool's own task queue, with a local chat-completions server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from tests.fakes.chat import chat_server
from tests.fakes.servers import LocalServer
from tests.helpers import plan, ws
from towline.plan.load import check_data
from towline.plan.spec import BudgetSpec
from towline.starter import api
from towline.workflows import metrics

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def chat() -> Iterator[LocalServer]:
    with chat_server() as server:
        yield server


def _ask(tid: str, server: LocalServer, **extra: Any) -> dict[str, Any]:
    # "hello world" costs 2 prompt tokens and 3 completion tokens ("echo: hello world").
    return {
        "id": tid,
        "tool": "llm",
        "retry": {"max_attempts": 1},
        "with": {"base_url": f"{server.url}/v1", "model": "echo", "prompt": "hello world"},
        **extra,
    }


async def _until_task(client: Client, rid: str, tid: str, status: str) -> None:
    while True:
        t = (await api.get_status(client, rid)).workstreams["w"].tasks.get(tid)
        if t is not None and t.status == status:
            return
        assert t is None or t.status not in ("succeeded", "failed"), t
        await asyncio.sleep(0.1)


async def test_spent_budget_makes_the_next_llm_task_wait_until_raised(
    client: Client, task_queue: str, tmp_path: Path, chat: LocalServer
) -> None:
    data = plan(
        ws("w", _ask("first", chat), _ask("second", chat, needs=["first"])),
        budget={"max_tokens": 5},
    )
    rid = await api.start_run(client, check_data(data), plan_dir=tmp_path, task_queue=task_queue)
    await _until_task(client, rid, "second", "waiting")
    state = await api.get_status(client, rid)
    second = state.workstreams["w"].tasks["second"]
    assert second.waiting_for == "budget"
    # The worker (this process) reports the run's budget as all spent: 5 of 5 tokens.
    assert (rid, "test", 1.0) in metrics.budgets_now()
    assert "5 of 5 tokens" in (second.reason or "")
    assert len(chat.requests) == 1  # the second call did not happen
    assert state.usage.tokens == 5
    await api.raise_budget(client, rid, BudgetSpec(max_tokens=100))
    assert (rid, "test", 0.05) in metrics.budgets_now()  # 5 of 100, told by the update
    final = await api.wait_run(client, rid)
    assert final.status == "succeeded"
    assert final.usage.tokens == 10
    assert len(chat.requests) == 2
    assert rid not in [run for run, _, _ in metrics.budgets_now()]  # ended: no longer shown


async def test_budget_can_fail_the_task_instead(
    client: Client, task_queue: str, tmp_path: Path, chat: LocalServer
) -> None:
    data = plan(
        ws("w", _ask("first", chat), _ask("second", chat, needs=["first"])),
        budget={"max_tokens": 5, "on_exceed": "fail"},
    )
    rid = await api.start_run(client, check_data(data), plan_dir=tmp_path, task_queue=task_queue)
    final = await api.wait_run(client, rid)
    second = final.workstreams["w"].tasks["second"]
    assert second.status == "failed"
    assert second.error is not None
    assert second.error.category == "budget"
    assert len(chat.requests) == 1


async def test_llm_calls_go_to_their_own_task_queue(
    client: Client, task_queue: str, tmp_path: Path, chat: LocalServer
) -> None:
    rid = await api.start_run(
        client,
        check_data(plan(ws("w", _ask("only", chat)))),
        plan_dir=tmp_path,
        task_queue=task_queue,
    )
    assert (await api.wait_run(client, rid)).status == "succeeded"
    queues = [
        e.activity_task_scheduled_event_attributes.task_queue.name
        async for e in client.get_workflow_handle(f"{rid}/w").fetch_history_events()
        if e.HasField("activity_task_scheduled_event_attributes")
        and e.activity_task_scheduled_event_attributes.activity_type.name == "llm"
    ]
    assert queues == [f"{task_queue}-llm"]
