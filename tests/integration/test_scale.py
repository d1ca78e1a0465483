"""Scale behaviour at a size a test can afford (the benchmark covers full scale).

A workstream that outgrows its history continues-as-new and keeps answering queries,
signals and updates; many runs in flight on one worker keep their data apart.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from tests.helpers import echo, plan, ws
from towline.plan.load import check_data
from towline.starter import api
from towline.state import RunState, workstream_workflow_id
from towline.workflows import workstream

pytestmark = pytest.mark.timeout(120)

CHAINS = 20  # parallel chains in the long workstream
TASKS = 400


async def _runs_of(client: Client, workflow_id: str) -> int:
    """How many runs a workflow id has had (continue-as-new starts a new one)."""
    return len([e async for e in client.list_workflows(f'WorkflowId = "{workflow_id}"')])


async def _until(what: str, check: Any, timeout: float = 60.0) -> Any:
    """Poll ``check()`` until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if value := await check():
            return value
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting until {what}")


async def test_long_workstream_continues_as_new_and_keeps_answering(
    client: Client, task_queue: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The worker of this test runs in this process and reads the threshold from the
    # module (towline's modules pass through the workflow sandbox): lower it so 400
    # tasks continue-as-new several times.
    monkeypatch.setattr(workstream, "MAX_HISTORY_EVENTS", 300)
    long_tasks = [
        echo(f"t{i}", needs=[f"t{i - CHAINS}"] if i >= CHAINS else [], **{"with": {"i": i}})
        for i in range(TASKS)
    ]
    spec = check_data(
        plan(
            ws(
                "long",
                *long_tasks,
                # Its input arrives by signal, from the other workstream, after a while.
                echo(
                    "joined",
                    needs=["short.hold"],
                    **{"with": {"got": "${{ tasks.short.hold.outputs.v }}"}},
                ),
                # Answered by an update once everything else has run.
                echo("gate", needs=[f"t{TASKS - 1}", "joined"], approval=True),
                settings={"max_parallel": CHAINS},
            ),
            ws("short", echo("hold", approval=True, **{"with": {"v": "from-short"}})),
        )
    )
    rid = await api.start_run(client, spec, plan_dir=tmp_path, task_queue=task_queue)
    long_id = workstream_workflow_id(rid, "long")

    # Queries keep answering across continue-as-new, and finished work stays finished.
    done_seen: list[int] = []

    async def continued() -> bool:
        already = await _runs_of(client, long_id) > 1  # so the query below asks the new run
        state = await api.get_status(client, rid)
        tasks = state.workstreams["long"].tasks
        if not tasks:  # not started yet
            return False
        assert len(tasks) == TASKS + 2
        done_seen.append(sum(t.status == "succeeded" for t in tasks.values()))
        return already

    await _until("the long workstream has continued-as-new", continued)
    assert done_seen == sorted(done_seen), "a query after continue-as-new lost finished tasks"
    assert done_seen[-1] > 0

    # A signal (the upstream result, through the run) reaches the continued run.
    await _until("short.hold waits for approval", lambda: _waiting(client, rid, "short", "hold"))
    await api.answer(client, rid, "short.hold", "approve", by="tester")
    # An update (the approval) reaches the continued run too.
    await _until("long.gate waits for approval", lambda: _waiting(client, rid, "long", "gate"))
    await api.answer(client, rid, "long.gate", "approve", by="tester")

    state = await api.wait_run(client, rid)
    assert state.status == "succeeded", state.reason
    tasks = state.workstreams["long"].tasks
    assert all(t.status == "succeeded" for t in tasks.values())
    assert [tasks[f"t{i}"].outputs for i in (0, TASKS - 1)] == [{"i": 0}, {"i": TASKS - 1}]
    assert tasks["joined"].outputs == {"got": "from-short"}
    assert [(d.answer, d.by) for d in tasks["gate"].decisions] == [("approve", "tester")]
    runs = await _runs_of(client, long_id)
    assert runs >= 3, f"expected several continue-as-new runs, got {runs}"
    # Each run stopped near the threshold: the running tasks finish after it is passed.
    async for e in client.list_workflows(f'WorkflowId = "{long_id}"'):
        desc = await client.get_workflow_handle(long_id, run_id=e.run_id).describe()
        assert desc.history_length < 300 + 8 * CHAINS, desc.history_length


async def _waiting(client: Client, rid: str, wsid: str, tid: str) -> bool:
    state: RunState = await api.get_status(client, rid)
    return state.workstreams[wsid].tasks[tid].status == "waiting"


async def test_twenty_runs_in_flight_on_one_worker_keep_their_data_apart(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    spec = check_data(
        plan(
            ws(
                "a",
                *(
                    echo(
                        f"a{i}",
                        needs=[f"a{i - 1}"] if i else [],
                        **{"with": {"run": "${{ run.id }}"}},
                    )
                    for i in range(8)
                ),
            ),
            ws(
                "b",
                echo(
                    "first", **{"with": {"seen": "${{ tasks.a.a7.outputs.run }}"}}, needs=["a.a7"]
                ),
                *(echo(f"b{i}", needs=["first"], **{"with": {"i": i}}) for i in range(4)),
            ),
            name="crowd",
        )
    )
    ids = await asyncio.gather(
        *(api.start_run(client, spec, plan_dir=tmp_path, task_queue=task_queue) for _ in range(20))
    )
    assert len(set(ids)) == 20
    states = await asyncio.gather(*(api.wait_run(client, rid) for rid in ids))
    for rid, state in zip(ids, states, strict=True):
        assert state.status == "succeeded", (rid, state.reason)
        a, b = state.workstreams["a"].tasks, state.workstreams["b"].tasks
        assert all(t.status == "succeeded" for t in [*a.values(), *b.values()])
        assert {t.outputs["run"] for t in a.values()} == {rid}
        assert b["first"].outputs == {"seen": rid}
        assert sorted(b[f"b{i}"].outputs["i"] for i in range(4)) == [0, 1, 2, 3]
