"""The scenarios, each run once through towline and once as bare Temporal.

Every function here runs *one* repetition of one side and returns what it measured;
:mod:`bench.__main__` decides how often and in which order. Timing covers what a user
waits for: from the start call until the run's result is known. Checking that every task
succeeded happens after the clock stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from bench import bare, harness, marks, plans
from bench.harness import Process
from towline.plan.load import check_data
from towline.plan.spec import PlanSpec
from towline.starter import api
from towline.state import RunState, WorkstreamState, workstream_workflow_id
from towline.worker.client import connect

RESULT_TIMEOUT = 600.0
WIDE_TIMEOUT = 1800.0  # wide_5000 may take minutes on two shared cores


@dataclass
class Bench:
    """Clients, queues and processes shared by every scenario."""

    towline: Client  # towline's data converter
    bare: Client  # the default one, as a bare Temporal user has it
    towline_queue: str
    bare_queue: str
    plan_dir: Path
    marks: Path
    towline_worker: Process
    bare_worker: Process
    server: Process
    address: str = ""  # the server's, for the CLI


@contextlib.asynccontextmanager
async def started(folder: Path, server_args: tuple[str, ...] = ()) -> AsyncIterator[Bench]:
    """A fresh dev server in ``folder``, the towline and bare workers polling it, and
    clients for both; all stopped on leaving."""
    server, address = harness.start_server(folder, server_args)
    workers: list[harness.Process] = []
    try:
        tclient = await connect(address, "default")
        bclient = await Client.connect(address)
        marks_file = folder / "marks.txt"
        suffix = uuid.uuid4().hex[:6]
        tq, bq = f"bench-towline-{suffix}", f"bench-bare-{suffix}"
        tw = harness.start_towline_worker(folder, address, tq, marks_file)
        workers.append(tw)
        bw = harness.start_bare_worker(folder, address, bq, marks_file)
        workers.append(bw)
        await harness.wait_polling(tclient, tq, tw, 60)
        await harness.wait_polling(bclient, bq, bw, 60)
        yield Bench(tclient, bclient, tq, bq, folder, marks_file, tw, bw, server, address)
    finally:
        for proc in workers:
            proc.stop()
        server.stop()


def _uid() -> str:
    return uuid.uuid4().hex[:8]


# ---------------------------------------------------------------- towline side


async def _towline_run(
    b: Bench, spec: PlanSpec, run_id: str, *, timeout: float = RESULT_TIMEOUT
) -> float:
    """Seconds from the start call until the run's result; raises unless it succeeded."""
    t0 = time.perf_counter()
    await api.start_run(
        b.towline, spec, plan_dir=b.plan_dir, task_queue=b.towline_queue, run_id=run_id
    )
    state = await asyncio.wait_for(
        b.towline.get_workflow_handle(run_id, result_type=RunState).result(), timeout
    )
    elapsed = time.perf_counter() - t0
    if state.status != "succeeded":
        raise RuntimeError(f"towline run {run_id} ended {state.status}: {state.reason}")
    return elapsed


async def _check_tasks(b: Bench, spec: PlanSpec, run_id: str) -> None:
    """Every task of every workstream succeeded (from the workstreams' results)."""
    for ws in spec.workstreams:
        handle = b.towline.get_workflow_handle(
            workstream_workflow_id(run_id, ws.id), result_type=WorkstreamState
        )
        state = await handle.result()
        done = sum(t.status == "succeeded" for t in state.tasks.values())
        if done != len(ws.tasks):
            raise RuntimeError(f"{run_id}/{ws.id}: {done} of {len(ws.tasks)} tasks succeeded")


async def towline_plan(b: Bench, plan: plans.Plan, *, prefix: str = "bench") -> float:
    spec = check_data(plan)
    run_id = f"{prefix}-{_uid()}"
    elapsed = await _towline_run(b, spec, run_id)
    await _check_tasks(b, spec, run_id)
    return elapsed


async def towline_concurrent(b: Bench, runs: int, steps: int) -> float:
    spec = check_data(plans.chain(steps))
    ids = [f"conc-{_uid()}" for _ in range(runs)]
    t0 = time.perf_counter()
    await asyncio.gather(*(_towline_run(b, spec, rid) for rid in ids))
    elapsed = time.perf_counter() - t0
    for rid in ids:
        await _check_tasks(b, spec, rid)
    return elapsed


async def towline_first_task(b: Bench) -> float:
    """Milliseconds from the start call to the first tool body running."""
    spec = check_data(plans.chain(1))
    run_id = f"{marks.PREFIX}t-{_uid()}"
    t0 = time.time()
    await _towline_run(b, spec, run_id)
    body = marks.body_started(b.marks, workstream_workflow_id(run_id, "main"), "echo")
    if body is None:
        raise RuntimeError(f"no body-start mark for {run_id}; is the marks interceptor on?")
    return (body - t0) * 1000


