"""One test per way a run used not to end, or to end half rolled back (issue 17's list).

Each runs real workflows on the dev server with the scripted tools of tests/lifecycle.py,
so a test says exactly which call fails, pays or cancels the run, and the ledger shows
what ran. Each of these failed (hung, or broke its assertion) before the fix it names.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from tests.fakes.servers import LocalServer, Reply, Request
from tests.helpers import plan, ws
from tests.lifecycle import LEDGER, fake_registry
from tests.workerproc import start_worker
from towline.plan.load import check_data
from towline.plan.spec import PlanSpec
from towline.starter import api
from towline.state import RunState
from towline.worker.main import build_tool_workers, build_worker

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
async def scripted(client: Client, towline_home: Path) -> AsyncIterator[str]:
    """A task queue whose tools are the scripted fakes."""
    LEDGER.client = client
    registry = fake_registry()
    queue = f"rg-{uuid.uuid4().hex[:8]}"
    async with contextlib.AsyncExitStack() as stack:
        for w in (
            build_worker(client, queue, sandboxed=True, registry=registry),
            *build_tool_workers(client, queue, registry=registry),
        ):
            await stack.enter_async_context(w)
        yield queue


def t(tid: str, tool: str = "echo", script: dict[str, Any] | None = None, **extra: Any) -> Any:
    """A scripted task: ``script`` maps activity ids (t, t#2, t.rollback) to steps."""
    extra.setdefault("retry", {"max_attempts": 1, "initial_interval": "10ms"})
    return {"id": tid, "tool": tool, "with": {"script": script or {}}, **extra}


def undo(script: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"tool": "echo", "with": {"script": script or {}, "role": "rollback"}}


def _spec(p: dict[str, Any]) -> PlanSpec:
    return PlanSpec.model_validate(p)  # the fakes' `with` is not the real tools'


async def _start(client: Client, queue: str, p: dict[str, Any], **kw: Any) -> str:
    rid = f"rg-{uuid.uuid4().hex[:8]}"
    return await api.start_run(client, _spec(p), plan_dir=".", task_queue=queue, run_id=rid, **kw)


async def _run(client: Client, queue: str, p: dict[str, Any], **kw: Any) -> RunState:
    rid = await _start(client, queue, p, **kw)
    return await asyncio.wait_for(api.wait_run(client, rid), 60)


async def _until(client: Client, rid: str, ref: str, status: str) -> RunState:
    wid, tid = ref.split(".")
    while True:
        st = await api.get_status(client, rid)
        task = st.workstreams[wid].tasks.get(tid)
        if task is not None and task.status == status:
            return st
        await asyncio.sleep(0.1)


def calls(rid: str) -> list[str]:
    return [f"{c.workstream}.{c.activity_id}:{c.outcome}" for c in LEDGER.of(rid)]


async def test_fail_fast_with_more_ready_tasks_than_slots_ends(
    client: Client, scripted: str
) -> None:
    """Finding 1: the stopped tasks stayed in the ready heap and the workstream never ended."""
    st = await _run(
        client,
        scripted,
        plan(
            ws("w", t("bad", script={"bad": {"fail": [1]}}), t("a"), t("b")),
            max_parallel=1,
        ),
    )
    tasks = st.workstreams["w"].tasks
    assert st.status == "failed"
    assert [tasks[x].status for x in ("bad", "a", "b")] == ["failed", "cancelled", "cancelled"]


async def test_a_task_whose_upstream_failed_before_its_workstream_started_is_skipped(
    client: Client, scripted: str
) -> None:
    """Finding 2: with `continue`, a workstream started after an upstream task it needs had
    failed left its dependent pending forever."""
    rid = await _start(
        client,
        scripted,
        plan(
            ws("x", t("x1", script={"x1": {"fail": [1]}})),
            ws("z", t("z1", approval=True)),
            ws("y", t("y1", needs=["x.x1"]), t("y2"), needs=["z"]),
            failure_policy="continue",
        ),
    )
    await _until(client, rid, "x.x1", "failed")
    await _until(client, rid, "z.z1", "waiting")
    await api.answer(client, rid, "z.z1", "approve", by="test")  # y starts only now
    st = await asyncio.wait_for(api.wait_run(client, rid), 60)
    y = st.workstreams["y"].tasks
    assert y["y1"].status == "skipped"
    assert y["y1"].reason == "needs x.x1, which did not succeed"
    assert y["y2"].status == "succeeded"


async def test_a_cancel_during_the_saga_lets_every_undo_run(client: Client, scripted: str) -> None:
    """Finding 3: a cancel landing while a workstream rolled back cut the saga short: older
    undos never ran and their tasks still said succeeded."""
    script = {"a2.rollback": {"cancel_run": True, "cancel_wait": 1.0}}
    st = await _run(
        client,
        scripted,
        plan(
            ws(
                "w",
                t("a1", rollback=undo()),
                t("a2", needs=["a1"], rollback=undo(script)),
                t("a3", needs=["a2"], script={"a3": {"fail": [1]}}),
            )
        ),
    )
    tasks = st.workstreams["w"].tasks
    rid = st.run_id
    assert calls(rid)[-2:] == ["w.a2.rollback:ok", "w.a1.rollback:ok"]
    assert (tasks["a1"].status, tasks["a2"].status) == ("rolled_back", "rolled_back")
    assert st.workstreams["w"].status == "rolled_back"


@pytest.mark.slow
async def test_a_cancel_is_a_cancel_when_the_tools_worker_died_before_it(
    client: Client, dev_server: str, tmp_path: Path
) -> None:
    """Finding 4: a call whose worker died, then cancelled, ends by heartbeat timeout with
    retry state CANCEL_REQUESTED; that went to on_failure, and `pause` left the cancelled
    run waiting for an operator.

    A real worker process is SIGKILLed during an http call, the run is cancelled, and a
    second worker sees the call time out (20 s) and must end the run cancelled."""

    def slow(request: Request) -> Reply:
        server.wait_slowly()
        return Reply.of_json({})

    queue = f"rg-{uuid.uuid4().hex[:8]}"
    with LocalServer(slow) as server:
        call = {"url": server.url, "timeout": "5m"}
        spec = check_data(
            plan(
                ws("w", {"id": "slow", "tool": "http", "with": call, "on_failure": "pause"}),
                breaker=False,
            )
        )
        first = start_worker(dev_server, queue, home=tmp_path / "a")
        try:
            rid = await api.start_run(client, spec, plan_dir=tmp_path, task_queue=queue)
            while not server.requests:  # the call is under way in the first worker
                await asyncio.sleep(0.1)
            first.proc.kill()
            first.proc.wait()
            await api.cancel_run(client, rid)
            second = start_worker(dev_server, queue, home=tmp_path / "b")
            try:
                st = await asyncio.wait_for(api.wait_run(client, rid), 75)
            finally:
                second.stop()
        finally:
            first.stop()
    task = st.workstreams["w"].tasks["slow"]
    assert st.status == "cancelled"
    assert task.status == "cancelled"
    assert task.decisions == []  # nobody was asked


async def test_a_pause_sent_while_workstreams_start_reaches_every_one(
    client: Client, scripted: str
) -> None:
    """Finding 5: a pause handled while a child's start was in flight never reached that
    child, which went on starting tasks (and a lost resume left a run paused forever).

    Each workstream is a chain of tasks, so a workstream that missed the pause starts
    its next tasks seconds later, when every one that heard it has long stopped. (One
    that missed it never says it is paused: the test then times out.)"""
    chain = [t("a", script={"a": {"seconds": 0.4}})] + [
        t(x, needs=[prev], script={x: {"seconds": 0.4}})
        for prev, x in zip("abcd", "bcde", strict=True)
    ]
    p = plan(*(ws(f"w{i}", *chain) for i in range(12)))
    rids = [await _start(client, scripted, p) for _ in range(4)]
    await asyncio.gather(*(api.pause_run(client, rid, by="test") for rid in rids))

    async def heard(rid: str) -> bool:  # every workstream started says it is paused
        st = await api.get_status(client, rid)
        return all(
            (w.reason or "").startswith("paused") or w.status not in ("running", "waiting")
            for w in st.workstreams.values()
        )

    while not all(await asyncio.gather(*(heard(rid) for rid in rids))):
        await asyncio.sleep(0.2)
    loop = asyncio.get_running_loop()
    settled = loop.time() + 1.5  # a task a workstream had just set going may start late
    await asyncio.sleep(5)
    for rid in rids:
        late = [(w, a) for w, a, at in LEDGER.starts[rid] if at > settled]
        assert not late, f"{rid}: started while paused: {late}"
    await asyncio.gather(*(api.resume_run(client, rid, by="test") for rid in rids))
    states = await asyncio.wait_for(
        asyncio.gather(*(api.wait_run(client, rid) for rid in rids)), 60
    )
    assert [s.status for s in states] == ["succeeded"] * 4


async def test_large_outputs_travel_by_reference_and_reach_the_next_tool_whole(
    run_plan: Any, tmp_path: Path
) -> None:
    """Finding 6: 30 tasks printing ~160 KB each pushed the workstream past Temporal's 2 MB
    payload limit, and its workflow task failed forever."""
    big = f"{sys.executable} -c \"print('x' * 160_000)\""
    tasks = [
        {"id": f"t{i}", "tool": "shell", "with": {"command": big, "shell": True}} for i in range(30)
    ]
    tasks.append(
        {
            "id": "count",
            "tool": "shell",
            "needs": ["t0"],
            "with": {
                "command": [
                    "sh",
                    "-c",
                    'printf %s "$1" | wc -c',
                    "sh",
                    "${{ tasks.t0.outputs.stdout }}",
                ]
            },
        }
    )
    st = await run_plan(plan(ws("w", *tasks, settings={"max_parallel": 8})))
    w = st.workstreams["w"]
    assert st.status == "succeeded", w.reason
    assert isinstance(w.tasks["t0"].outputs["stdout"], dict)  # a stub, stored
    assert int(w.tasks["count"].outputs["stdout"].strip()) >= 64 * 1024  # the whole tail
    assert len(w.model_dump_json()) < 512 * 1024


async def test_an_approval_does_not_hold_up_the_rest_of_a_long_workstream(
    client: Client, scripted: str
) -> None:
    """Finding 7: once history was long, no task started until every task in flight had
    ended, and a task waiting days for a person counted as in flight."""
    others = [t(f"e{i}") for i in range(40)]
    rid = await _start(
        client,
        scripted,
        plan(ws("w", t("gate", approval=True), *others, settings={"max_parallel": 2})),
        max_history=120,
    )
    while True:  # every other task ends while the approval still waits
        st = await api.get_status(client, rid)
        done = [x for x, s in st.workstreams["w"].tasks.items() if s.status == "succeeded"]
        if len(done) == 40:
            break
        await asyncio.sleep(0.2)
    assert st.workstreams["w"].tasks["gate"].status == "waiting"
    await api.answer(client, rid, "w.gate", "approve", by="test")
    st = await asyncio.wait_for(api.wait_run(client, rid), 60)
    assert st.status == "succeeded"
    assert st.workstreams["w"].tasks["gate"].decisions[0].by == "test"
    runs = [
        e
        async for e in client.list_workflows(f'WorkflowId = "{rid}/w"')
        if e.status == WorkflowExecutionStatus.CONTINUED_AS_NEW
    ]
    assert runs, "the workstream never continued-as-new"


async def test_every_paid_attempt_counts_against_the_budget(client: Client, scripted: str) -> None:
    """Finding 8: failed attempts that spent tokens were never reported (5 paid calls of
    11 tokens against a 10-token budget: usage 0), and fix calls were not budget-gated."""
    paid = t(
        "ask",
        "llm",
        script={"ask": {"fail": [1, 2, 3, 4, 5], "tokens": 11}},
        retry={"max_attempts": 5, "initial_interval": "10ms"},
        on_failure={
            "strategy": "fix",
            "fix": {"tool": "llm", "with": {"script": {"ask.fix1": {"tokens": 3}}}},
        },
    )
    st = await _run(
        client,
        scripted,
        plan(ws("w", paid), budget={"max_tokens": 10, "on_exceed": "fail"}, breaker=False),
    )
    ask = st.workstreams["w"].tasks["ask"]
    assert st.usage.tokens == 55
    assert ask.attempts == 5
    assert ask.fixes == 0  # the budget was spent: no fix call
    assert "budget" in (ask.error.message if ask.error else "")
    assert [c for c in calls(st.run_id) if ".fix" in c] == []


async def test_usage_reports_cost_the_run_no_signal_per_workstream(
    client: Client, scripted: str
) -> None:
    """Finding 9: each usage report re-sent the budget to every workstream (about 8.7 run
    events per LLM call with 4 workstreams)."""
    n_ws, n_calls = 4, 6
    p = plan(
        *(
            ws(
                f"w{i}",
                *(t(f"c{j}", "llm", script={f"c{j}": {"tokens": 1}}) for j in range(n_calls)),
            )
            for i in range(n_ws)
        ),
        budget={"max_tokens": 10_000},
        breaker=False,
    )
    st = await _run(client, scripted, p)
    assert st.status == "succeeded"
    assert st.usage.tokens == n_ws * n_calls
    sent = [
        e
        async for e in client.get_workflow_handle(st.run_id).fetch_history_events()
        if e.HasField("signal_external_workflow_execution_initiated_event_attributes")
    ]
    assert len(sent) <= n_ws, f"{len(sent)} signals from the run to its workstreams"
