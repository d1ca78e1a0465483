"""The lifecycle property test's parts: generated plans and outcomes, scripted tools, the
people who answer, and the invariants every run must keep.

A case is made from one seed: a plan (workstreams with DAGs within and across them,
``max_parallel``, failure policies, retries, ``on_failure`` strategies, approvals,
rollbacks, budgets) and its outcomes (which tool calls fail, who answers what, whether a
cancel lands, whether every workflow task replays its whole history as after a worker
kill). The tools are scripted fakes registered under the real names (``echo``, ``llm``):
each reads its outcome from its own ``with``, so a case needs no state outside its plan,
and each call is written to a ledger. After the run, :func:`check` compares the run's
final state with the ledger.

``TOWLINE_LIFECYCLE_SEED=<n>`` replays one case; ``TOWLINE_LIFECYCLE_CASES=<n>`` sets how
many the test runs (``make lifecycle`` runs thousands).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import Field
from temporalio import activity
from temporalio.client import Client

from towline.activities.base import Tool, ToolInput, spend, tool
from towline.errors import ToolError
from towline.plan.spec import BudgetSpec, PlanSpec
from towline.starter import api
from towline.state import FINISHED, RunState, TaskState, Usage
from towline.toolcall import ToolContext

Outcome = Literal["ok", "fail", "cancelled"]


# ------------------------------------------------------------------ scripted tools


class Step(ToolInput):
    """What one call (by its activity id) does on each attempt."""

    fail: list[int] = Field(default_factory=list, description="attempts that fail")
    category: Literal["tool", "validation"] = "tool"
    tokens: int = 0
    cancel_run: bool = Field(False, description="cancel the run during attempt 1")
    # After cancel_run, how long to wait (seconds) for the cancel to reach this call
    # before finishing normally (a saga's call is not cancelled: it runs to its end).
    cancel_wait: float = 30.0
    die_on_cancel: bool = Field(
        False, description="when cancelled, stop heartbeating and hang, as a dead worker"
    )
    seconds: float = Field(0.0, description="run this long, heartbeating")


class FakeInput(ToolInput):
    script: dict[str, Step] = Field(default_factory=dict)
    tokens: int = 0  # spent by every attempt not scripted otherwise
    base_url: str = "http://fake.invalid/v1"  # the llm fake's breaker target
    role: str = "task"


@dataclass(frozen=True)
class Call:
    workstream: str
    task: str
    activity_id: str
    attempt: int
    tokens: int
    outcome: Outcome
    seq: int  # its place in the run's ledger


@dataclass
class Ledger:
    calls: dict[str, list[Call]] = field(default_factory=lambda: defaultdict(list))
    # When each call began (loop time), by run: (workstream, activity id, time).
    starts: dict[str, list[tuple[str, str, float]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    client: Client | None = None

    def of(self, run_id: str) -> list[Call]:
        return self.calls[run_id]


LEDGER = Ledger()


async def _fake(args: FakeInput, ctx: ToolContext) -> dict[str, Any]:
    info = activity.info()
    step = args.script.get(info.activity_id) or Step(tokens=args.tokens)
    calls = LEDGER.of(ctx.run_id)
    loop = asyncio.get_running_loop()
    LEDGER.starts[ctx.run_id].append((ctx.workstream, info.activity_id, loop.time()))

    def record(outcome: Outcome) -> None:
        calls.append(
            Call(
                ctx.workstream,
                ctx.task,
                info.activity_id,
                info.attempt,
                step.tokens,
                outcome,
                len(calls),
            )
        )

    if step.tokens:
        spend(Usage(tokens=step.tokens))
    wait = step.seconds
    try:
        # A cancel may reach the call from here on (the tool's own heartbeats carry it),
        # also while it cancels its run: what it spent is recorded either way.
        if step.cancel_run and info.attempt == 1 and LEDGER.client is not None:
            await LEDGER.client.get_workflow_handle(ctx.run_id).cancel()
            wait = max(wait, step.cancel_wait)
        deadline = asyncio.get_running_loop().time() + wait
        while asyncio.get_running_loop().time() < deadline:
            activity.heartbeat()  # a cancel reaches the call on a heartbeat
            await asyncio.sleep(0.1)
    except asyncio.CancelledError:
        record("cancelled")
        if step.die_on_cancel:
            await asyncio.sleep(25)  # no heartbeat past its timeout: a "dead" worker
        raise
    if info.attempt in step.fail:
        record("fail")
        raise ToolError(step.category, f"scripted failure of {info.activity_id}")
    record("ok")
    return {"id": info.activity_id, "attempt": info.attempt}


def fake_registry() -> dict[str, Tool]:
    """``echo`` and ``llm`` (own queue, usage, breaker) as scripted fakes."""
    return {
        name: tool(name, FakeInput, f"scripted {name} for the lifecycle tests")(_fake)
        for name in ("echo", "llm")
    }


# -------------------------------------------------------------------- generation


@dataclass
class Case:
    seed: int
    plan: dict[str, Any]
    # "ws.task" -> answers a person gives, in order; None: let the wait's timeout decide.
    answers: dict[str, list[str | None]]
    replay_always: bool  # every workflow task replays its history (a worker kill each time)
    raise_budget: bool  # a person raises the budget when tasks wait for it
    # Events before the run and its workstreams continue-as-new (None: towline's default):
    # small, so they do it with workstreams and tasks in flight, people waiting.
    max_history: int | None = None

    def spec(self) -> PlanSpec:
        return PlanSpec.model_validate(self.plan)


def generate(seed: int) -> Case:
    rng = random.Random(seed)
    n_ws = rng.choice([1, 1, 2, 2, 3])
    policy = rng.choice(["fail_fast", "fail_fast", "continue", "pause"])
    settings: dict[str, Any] = {"failure_policy": policy, "breaker": rng.random() < 0.3}
    if n_ws > 1 and rng.random() < 0.3:
        settings["max_parallel"] = rng.randint(1, 3)
    if n_ws > 1 and rng.random() < 0.3:
        settings["max_parallel_workstreams"] = rng.randint(1, 2)
    budget = rng.random() < 0.25
    if budget:
        settings["budget"] = {
            "max_tokens": rng.randint(5, 40),
            "on_exceed": rng.choice(["fail", "wait"]),
        }
    answers: dict[str, list[str | None]] = {}
    workstreams: list[dict[str, Any]] = []
    for w in range(n_ws):
        wid = f"w{w}"
        tasks: list[dict[str, Any]] = []
        n_tasks = rng.randint(1, 6)
        for t in range(n_tasks):
            tid = f"t{t}"
            task, task_answers = _task(rng, seed, wid, tid, t, workstreams, policy)
            tasks.append(task)
            if task_answers:
                answers[f"{wid}.{tid}"] = task_answers
        ws: dict[str, Any] = {"id": wid, "tasks": tasks}
        if workstreams and rng.random() < 0.3:
            ws["needs"] = [rng.choice(workstreams)["id"]]
        if rng.random() < 0.5:
            ws["settings"] = {"max_parallel": rng.randint(1, 3)}
        workstreams.append(ws)
    plan = {
        "version": 1,
        "name": f"lifecycle-{seed}",
        "settings": settings,
        "workstreams": workstreams,
    }
    replay_always = rng.random() < 0.25
    if replay_always:
        # A worker that caches nothing cannot finish a workflow task that runs a local
        # activity (the breakers'): each one is evicted with it in flight, by the SDK.
        settings["breaker"] = False
    return Case(
        seed=seed,
        plan=plan,
        answers=answers,
        replay_always=replay_always,
        # Someone raises a spent budget that tasks wait for (else they would wait forever).
        raise_budget=True,
        max_history=rng.choice([40, 60, 100]) if rng.random() < 0.2 else None,
    )


def _task(
    rng: random.Random,
    seed: int,
    wid: str,
    tid: str,
    index: int,
    earlier_ws: list[dict[str, Any]],
    policy: str,
) -> tuple[dict[str, Any], list[str | None]]:
    paid = rng.random() < 0.3
    attempts = rng.choice([1, 1, 2, 3])
    task: dict[str, Any] = {
        "id": tid,
        "tool": "llm" if paid else "echo",
        "retry": {"max_attempts": attempts, "initial_interval": "10ms", "max_interval": "50ms"},
    }
    needs = [f"t{i}" for i in range(index) if rng.random() < 0.35]
    if earlier_ws and rng.random() < 0.2:
        other = rng.choice(earlier_ws)
        needs.append(f"{other['id']}.{rng.choice(other['tasks'])['id']}")
    if needs:
        task["needs"] = needs
    if rng.random() < 0.3:
        task["priority"] = rng.randint(-2, 2)
    script: dict[str, dict[str, Any]] = {}
    answers: list[str | None] = []
    for key in (tid, f"{tid}#2", f"{tid}#3", f"{tid}.fix1", f"{tid}.fix2", f"{tid}.rollback"):
        step: dict[str, Any] = {}
        if rng.random() < 0.3:
            step["fail"] = sorted(rng.sample(range(1, 4), rng.randint(1, 3)))
            if rng.random() < 0.2:
                step["category"] = "validation"
        if paid or key.endswith(("fix1", "fix2")):
            step["tokens"] = rng.randint(1, 9)
        if key == tid and rng.random() < 0.04:
            step["cancel_run"] = True
        if step:
            script[key] = step
    task["with"] = {"script": script, "base_url": f"http://case-{seed}.invalid/v1"}
    strategy = rng.choice(["fail", "fail", "skip", "pause", "fix", None])
    if strategy == "pause":
        timeout = rng.choice([None, "1s"])
        task["on_failure"] = {"strategy": "pause", **({"timeout": timeout} if timeout else {})}
        if timeout:
            task["on_failure"]["default"] = rng.choice(["retry", "skip", "abort"])
        answers += _operator_answers(rng, timeout is not None)
    elif strategy == "fix":
        task["on_failure"] = {
            "strategy": "fix",
            "fix": {"tool": rng.choice(["echo", "llm"]), "with": {"script": script, "role": "fix"}},
            "max_fixes": rng.randint(1, 2),
        }
    elif strategy is not None:
        task["on_failure"] = strategy
    elif policy == "pause":  # no strategy under failure_policy: pause waits for an operator
        answers += _operator_answers(rng, False)
    if rng.random() < 0.2:
        timeout = rng.choice([None, "2s"])
        task["approval"] = {"required": True, **({"timeout": timeout} if timeout else {})}
        if timeout:
            task["approval"]["on_timeout"] = rng.choice(["approve", "reject"])
        first = rng.choice(["approve", "approve", "reject", None if timeout else "approve"])
        answers.insert(0, first)
    if rng.random() < 0.4:
        task["rollback"] = {"tool": "echo", "with": {"script": script, "role": "rollback"}}
    return task, answers


def _operator_answers(rng: random.Random, has_timeout: bool) -> list[str | None]:
    out: list[str | None] = []
    for _ in range(3):
        out.append(rng.choice(["retry", "skip", "abort", None if has_timeout else "retry"]))
    return [*out, "abort"]  # a person gives up in the end


# -------------------------------------------------------------------- running


async def run_case(
    client: Client, case: Case, task_queue: str, *, timeout: float, idle: float = 30.0
) -> RunState:
    """Run ``case`` to its end, answering as its people would; the run's final state.

    A run that never ends stands still: raises TimeoutError once ``timeout`` has passed
    and neither the run nor a workstream of it has had a new event for ``idle`` seconds
    (a busy machine makes runs slow, not still), or at ``4 * timeout`` in any case.
    """
    spec = case.spec()
    run_id = f"lc-{case.seed}"
    await api.start_run(
        client,
        spec,
        plan_dir=".",
        task_queue=task_queue,
        run_id=run_id,
        search_attributes=False,
        max_history=case.max_history,
    )
    people = asyncio.create_task(_answer(client, run_id, case))
    ended = asyncio.create_task(api.wait_run(client, run_id))
    try:
        async with asyncio.timeout(4 * timeout):
            await asyncio.wait({ended}, timeout=timeout)
            seen, still = -1, 0.0
            while not ended.done() and still < idle:
                events = await _events(client, run_id)
                still = still + 5.0 if events == seen else 0.0
                seen = events
                await asyncio.wait({ended}, timeout=5.0)
            if not ended.done():
                raise TimeoutError
            return ended.result()
    finally:
        ended.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await ended
        people.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await people


async def _events(client: Client, run_id: str) -> int:
    """The events of the run and of its workstreams so far (their current executions)."""
    total = 0
    try:
        state = await api.get_status(client, run_id)
        for wid in (run_id, *(f"{run_id}/{w}" for w in state.workstreams)):
            with contextlib.suppress(Exception):  # a workstream not started yet
                total += (await client.get_workflow_handle(wid).describe()).history_length
    except Exception:  # no status yet: nothing moved that we can see
        pass
    return total


async def describe(client: Client, run_id: str) -> str:
    """Where a run is now, in one line: each unfinished task and what it waits for."""
    try:
        st = await api.get_status(client, run_id)
    except Exception as e:
        return f"no status: {e}"
    parts = [f"run {st.status}"]
    for wid, ws in st.workstreams.items():
        parts.append(f"{wid} {ws.status}")
        parts += [
            f"{wid}.{tid} {t.status}{f' ({t.waiting_for})' if t.waiting_for else ''}"
            for tid, t in ws.tasks.items()
            if t.status not in FINISHED
        ]
    tail = await _history_tail(client, run_id)
    return ", ".join(parts) + f"; the run's last events: {tail}"


async def _history_tail(client: Client, workflow_id: str, n: int = 8) -> str:
    """The last events of a workflow's history, and why a workflow task failed, if one did."""
    try:
        events = [e async for e in client.get_workflow_handle(workflow_id).fetch_history_events()]
    except Exception as err:
        return f"no history: {err}"
    out = []
    for event in events[-n:]:
        kind = event.WhichOneof("attributes") or "?"
        text = kind.removesuffix("_event_attributes")
        if event.HasField("workflow_task_failed_event_attributes"):
            text += f" ({event.workflow_task_failed_event_attributes.failure.message[:300]})"
        out.append(f"{event.event_id} {text}")
    return "; ".join(out)