# ---------------------------------------------------------------- bare side


async def _bare_run(b: Bench, workflow: str, n: int, wid: str, *, shaped: bool) -> float:
    """One bare workflow; ``shaped``: inside a ``BareRun`` parent, as towline's runs are."""
    t0 = time.perf_counter()
    if shaped:
        handle = await b.bare.start_workflow(
            "BareRun",
            args=[workflow, n],
            id=wid,
            task_queue=b.bare_queue,
            search_attributes=bare.run_search_attributes(),
        )
    else:
        handle = await b.bare.start_workflow(workflow, n, id=wid, task_queue=b.bare_queue)
    result = await asyncio.wait_for(handle.result(), RESULT_TIMEOUT)
    elapsed = time.perf_counter() - t0
    if result != n:
        raise RuntimeError(f"bare {workflow} {wid} returned {result}, expected {n}")
    return elapsed


async def bare_fanout(b: Bench, n: int, *, shaped: bool = False) -> float:
    return await _bare_run(b, "BareFanout", n, f"bare-fanout-{_uid()}", shaped=shaped)


async def bare_chain(b: Bench, n: int, *, shaped: bool = False) -> float:
    return await _bare_run(b, "BareChain", n, f"bare-chain-{_uid()}", shaped=shaped)


async def bare_concurrent(b: Bench, runs: int, steps: int, *, shaped: bool = False) -> float:
    t0 = time.perf_counter()
    await asyncio.gather(
        *(
            _bare_run(b, "BareChain", steps, f"bare-conc-{_uid()}", shaped=shaped)
            for _ in range(runs)
        )
    )
    return time.perf_counter() - t0


async def bare_first_task(b: Bench, *, shaped: bool = False) -> float:
    wid = f"{marks.PREFIX}b-{_uid()}"
    t0 = time.time()
    await _bare_run(b, "BareChain", 1, wid, shaped=shaped)
    where = f"{wid}/main" if shaped else wid
    body = marks.body_started(b.marks, where, bare.NOOP)
    if body is None:
        raise RuntimeError(f"no body-start mark for {where}; is the marks interceptor on?")
    return (body - t0) * 1000


# ---------------------------------------------------------------- large_10k


@dataclass
class LargeResult:
    seconds: float
    tasks: int
    max_history_events: int
    runs: dict[str, int]  # workflow id -> runs (continue-as-new makes more than one)
    longest_workflow_task_ms: float
    validate_seconds: float


async def towline_large(b: Bench, workstreams: int, tasks: int, width: int) -> LargeResult:
    plan = plans.large(workstreams, tasks, width)
    t0 = time.perf_counter()
    spec = check_data(plan)
    validate = time.perf_counter() - t0
    run_id = f"large-{_uid()}"
    elapsed = await _towline_run(b, spec, run_id)
    await _check_tasks(b, spec, run_id)
    ids = [run_id] + [workstream_workflow_id(run_id, ws.id) for ws in spec.workstreams]
    runs: dict[str, int] = {}
    longest_history = 0
    longest_task = 0.0
    for wid in ids:
        run_ids = [e.run_id async for e in b.towline.list_workflows(f'WorkflowId = "{wid}"')]
        runs[wid] = len(run_ids)
        for rid in run_ids:
            handle = b.towline.get_workflow_handle(wid, run_id=rid)
            desc = await handle.describe()
            longest_history = max(longest_history, desc.history_length)
            longest_task = max(longest_task, await _longest_workflow_task_ms(handle))
    return LargeResult(
        seconds=elapsed,
        tasks=sum(len(ws.tasks) for ws in spec.workstreams),
        max_history_events=longest_history,
        runs=runs,
        longest_workflow_task_ms=longest_task,
        validate_seconds=validate,
    )


async def _longest_workflow_task_ms(handle: Any) -> float:
    """The longest WORKFLOW_TASK_STARTED -> COMPLETED gap in one run's history."""
    started: datetime | None = None
    longest = 0.0
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
            started = event.event_time.ToDatetime()
        elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED and started:
            took = (event.event_time.ToDatetime() - started).total_seconds() * 1000
            longest = max(longest, took)
            started = None
    return longest


# ---------------------------------------------------------------- wide runs


@dataclass
class StatusProbe:
    """How long ``towline status`` of one run took, through the API and the CLI."""

    api_ms: list[float]
    cli_ms: list[float]
    # The same once the run has ended (read from the histories, no worker needed).
    ended_api_ms: float
    ended_cli_ms: float


@dataclass
class WideResult:
    seconds: float
    workstreams: int
    run_executions: int  # the run workflow's runs (continue-as-new makes more than one)
    max_history_events: int  # the longest among them
    longest_workflow_task_ms: float  # the longest among them
    status: StatusProbe | None = None


