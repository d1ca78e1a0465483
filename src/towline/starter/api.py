"""towline from Python scripts: start a run, follow it, steer it.

    client = await towline.starter.api.connect_default()
    plan = load_plan("plan.yaml")
    run_id = await start_run(client, plan, plan_dir=".")
    state = await wait_run(client, run_id)

The CLI is a thin layer over these functions.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from towline.config import DEFAULT_TASK_QUEUE
from towline.workflows.spec import PlanSpec
from towline.workflows.state import (
    LABELS_KEY,
    PLAN_KEY,
    RUN_WORKFLOW,
    STATUS_KEY,
    RunInput,
    RunState,
    Usage,
    WorkstreamState,
    workstream_workflow_id,
)

QUERY_TIMEOUT = timedelta(seconds=10)


class UnknownRun(LookupError):
    def __init__(self, run_id: str) -> None:
        super().__init__(f"unknown run '{run_id}'")
        self.run_id = run_id


class RunExists(ValueError):
    def __init__(self, run_id: str) -> None:
        super().__init__(f"a run with id '{run_id}' already exists; choose another --id")
        self.run_id = run_id


class NoWorker(RuntimeError):
    """A query went unanswered: no worker polls the run's task queue."""


def new_run_id(plan_name: str) -> str:
    """``<plan name as a slug>-<6 hex>``, e.g. ``bump-deps-7f3a2c``."""
    slug = re.sub(r"[^a-z0-9]+", "-", plan_name.lower()).strip("-")[:60] or "run"
    return f"{slug}-{secrets.token_hex(3)}"


async def start_run(
    client: Client,
    plan: PlanSpec,
    *,
    plan_dir: str | Path,
    task_queue: str = DEFAULT_TASK_QUEUE,
    run_id: str | None = None,
    search_attributes: bool = True,
) -> str:
    """Start a run of ``plan`` and return its run id (the run workflow's id).

    ``search_attributes=False`` is for servers without towline's search attributes
    registered (the time-skipping test server cannot register any).
    """
    rid = run_id or new_run_id(plan.name)
    labels = [f"{k}={v}" for k, v in sorted(plan.labels.items())]
    try:
        await client.start_workflow(
            RUN_WORKFLOW,
            RunInput(run_id=rid, plan=plan, plan_dir=str(Path(plan_dir).resolve())),
            id=rid,
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(STATUS_KEY, "running"),
                    SearchAttributePair(PLAN_KEY, plan.name),
                    SearchAttributePair(LABELS_KEY, labels),
                ]
                if search_attributes
                else []
            ),
            static_summary=f"towline run of plan {plan.name}",
        )
    except WorkflowAlreadyStartedError:
        raise RunExists(rid) from None
    return rid


async def _query(client: Client, workflow_id: str, result_type: type) -> object:
    handle = client.get_workflow_handle(workflow_id)
    try:
        return await handle.query("status", result_type=result_type, rpc_timeout=QUERY_TIMEOUT)
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            raise UnknownRun(workflow_id) from None
        if e.status in (RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED):
            raise NoWorker(
                f"no answer from a worker for '{workflow_id}'; is `towline worker` running?"
            ) from None
        raise


async def get_status(client: Client, run_id: str) -> RunState:
    """The run, its workstreams and their tasks, as they are now."""
    run = await _query(client, run_id, RunState)
    assert isinstance(run, RunState)
    started = [w for w, s in run.workstreams.items() if s.started_at is not None]
    details = await asyncio.gather(
        *(_query(client, workstream_workflow_id(run_id, w), WorkstreamState) for w in started)
    )
    usage = Usage()
    for wid, ws in zip(started, details, strict=True):
        assert isinstance(ws, WorkstreamState)
        coarse = run.workstreams[wid]
        # The run knows how a workstream ended (e.g. cancelled before it finished its
        # bookkeeping); the workstream knows its tasks.
        run.workstreams[wid] = ws.model_copy(
            update={
                "status": coarse.status if coarse.status != "running" else ws.status,
                "reason": coarse.reason or ws.reason,
            }
        )
        usage = usage.add(ws.usage)
    run.usage = usage
    return run


async def wait_run(client: Client, run_id: str) -> RunState:
    """Wait for the run to end (whatever its outcome) and return its full status."""
    handle = client.get_workflow_handle(run_id)
    try:
        await handle.result()
    except WorkflowFailureError:
        pass
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            raise UnknownRun(run_id) from None
        raise
    return await get_status(client, run_id)


async def cancel_run(client: Client, run_id: str) -> None:
    """Request cancellation: running tools are stopped and their processes killed."""
    try:
        await client.get_workflow_handle(run_id).cancel()
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            raise UnknownRun(run_id) from None
        raise


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    plan: str
    status: str
    started_at: datetime | None
    closed_at: datetime | None


async def list_runs(
    client: Client,
    *,
    status: str | None = None,
    labels: dict[str, str] | None = None,
    query: str | None = None,
    limit: int = 50,
) -> AsyncIterator[RunSummary]:
    """Runs, newest first, filtered by status, labels and a Temporal visibility query."""
    clauses = [f'WorkflowType = "{RUN_WORKFLOW}"']
    if status:
        clauses.append(f'TowlineStatus = "{status}"')
    for k, v in (labels or {}).items():
        clauses.append(f'TowlineLabels = "{k}={v}"')
    if query:
        clauses.append(f"({query})")
    count = 0
    async for wf in client.list_workflows(" AND ".join(clauses)):
        sa = wf.typed_search_attributes
        yield RunSummary(
            run_id=wf.id,
            plan=sa.get(PLAN_KEY) or "",
            status=sa.get(STATUS_KEY) or _fallback_status(wf.status),
            started_at=wf.start_time,
            closed_at=wf.close_time,
        )
        count += 1
        if count >= limit:
            return


_FALLBACK_STATUS = {
    WorkflowExecutionStatus.RUNNING: "running",
    WorkflowExecutionStatus.COMPLETED: "succeeded",
    WorkflowExecutionStatus.CANCELED: "cancelled",
}


def _fallback_status(status: WorkflowExecutionStatus | None) -> str:
    """For runs started before their status was recorded: Temporal's own status."""
    return _FALLBACK_STATUS.get(status, "failed") if status else "pending"