async def _answer(client: Client, run_id: str, case: Case) -> None:
    """Answer waiting tasks from the case's script, as the people of the case would."""
    given: dict[str, int] = defaultdict(int)
    raised = False
    handle = client.get_workflow_handle(run_id)
    while True:
        # One query while nobody is awaited, the rest only when someone is.
        await asyncio.sleep(0.2)
        try:
            run = await handle.query("status", result_type=RunState)
            if run.status != "waiting":
                continue
            st = await api.get_status(client, run_id)
        except Exception:
            continue
        for wid, ws in st.workstreams.items():
            for tid, t in ws.tasks.items():
                ref = f"{wid}.{tid}"
                if t.status != "waiting":
                    continue
                if t.waiting_for == "budget" and case.raise_budget and not raised:
                    raised = True
                    with contextlib.suppress(Exception):
                        await api.raise_budget(client, run_id, BudgetSpec(max_tokens=10**6))
                    continue
                if t.waiting_for not in ("approval", "operator"):
                    continue
                script = case.answers.get(ref, [])
                n = len(t.decisions)
                if n >= len(script) or given[ref] > n:
                    continue
                what = script[n]
                if what is None:
                    continue
                given[ref] = n + 1
                with contextlib.suppress(api.Refused, Exception):
                    await api.answer(client, run_id, ref, what, by="lifecycle")  # type: ignore[arg-type]