async def _cli_status_ms(b: Bench, run_id: str, address: str) -> float:
    """Wall time of ``towline status RUN --json`` as a user runs it (a new process)."""
    env = {**os.environ, "TOWLINE_HOME": str(b.plan_dir / "cli-home")}
    towline = Path(sys.executable).with_name("towline")  # the installed command
    argv = [str(towline), "status", run_id, "--json", "--address", address]
    t0 = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
        env=env,
    )
    out, err = await proc.communicate()
    elapsed = (time.perf_counter() - t0) * 1000
    if proc.returncode != 0:
        raise RuntimeError(f"towline status {run_id} exited {proc.returncode}: {err.decode()}")
    json.loads(out)  # the contract's JSON, whole
    return elapsed


async def _api_status_ms(b: Bench, run_id: str, workstreams: int) -> float:
    t0 = time.perf_counter()
    state = await api.get_status(b.towline, run_id)
    elapsed = (time.perf_counter() - t0) * 1000
    if len(state.workstreams) != workstreams:
        raise RuntimeError(f"status of {run_id}: {len(state.workstreams)} workstreams")
    return elapsed


async def towline_wide(
    b: Bench, workstreams: int, steps: int, *, address: str | None = None, every: float = 5.0
) -> WideResult:
    """One run of ``workstreams`` workstreams of ``steps`` chained ``echo`` tasks.

    With ``address``, ``towline status`` is timed every ``every`` seconds while the run is
    in flight (the API, then the CLI), and once after it has ended: the run then competes
    with those calls, so the repetitions whose time is compared with bare leave it out.
    """
    spec = check_data(plans.wide(workstreams, steps))
    run_id = f"wide-{_uid()}"
    api_ms: list[float] = []
    cli_ms: list[float] = []
    probe = None
    if address is not None:
        probe = asyncio.create_task(
            _probe_status(b, run_id, workstreams, address, every, api_ms, cli_ms)
        )
    try:
        elapsed = await _towline_run(b, spec, run_id, timeout=WIDE_TIMEOUT)
    finally:
        if probe is not None:
            probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await probe
    status = None
    if address is not None:
        status = StatusProbe(
            api_ms,
            cli_ms,
            await _api_status_ms(b, run_id, workstreams),
            await _cli_status_ms(b, run_id, address),
        )
    await _check_tasks(b, spec, run_id)
    wide = await _run_executions(b, run_id)
    return WideResult(elapsed, workstreams, *wide, status=status)


async def _probe_status(
    b: Bench,
    run_id: str,
    workstreams: int,
    address: str,
    every: float,
    api_ms: list[float],
    cli_ms: list[float],
) -> None:
    while True:
        await asyncio.sleep(every)
        try:
            api_ms.append(await _api_status_ms(b, run_id, workstreams))
            cli_ms.append(await _cli_status_ms(b, run_id, address))
        except api.UnknownRun:
            pass  # not started yet


async def _run_executions(
    b: Bench, run_id: str, client: Client | None = None
) -> tuple[int, int, float]:
    """The run workflow's executions: how many, the longest history, the longest task."""
    client = client or b.towline
    run_ids = [e.run_id async for e in client.list_workflows(f'WorkflowId = "{run_id}"')]
    longest_history = 0
    longest_task = 0.0
    for rid in run_ids:
        handle = client.get_workflow_handle(run_id, run_id=rid)
        desc = await handle.describe()
        longest_history = max(longest_history, desc.history_length)
        longest_task = max(longest_task, await _longest_workflow_task_ms(handle))
    return len(run_ids), longest_history, longest_task


async def bare_wide(
    b: Bench, workstreams: int, steps: int, limit: int, *, continued: bool = False
) -> WideResult:
    """``BareWide``: a parent starting ``workstreams`` children of ``steps`` activities,
    ``limit`` at a time; ``continued``: ``BareWideContinued``, which continues-as-new."""
    wid = f"bare-wide-{_uid()}"
    t0 = time.perf_counter()
    handle = await b.bare.start_workflow(
        "BareWideContinued" if continued else "BareWide",
        args=[workstreams, steps, limit],
        id=wid,
        task_queue=b.bare_queue,
        search_attributes=bare.run_search_attributes(),
    )
    result = await asyncio.wait_for(handle.result(), WIDE_TIMEOUT)
    elapsed = time.perf_counter() - t0
    if result != workstreams * steps:
        raise RuntimeError(f"bare wide {wid} returned {result}, expected {workstreams * steps}")
    if continued:
        return WideResult(elapsed, workstreams, *await _run_executions(b, wid, b.bare))
    desc = await handle.describe()
    return WideResult(
        elapsed, workstreams, 1, desc.history_length, await _longest_workflow_task_ms(handle)
    )
