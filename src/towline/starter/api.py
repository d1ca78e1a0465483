"""towline from Python scripts: start a run, follow it, steer it.

    client = await towline.starter.api.connect_default()
    plan = load_plan("plan.yaml")
    run_id = await start_run(client, plan, plan_dir=".")
    state = await wait_run(client, run_id)

The CLI is a thin layer over these functions.
"""

from __future__ import annotations

import asyncio
import getpass
import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowUpdateFailedError,
)
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
    Answer,
    AnswerRequest,
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
        *(_query(client, workstream_workflow_id(run_id, w), WorkstreamState) for w in started),
        return_exceptions=True,
    )
    usage = Usage()
    for wid, ws in zip(started, details, strict=True):
        if isinstance(ws, UnknownRun):
            continue  # its start is under way: the run's own view of it stands
        if isinstance(ws, BaseException):
            raise ws
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


class Refused(ValueError):
    """The run or task cannot take that command now (e.g. it is not waiting for it)."""


def _task_ref(ref: str) -> tuple[str, str]:
    ws, sep, task = ref.partition(".")
    if not sep or not ws or not task:
        raise Refused(f"'{ref}' is not a task: give it as workstream.task, e.g. api.apply")
    return ws, task


async def _update(client: Client, workflow_id: str, name: str, arg: object) -> str:
    handle = client.get_workflow_handle(workflow_id)
    try:
        return str(await handle.execute_update(name, arg, result_type=str))
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            raise UnknownRun(workflow_id) from None
        raise
    except WorkflowUpdateFailedError as e:
        cause = e.cause
        raise Refused(getattr(cause, "message", None) or str(cause or e)) from None


async def answer(
    client: Client,
    run_id: str,
    task: str,
    what: Answer,
    *,
    by: str | None = None,
    note: str | None = None,
) -> str:
    """Answer a waiting task: approve/reject an approval, retry/skip/abort after a failure.

    ``task`` is ``workstream.task``. The answer is an update on the workstream's workflow,
    recorded in its history with who gave it and when.
    """
    ws, tid = _task_ref(task)
    status = await get_status(client, run_id)
    if ws not in status.workstreams:
        raise Refused(f"run {run_id} has no workstream '{ws}'")
    if tid not in status.workstreams[ws].tasks:
        raise Refused(f"workstream {ws} has no task '{tid}'")
    req = AnswerRequest(task=tid, by=by or _who(), note=note)
    return await _update(client, workstream_workflow_id(run_id, ws), what, req)


async def pause_run(client: Client, run_id: str, *, by: str | None = None) -> str:
    """Start no new tasks in the run; running ones finish."""
    return await _update(client, run_id, "pause", by or _who())


async def resume_run(client: Client, run_id: str, *, by: str | None = None) -> str:
    """Start scheduling tasks again."""
    return await _update(client, run_id, "resume", by or _who())


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "someone"


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