# -------------------------------------------------------------------- invariants


def check(case: Case, st: RunState, calls: list[Call]) -> list[str]:
    """Every broken invariant, in words; empty when the run kept them all."""
    spec = case.spec()
    bad: list[str] = []
    tasks: dict[str, TaskState] = {}
    for wid, wstate in st.workstreams.items():
        if wstate.status not in FINISHED:
            bad.append(f"workstream {wid} did not end: {wstate.status}")
        for tid, tstate in wstate.tasks.items():
            tasks[f"{wid}.{tid}"] = tstate
    for ws in spec.workstreams:  # a workstream that never started has no task states
        if not st.workstreams[ws.id].tasks:
            never = st.workstreams[ws.id].status
            if never not in ("skipped", "cancelled"):
                bad.append(f"workstream {ws.id} is {never} with no task states")
            for t in ws.tasks:
                tasks[f"{ws.id}.{t.id}"] = TaskState(tool=t.tool, status=never)
    if st.status not in FINISHED:
        bad.append(f"the run did not end: {st.status}")
    by_task: dict[str, list[Call]] = defaultdict(list)
    for c in calls:
        by_task[f"{c.workstream}.{c.task}"].append(c)

    def main_calls(ref: str) -> list[Call]:
        tid = ref.split(".", 1)[1]
        return [
            c for c in by_task[ref] if c.activity_id == tid or c.activity_id.startswith(tid + "#")
        ]

    def done(status: str) -> bool:
        return status in ("succeeded", "rolled_back")

    for ws in spec.workstreams:
        wst = st.workstreams[ws.id]
        policy = ws.settings.failure_policy or spec.settings.failure_policy or "fail_fast"
        ran_here = any(by_task[f"{ws.id}.{t.id}"] for t in ws.tasks)
        for need in ws.needs:
            if ran_here and st.workstreams[need].status != "succeeded":
                bad.append(
                    f"workstream {ws.id} ran although {need} is {st.workstreams[need].status}"
                )
        for t in ws.tasks:
            ref = f"{ws.id}.{t.id}"
            ts = tasks.get(ref)
            if ts is None:
                bad.append(f"{ref}: no state")
                continue
            if ts.status not in FINISHED:
                bad.append(f"{ref} did not end: {ts.status}")
            mains = main_calls(ref)
            for need in t.needs:
                nref = need if "." in need else f"{ws.id}.{need}"
                if (mains or done(ts.status)) and not done(tasks[nref].status):
                    bad.append(f"{ref} ran although its need {nref} is {tasks[nref].status}")
            if ts.status == "skipped" and ts.reason and ts.reason.startswith("needs "):
                blocker = ts.reason.split(" ")[1].rstrip(",")
                bref = blocker if "." in blocker else f"{ws.id}.{blocker}"
                if bref in tasks and done(tasks[bref].status):
                    bad.append(f"{ref} skipped for {bref}, which is {tasks[bref].status}")
            if ts.status in ("succeeded", "failed") and not ts.cached:
                counted = len([c for c in mains if c.outcome != "cancelled"])
                if ts.attempts != counted:
                    bad.append(f"{ref}: attempts {ts.attempts}, but the tool ran {counted} time(s)")
        bad += _rollbacks(case, ws.id, wst.status, spec, tasks, by_task)
        if policy == "fail_fast":
            failed = [
                ts.ended_at
                for t in ws.tasks
                if (ts := tasks[f"{ws.id}.{t.id}"]).status == "failed" and ts.ended_at
            ]
            if failed:
                stop = min(failed)
                for t in ws.tasks:
                    ts = tasks[f"{ws.id}.{t.id}"]
                    if main_calls(f"{ws.id}.{t.id}") and ts.started_at and ts.started_at > stop:
                        bad.append(f"{ws.id}.{t.id} started after the fail_fast stop")
    spent = sum(c.tokens for c in calls)
    if st.usage.tokens != spent:
        bad.append(f"usage {st.usage.tokens} tokens, but the calls spent {spent}")
    return bad


