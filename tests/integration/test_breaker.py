"""Circuit breakers against real workers: a failing target makes later tasks wait, the
breaker outlives the worker, and after the cooldown (time-skipped) a probe closes it."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from tests.helpers import plan, sh, ws
from towline.plan.load import check_data
from towline.plan.spec import BreakerSpec
from towline.starter import api
from towline.state import RunState, TaskState
from towline.worker.main import build_worker
from towline.workflows.breaker import (
    BreakerInput,
    BreakerState,
    BreakerWorkflow,
    ReportRequest,
    breaker_workflow_id,
)

pytestmark = pytest.mark.timeout(120)

TARGET = "shell:sh"  # every task below runs `sh -c ...` (plans opt in to command breakers)
FAILURES = BreakerSpec().failures


def failing_then(*later: dict[str, Any]) -> dict[str, Any]:
    """A plan whose first tasks fail one by one on ``sh`` (enough to open its breaker),
    then runs ``later``; one task at a time, and failures do not stop the workstream."""
    fails = [sh(f"fail{i}", "exit 3", priority=100 - i) for i in range(FAILURES)]
    return plan(
        ws("w", *fails, *later, settings={"max_parallel": 1, "failure_policy": "continue"}),
        name="breaker",
        breaker={"commands": True},
    )


def ledger_writer(tid: str, ledger: Path) -> dict[str, Any]:
    return sh(tid, f"echo {tid} >> {ledger}")


async def breaker_state(client: Client, queue: str) -> BreakerState:
    handle = client.get_workflow_handle(breaker_workflow_id(queue, TARGET))
    return await handle.query(BreakerWorkflow.state)


async def until_task(
    client: Client, run_id: str, tid: str, status: str, *, within: float = 60
) -> TaskState:
    async def poll() -> TaskState:
        while True:
            state = await api.get_status(client, run_id)
            task = state.workstreams["w"].tasks.get(tid)
            if task is not None and task.status == status:
                return task
            await asyncio.sleep(0.1)

    return await asyncio.wait_for(poll(), within)


async def cancel(client: Client, run_id: str) -> RunState:
    await api.cancel_run(client, run_id)
    return await api.wait_run(client, run_id)


async def test_an_open_breaker_makes_the_next_task_wait_instead_of_running(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger"
    spec = check_data(failing_then(ledger_writer("next", ledger)))
    rid = await api.start_run(client, spec, plan_dir=tmp_path, task_queue=task_queue)

    waiting = await until_task(client, rid, "next", "waiting")

    assert waiting.waiting_for == "breaker"
    assert waiting.reason is not None
    assert waiting.reason.startswith(f"circuit breaker open for {TARGET} until ")
    status = await api.get_status(client, rid)
    assert status.status == "waiting"
    for i in range(FAILURES):
        failed = status.workstreams["w"].tasks[f"fail{i}"]
        assert (failed.status, failed.attempts) == ("failed", 1)
        assert failed.error is not None
        assert failed.error.category == "tool"
    assert not ledger.exists(), "the task behind the open breaker ran"
    breaker = await breaker_state(client, task_queue)
    assert (breaker.status, breaker.failures) == ("open", FAILURES)

    final = await cancel(client, rid)
    assert final.workstreams["w"].tasks["next"].status == "cancelled"
    assert not ledger.exists()


async def test_the_breaker_outlives_its_worker_and_holds_back_other_runs(
    client: Client, towline_home: Path, tmp_path: Path
) -> None:
    queue = f"breaker-{uuid.uuid4().hex[:8]}"
    ledger = tmp_path / "ledger"
    async with build_worker(client, queue):
        first = await api.start_run(
            client, check_data(failing_then()), plan_dir=tmp_path, task_queue=queue
        )
        assert (await api.wait_run(client, first)).status == "failed"

    # A new worker (a new process would do the same): no memory of the first one.
    async with build_worker(client, queue):
        assert (await breaker_state(client, queue)).status == "open"
        other = check_data(
            plan(ws("w", ledger_writer("deploy", ledger)), name="other", breaker={"commands": True})
        )
        rid = await api.start_run(client, other, plan_dir=tmp_path, task_queue=queue)
        waiting = await until_task(client, rid, "deploy", "waiting")
        assert waiting.reason is not None
        assert TARGET in waiting.reason
        assert not ledger.exists()
        await cancel(client, rid)


async def test_terminating_the_breaker_workflow_resets_it(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger"
    first = await api.start_run(
        client, check_data(failing_then()), plan_dir=tmp_path, task_queue=task_queue
    )
    await api.wait_run(client, first)
    assert (await breaker_state(client, task_queue)).status == "open"
    await client.get_workflow_handle(breaker_workflow_id(task_queue, TARGET)).terminate(
        reason="target fixed"
    )

    again = check_data(
        plan(ws("w", ledger_writer("deploy", ledger)), name="again", breaker={"commands": True})
    )
    rid = await api.start_run(client, again, plan_dir=tmp_path, task_queue=task_queue)
    state = await api.wait_run(client, rid)
    assert state.workstreams["w"].tasks["deploy"].status == "succeeded"
    assert ledger.read_text().split() == ["deploy"]
    assert (await breaker_state(client, task_queue)).status == "closed"


async def test_tasks_on_other_targets_run_while_a_breaker_is_open(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger"
    python = {
        "id": "py",
        "tool": "shell",
        "with": {"command": ["python3", "-c", f"open({str(ledger)!r}, 'a').write('py')"]},
        "retry": {"max_attempts": 1},
    }
    raw = failing_then(python, {"id": "e", "tool": "echo", "with": {"a": 1}})
    state = await api.wait_run(
        client,
        await api.start_run(client, check_data(raw), plan_dir=tmp_path, task_queue=task_queue),
    )
    tasks = state.workstreams["w"].tasks
    assert (tasks["py"].status, tasks["e"].status) == ("succeeded", "succeeded")
    assert ledger.read_text() == "py"
    assert (await breaker_state(client, task_queue)).status == "open"


async def test_a_plan_can_turn_breakers_off(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger"
    raw = failing_then(ledger_writer("next", ledger))
    raw["settings"] = {"breaker": False}
    state = await api.wait_run(
        client,
        await api.start_run(client, check_data(raw), plan_dir=tmp_path, task_queue=task_queue),
    )
    assert state.workstreams["w"].tasks["next"].status == "succeeded"
    assert ledger.read_text().split() == ["next"]
    handle = client.get_workflow_handle(breaker_workflow_id(task_queue, TARGET))
    with pytest.raises(RPCError, match="not found"):
        await handle.describe()


async def test_plan_settings_decide_when_a_breaker_opens(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger"
    raw = plan(
        ws(
            "w",
            sh("fail0", "exit 3", priority=2),
            sh("fail1", "exit 3", priority=1),
            ledger_writer("next", ledger),
            settings={"max_parallel": 1, "failure_policy": "continue"},
        ),
        name="breaker",
        breaker={"failures": 2, "cooldown": "1h", "commands": True},
    )
    rid = await api.start_run(client, check_data(raw), plan_dir=tmp_path, task_queue=task_queue)
    waiting = await until_task(client, rid, "next", "waiting")
    assert waiting.waiting_for == "breaker"
    breaker = await breaker_state(client, task_queue)
    assert (breaker.status, breaker.failures, breaker.cooldown) == ("open", 2, timedelta(hours=1))
    await cancel(client, rid)
    assert not ledger.exists()


async def test_the_breaker_continues_as_new_keeping_its_state_and_drops_repeated_reports(
    client: Client, task_queue: str
) -> None:
    target = f"http:{uuid.uuid4().hex[:6]}.example"
    wid = breaker_workflow_id(task_queue, target)
    settings = BreakerSpec(failures=1000)

    async def failure(report_id: str) -> None:
        req = ReportRequest(
            id=report_id,
            target=target,
            queue=task_queue,
            holder="r/w.t",
            success=False,
            settings=settings,
        )
        await client.start_workflow(
            BreakerWorkflow.run,
            BreakerInput(target=target, max_history=40),
            id=wid,
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            start_signal="report",
            start_signal_args=[req],
        )

    handle = client.get_workflow_handle(wid)
    first_run = None
    for i in range(30):
        await failure(f"report-{i}")
        first_run = first_run or (await handle.describe()).run_id
        await failure(f"report-{i}")  # delivered twice: counted once
        start = WithStartWorkflowOperation(
            BreakerWorkflow.run,
            BreakerInput(target=target, max_history=40),
            id=wid,
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )
        decision = await client.execute_update_with_start_workflow(
            BreakerWorkflow.acquire, "r/w.t", start_workflow_operation=start
        )
        assert decision.allowed
    state = await handle.query(BreakerWorkflow.state)
    assert state.failures == 30
    assert (await handle.describe()).run_id != first_run, "it never continued as new"


# ------------------------------------------------------------ time-skipping server


async def test_after_the_cooldown_a_probe_runs_and_its_success_closes_the_breaker(
    time_skipping: WorkflowEnvironment, towline_home: Path, tmp_path: Path
) -> None:
    client = time_skipping.client
    queue = f"ts-{uuid.uuid4().hex[:8]}"
    ledger = tmp_path / "ledger"
    spec = check_data(failing_then(ledger_writer("probe", ledger)))
    async with build_worker(client, queue):
        rid = await api.start_run(
            client, spec, plan_dir=tmp_path, task_queue=queue, search_attributes=False
        )
        # Time stands still here: the probe task waits behind the open breaker.
        waiting = await until_task(client, rid, "probe", "waiting")
        assert waiting.reason is not None
        assert "circuit breaker open" in waiting.reason
        assert not ledger.exists()
        async with time_skipping.time_skipping_unlocked():  # type: ignore[attr-defined]
            state = await api.wait_run(client, rid)
        breaker = await breaker_state(client, queue)

    probe = state.workstreams["w"].tasks["probe"]
    assert probe.status == "succeeded", probe
    assert ledger.read_text().split() == ["probe"]
    waited = probe.ended_at - probe.started_at  # type: ignore[operator]
    assert waited >= BreakerSpec().cooldown
    assert (breaker.status, breaker.failures) == ("closed", 0)


async def test_commands_have_no_breaker_unless_the_plan_asks(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger"
    raw = failing_then(ledger_writer("next", ledger))
    raw["settings"] = {}
    state = await api.wait_run(
        client,
        await api.start_run(client, check_data(raw), plan_dir=tmp_path, task_queue=task_queue),
    )
    assert state.workstreams["w"].tasks["next"].status == "succeeded"
    handle = client.get_workflow_handle(breaker_workflow_id(task_queue, TARGET))
    with pytest.raises(RPCError, match="not found"):
        await handle.describe()