def _rollbacks(
    case: Case,
    wid: str,
    ws_status: str,
    spec: PlanSpec,
    tasks: dict[str, TaskState],
    by_task: dict[str, list[Call]],
) -> list[str]:
    bad: list[str] = []
    ws = next(w for w in spec.workstreams if w.id == wid)
    order: list[tuple[int, datetime | None, str]] = []
    for t in ws.tasks:
        ref = f"{wid}.{t.id}"
        ts = tasks[ref]
        undo = [c for c in by_task[ref] if c.activity_id == f"{t.id}.rollback"]
        succeeded_undos = [c for c in undo if c.outcome == "ok"]
        if len(succeeded_undos) > 1:
            bad.append(f"{ref}: rolled back {len(succeeded_undos)} times")
        had_success = ts.status in ("succeeded", "rolled_back") or ts.rollback_error is not None
        if undo and (t.rollback is None or not had_success):
            bad.append(f"{ref}: a rollback ran for a task that never succeeded ({ts.status})")
        if undo:
            order.append((min(c.seq for c in undo), ts.ended_at, ref))
        if t.rollback is not None and had_success and not ts.cached:
            if ws_status == "succeeded" and undo:
                bad.append(f"{ref}: rolled back in a workstream that succeeded")
            if ws_status in ("failed", "rolled_back", "cancelled") and not undo:
                bad.append(
                    f"{ref}: succeeded with a rollback, but {wid} ended {ws_status} unrolled"
                )
            if undo and succeeded_undos and ts.status != "rolled_back":
                bad.append(f"{ref}: its rollback succeeded, yet it says {ts.status}")
    order.sort()
    ended = [e for _, e, _ in order]
    for a, b in itertools.pairwise(ended):
        if a is not None and b is not None and a < b:
            bad.append(f"{wid}: rollbacks not newest first: {[r for _, _, r in order]}")
            break
    return bad
