"""towline from Python scripts: start a run, follow it, steer it.

    from towline.plan.load import load_plan
    from towline.starter import api
    from towline.worker.client import connect

    client = await connect()  # TEMPORAL_ADDRESS, the profile, temporal.toml, else localhost
    plan = load_plan("plan.yaml")
    run_id = await api.start_run(client, plan, plan_dir=".")
    state = await api.wait_run(client, run_id)

The CLI is a thin layer over these functions.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import re
import secrets
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import (
    Priority,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.workflow import UpdateMethodMultiParam

from towline import estimates
from towline.config import DEFAULT_TASK_QUEUE
from towline.holding import Restore
from towline.plan import limits
from towline.plan.load import PlanError
from towline.plan.spec import DEFAULT_TAKEOVER, BudgetSpec, PlanSpec
from towline.plan.validate import Problem
from towline.state import (
    FINISHED,
    LABELS_KEY,
    PLAN_KEY,
    RUN_ENGINE,
    RUN_WORKFLOW,
    STATUS_KEY,
    WORKSPACE_OF_MEMO,
    Answer,
    AnswerRequest,
    RunInput,
    RunState,
    TaskView,
    Usage,
    WorkstreamState,
    fairness_key,
    workstream_workflow_id,
)
from towline.store import open_store
from towline.workflows.agent import AgentAnswer, agent_workflow_id
from towline.workflows.rollback import (
    ROLLBACK_WORKFLOW,
    RollbackInput,
    RollbackState,
    rollback_workflow_id,
)

M = TypeVar("M", bound=BaseModel)  # the state a workflow reports (RunState, WorkstreamState...)

# Long enough for a query to fall back from the sticky queue of a worker that crashed
# (the SDK default sticky schedule-to-start timeout is 10 s) to a live worker.
QUERY_TIMEOUT = timedelta(seconds=30)


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


class BadInput(ValueError):
    """An argument that can never work, e.g. a malformed run id."""


_RUN_ID = re.compile(r"[A-Za-z0-9._-]+")


def check_run_id(run_id: str) -> str:
    """``run_id``, if it can name a new run (docs/cli.md); :class:`BadInput` otherwise.

    A ``/`` would make it another run's workstream id (``<run>/<workstream>``)."""
    if (
        len(run_id) > limits.MAX_RUN_ID
        or not _RUN_ID.fullmatch(run_id)
        or run_id in (".", "..")  # run ids name folders in the artifact store
    ):
        shown = run_id if len(run_id) <= 60 else run_id[:57] + "..."
        raise BadInput(
            f"not a valid run id: {shown!r} (use letters, digits, '.', '_' and '-', "
            f"at most {limits.MAX_RUN_ID} characters)"
        )
    return run_id


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
    retry_of: str | None = None,
    reuse: dict[str, TaskView] | None = None,
    workspace_of: str | None = None,
    max_history: int | None = None,
    restore: dict[str, Restore] | None = None,
) -> str:
    """Start a run of ``plan`` and return its run id (the run workflow's id).

    ``search_attributes=False`` is for servers without towline's search attributes
    registered (the time-skipping test server cannot register any). ``max_history``
    makes its workflows continue-as-new sooner (tests). Raises
    :class:`BadInput` for a malformed ``run_id``, and PlanError for a plan past the
    limits or a run input too large for its worker (:func:`check_run_input`).
    """
    rid = check_run_id(run_id) if run_id is not None else new_run_id(plan.name)
    labels = [f"{k}={v}" for k, v in sorted(plan.labels.items())]
    # Workflows need concrete durations: `timeout: auto` is settled here, from history.
    plan = await asyncio.to_thread(estimates.resolve_from_history, plan)
    # Files the plan names travel with the run: no worker reads this machine's disk.
    plan = await asyncio.to_thread(_pack_files, plan, Path(plan_dir).resolve())
    run_input = RunInput(
        run_id=rid,
        plan=plan,
        plan_dir=str(Path(plan_dir).resolve()),
        retry_of=retry_of,
        reuse=reuse or {},
        workspace_of=workspace_of,
        max_history=max_history,
        restore=restore or {},
        engine=RUN_ENGINE,
    )
    await check_run_input(client, run_input)
    try:
        await client.start_workflow(
            RUN_WORKFLOW,
            run_input,
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
            # Its workstreams and tool calls inherit it: task queues share their work out
            # between runs, so a big run's backlog never starves a small one.
            priority=Priority(fairness_key=fairness_key(rid)),
            # `towline gc` keeps the workspaces a retry works in while it is open.
            memo={WORKSPACE_OF_MEMO: workspace_of} if workspace_of else None,
        )
    except WorkflowAlreadyStartedError:
        raise RunExists(rid) from None
    return rid


async def check_run_input(client: Client, run_input: RunInput) -> None:
    """Raise PlanError unless the run's worker can take ``run_input`` within its limits.

    The plan's values must be within the limits however the plan was made (a script may
    build one without :func:`~towline.plan.load.check_data`), and its input as sent
    (the plan, and the outputs a retry reuses) within ``MAX_RUN_INPUT_JSON`` before
    compression and ``MAX_RUN_INPUT_PAYLOAD`` after: so the first workflow task of the
    run decodes it in a small fraction of Temporal's deadlock limit, and the server
    (which refuses payloads over 2 MB) takes it.
    """
    dumped = run_input.plan.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    checked = limits.check_values(dumped)
    if checked.problems:
        raise PlanError([Problem(path, message) for path, message in checked.problems])
    converter = client.data_converter
    payloads = converter.payload_converter.to_payloads([run_input])
    raw = len(payloads[0].data)
    if converter.payload_codec is not None:
        payloads = await converter.payload_codec.encode(payloads)
    sent = payloads[0].ByteSize()
    for what, n, limit in (
        ("before compression", raw, limits.MAX_RUN_INPUT_JSON),
        ("encoded", sent, limits.MAX_RUN_INPUT_PAYLOAD),
    ):
        if n > limit:
            raise PlanError(
                [
                    Problem(
                        "",
                        f"the run's input is {limits.size(n)} {what}, above the limit of "
                        f"{limits.size(limit)}: make the plan smaller (large values can go "
                        "in files the plan names, which travel with the run)",
                    )
                ]
            )


def _pack_files(plan: PlanSpec, plan_dir: Path) -> PlanSpec:
    from towline.activities import plan_files
    from towline.activities.tools import TOOLS

    fields = {name: plan_files.file_fields(t.input_model) for name, t in TOOLS.items()}
    return plan_files.pack(plan, plan_dir, open_store(), fields)


def _restore_points(state: RunState) -> dict[str, Restore]:
    """Each held workspace of a finished run, as its newest snapshot left it."""
    return {
        wid: Restore(snapshot=ws.holding.snapshot)
        for wid, ws in state.workstreams.items()
        if ws.holding is not None
    }


async def _query(client: Client, workflow_id: str, result_type: type[M]) -> M:
    """The workflow's ``status`` query (each of towline's workflows has one), answered by
    a worker."""
    handle = client.get_workflow_handle(workflow_id)
    try:
        state: M = await handle.query("status", result_type=result_type, rpc_timeout=QUERY_TIMEOUT)
        return state
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            raise UnknownRun(workflow_id) from None
        if e.status in (RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED):
            raise NoWorker(
                f"no answer from a worker for '{workflow_id}'; is `towline worker` running?"
            ) from None
        raise


async def _ended_state(client: Client, workflow_id: str, result_type: type[M]) -> M | None:
    """The state a workflow that has ended ended with, read from its history: no worker
    needs to answer. None when it is still running, or ended without one (cancelled,
    terminated, timed out).

    A run or workstream that succeeded returns its state; one that failed puts it in
    its error's details.
    """
    handle = client.get_workflow_handle(workflow_id, result_type=result_type)
    try:
        if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
            return None
        state: M = await handle.result(rpc_timeout=QUERY_TIMEOUT)
        return state
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            raise UnknownRun(workflow_id) from None
        raise
    except WorkflowFailureError as e:
        cause = e.cause
        if isinstance(cause, ApplicationError) and len(cause.details) == 1:
            with contextlib.suppress(ValidationError):
                return result_type.model_validate(cause.details[0])
        return None


async def _state(client: Client, workflow_id: str, result_type: type[M], *, ended: bool) -> M:
    """A workflow's state: from its history once it has ended, else by query."""
    if ended and (state := await _ended_state(client, workflow_id, result_type)) is not None:
        return state
    return await _query(client, workflow_id, result_type)


# Workstreams whose tasks `status` reads by default: beyond this many started, a run's
# status is the summary the run keeps (counts by status, what waits, what failed), and
# the tasks of chosen workstreams are read on demand (`towline status RUN --workstream W`).
DETAIL_LIMIT = 50
_READS_AT_ONCE = 16


async def get_status(
    client: Client, run_id: str, *, workstreams: Collection[str] | None = None
) -> RunState:
    """The run, its workstreams and their tasks, as they are now.

    A run that is still going is asked (queries, answered by a worker); one that has
    ended is read from the histories, so its status needs no worker. The tasks of every
    started workstream are read when there are at most :data:`DETAIL_LIMIT`; else only
    those of ``workstreams`` (the others keep the run's summary: status, counts, reason).
    """
    run = await _state(client, run_id, RunState, ended=True)
    ended = run.status in FINISHED
    started = [w for w, s in run.workstreams.items() if s.started_at is not None]
    if workstreams is not None:
        unknown = sorted(set(workstreams) - set(run.workstreams))
        if unknown:
            raise Refused(f"run {run_id} has no workstream {', '.join(unknown)}")
        chosen = [w for w in started if w in set(workstreams)]
    else:
        chosen = started if len(started) <= DETAIL_LIMIT else []
    gate = asyncio.Semaphore(_READS_AT_ONCE)

    async def read(wid: str) -> WorkstreamState:
        async with gate:
            return await _state(
                client, workstream_workflow_id(run_id, wid), WorkstreamState, ended=ended
            )

    details = await asyncio.gather(*(read(w) for w in chosen), return_exceptions=True)
    usage = Usage()
    for wid, ws in zip(chosen, details, strict=True):
        if isinstance(ws, UnknownRun):
            continue  # its start is under way: the run's own view of it stands
        if isinstance(ws, BaseException):
            raise ws
        coarse = run.workstreams[wid]
        # The run knows how a workstream ended (e.g. cancelled before it finished its
        # bookkeeping); the workstream knows its tasks.
        status = coarse.status if coarse.status not in ("running", "waiting") else ws.status
        if status in ("running", "waiting"):
            # The workstream's own answer is newer than the run's word on its waits.
            waiting = any(t.status == "waiting" for t in ws.tasks.values())
            status = "waiting" if waiting else "running"
        run.workstreams[wid] = ws.model_copy(
            update={"status": status, "reason": coarse.reason or ws.reason}
        )
        usage = usage.add(ws.usage)
    if len(chosen) == len(started) and workstreams is None:
        run.usage = usage  # every workstream read: their tasks' usage is the newest word
    if run.status in ("running", "waiting") and not (run.reason or "").startswith("paused"):
        waits = any(w.status == "waiting" for w in run.workstreams.values())
        run.status = "waiting" if waits else "running"
    if run.status in FINISHED:
        await _apply_rollback(client, run)
    return run


async def wait_run(client: Client, run_id: str) -> RunState:
    """Wait for the run to end (whatever its outcome) and return its full status."""
    try:
        await wait_closed(client.get_workflow_handle(run_id))
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            raise UnknownRun(run_id) from None
        raise
    return await get_status(client, run_id)


async def wait_closed(handle: WorkflowHandle[Any, Any]) -> None:
    """Wait for a workflow to close, however it ended (its status says how)."""
    while True:
        try:
            await handle.result()
        except WorkflowFailureError:
            pass
        except RuntimeError as e:
            # The SDK's long poll for the close event came back empty (a server's poll
            # timeout; the time-skipping test server does it on a busy machine): the
            # workflow has not closed yet, so poll again.
            if "No completion event found" not in str(e):
                raise
            await asyncio.sleep(0.2)
            continue
        return


async def run_input(client: Client, run_id: str) -> RunInput:
    """The input a run was started with (its plan), read back from its history."""
    handle = client.get_workflow_handle(run_id)
    try:
        async for event in handle.fetch_history_events():
            started = event.workflow_execution_started_event_attributes
            values = await client.data_converter.decode(started.input.payloads, [RunInput])
            return RunInput.model_validate(values[0])
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            raise UnknownRun(run_id) from None
        raise
    raise UnknownRun(run_id)


async def retry_run(
    client: Client, run_id: str, *, task_queue: str = DEFAULT_TASK_QUEUE, new_id: str | None = None
) -> str:
    """Start a new run, linked to a finished run that did not succeed.

    The new run reuses the recorded outputs of the tasks that succeeded and runs only
    what failed, was skipped, cancelled or rolled back.
    """
    state = await get_status(client, run_id)
    if state.status not in FINISHED or state.status == "succeeded":
        raise Refused(
            f"run {run_id} is {state.status}: only a finished run that did not "
            "succeed can be retried"
        )
    original = await run_input(client, run_id)
    reuse = dict(original.reuse)
    for wid, ws in state.workstreams.items():
        for tid, t in ws.tasks.items():
            if t.status == "succeeded":
                reuse[f"{wid}.{tid}"] = TaskView(status="succeeded", outputs=t.outputs)
    return await start_run(
        client,
        original.plan,
        plan_dir=original.plan_dir,
        task_queue=task_queue,
        run_id=new_id,
        retry_of=run_id,
        reuse=reuse,
        workspace_of=original.workspace_of or run_id,
        restore=_restore_points(state),
    )


async def rollback_run(client: Client, run_id: str, *, task_queue: str = DEFAULT_TASK_QUEUE) -> str:
    """Run the rollbacks of a finished run's succeeded tasks, newest first."""
    state = await get_status(client, run_id)
    if state.status not in FINISHED:
        raise Refused(
            f"run {run_id} is {state.status}: `towline cancel {run_id}` stops it and rolls back "
            "(with settings.rollback: auto, the default)"
        )
    original = await run_input(client, run_id)
    tasks = {wid: dict(ws.tasks) for wid, ws in state.workstreams.items()}
    try:
        await client.start_workflow(
            ROLLBACK_WORKFLOW,
            RollbackInput(
                run_id=run_id,
                plan=original.plan,
                plan_dir=original.plan_dir,
                tasks=tasks,
                takeover=original.plan.settings.takeover or DEFAULT_TAKEOVER,
                restore=_restore_points(state),
            ),
            id=rollback_workflow_id(run_id),
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            static_summary=f"rollback of run {run_id}",
        )
    except WorkflowAlreadyStartedError:
        raise Refused(f"run {run_id} has already been rolled back") from None
    return rollback_workflow_id(run_id)


async def _apply_rollback(client: Client, run: RunState) -> None:
    """Show the outcome of ``towline rollback`` (if any) in a finished run's status."""
    try:
        rb = await _state(client, rollback_workflow_id(run.run_id), RollbackState, ended=True)
    except UnknownRun:
        return
    for wid, tasks in rb.tasks.items():
        ws = run.workstreams.get(wid)
        if ws is None:
            continue
        ws.tasks.update(tasks)
        if any(t.status == "rolled_back" for t in tasks.values()):
            ws.status = "rolled_back"
    if rb.status == "rolled_back":
        run.status, run.reason = "rolled_back", "rolled back by towline rollback"
    elif rb.status == "failed":
        run.reason = "towline rollback: a rollback failed"


async def cancel_run(client: Client, run_id: str) -> None:
    """Request cancellation: running tools are stopped and their processes killed.

    A run that has already finished cannot be: :class:`Refused` says how it ended.
    """
    handle = client.get_workflow_handle(run_id)
    try:
        desc = await handle.describe()
        if desc.status != WorkflowExecutionStatus.RUNNING:
            raise Refused(
                f"run {run_id} has already finished ({_ended_as(desc)}): there is nothing to cancel"
            )
        await handle.cancel()
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            raise UnknownRun(run_id) from None
        raise


def _ended_as(desc: WorkflowExecutionDescription) -> str:
    """How a workflow that has ended ended, in towline's words when it recorded them."""
    return desc.typed_search_attributes.get(STATUS_KEY) or _fallback_status(desc.status)


async def _finished(client: Client, workflow_id: str) -> str | None:
    """How ``workflow_id`` ended, or None when it is running or unknown."""
    try:
        desc = await client.get_workflow_handle(workflow_id).describe()
    except RPCError:
        return None
    return None if desc.status == WorkflowExecutionStatus.RUNNING else _ended_as(desc)


class Refused(ValueError):
    """The run or task cannot take that command now (e.g. it is not waiting for it)."""


def _task_ref(ref: str) -> tuple[str, str]:
    ws, sep, task = ref.partition(".")
    if not sep or not ws or not task:
        raise Refused(f"'{ref}' is not a task: give it as workstream.task, e.g. api.apply")
    return ws, task


async def _update(client: Client, workflow_id: str, name: str, arg: object) -> str:
    """Send the update ``name`` (by name: the run's updates) and return its answer."""
    async with _refused_as_such(client, workflow_id, name):
        answer = await client.get_workflow_handle(workflow_id).execute_update(
            name, arg, result_type=str
        )
    return str(answer)


@contextlib.asynccontextmanager
async def _refused_as_such(client: Client, workflow_id: str, name: str) -> AsyncIterator[None]:
    """An update the workflow cannot take: :class:`Refused` (it has finished, or its
    handler said no) or :class:`UnknownRun`."""
    try:
        yield
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            ended = await _finished(client, workflow_id)
            if ended is not None:
                raise Refused(
                    f"run {workflow_id} has already finished ({ended}): "
                    f"'{name.replace('_', ' ')}' applies only to a run in progress"
                ) from None
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
    t = status.workstreams[ws].tasks.get(tid)
    if t is None:
        raise Refused(f"workstream {ws} has no task '{tid}'")
    if t.status != "waiting":
        raise Refused(f"task {task} cannot take '{what}': it is {t.status}, not waiting")
    req = AnswerRequest(task=tid, by=by or _who(), note=note)
    wid = workstream_workflow_id(run_id, ws)
    # Imported here: the workflow's module brings the worker's side of the SDK, which
    # would add about 0.1 s to every command (shell completion included).
    from towline.workflows.workstream import WorkstreamWorkflow

    # The workstream's updates that answer a waiting task, by typed reference.
    updates: dict[Answer, UpdateMethodMultiParam[[WorkstreamWorkflow, AnswerRequest], str]] = {
        "approve": WorkstreamWorkflow.approve,
        "reject": WorkstreamWorkflow.reject,
        "retry": WorkstreamWorkflow.retry,
        "skip": WorkstreamWorkflow.skip,
        "abort": WorkstreamWorkflow.abort,
    }
    handle = client.get_workflow_handle_for(WorkstreamWorkflow.run, wid)
    async with _refused_as_such(client, wid, what):
        return await handle.execute_update(updates[what], req)


async def answer_question(
    client: Client, run_id: str, task: str, text: str, *, by: str | None = None
) -> str:
    """Answer the question an ``agent`` task asked (``ask_human``); it then goes on.

    The answer is an update on the agent's workflow (``<run>/<workstream>/<task>``),
    recorded in its history with who gave it and when.
    """
    ws, tid = _task_ref(task)
    if not text.strip():
        raise BadInput("the answer is empty: give the text to send the agent")
    status = await get_status(client, run_id)
    if ws not in status.workstreams:
        raise Refused(f"run {run_id} has no workstream '{ws}'")
    t = status.workstreams[ws].tasks.get(tid)
    if t is None:
        raise Refused(f"workstream {ws} has no task '{tid}'")
    if t.waiting_for != "answer":
        what = f"waiting for {t.waiting_for}" if t.waiting_for else t.status
        raise Refused(f"task {task} has no question to answer ({what})")
    answer = AgentAnswer(text=text, by=by or _who())
    return await _update(client, agent_workflow_id(run_id, ws, tid), "answer", answer)


async def pause_run(client: Client, run_id: str, *, by: str | None = None) -> str:
    """Start no new tasks in the run; running ones finish."""
    return await _update(client, run_id, "pause", by or _who())


async def resume_run(client: Client, run_id: str, *, by: str | None = None) -> str:
    """Start scheduling tasks again."""
    return await _update(client, run_id, "resume", by or _who())


async def raise_budget(client: Client, run_id: str, raise_to: BudgetSpec) -> str:
    """New budget limits for a run; tasks waiting for budget go on if it now allows."""
    return await _update(client, run_id, "raise_budget", raise_to)


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
    try:
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
    except RPCError as e:
        if e.status == RPCStatusCode.INVALID_ARGUMENT:
            what = f"the query {query!r}" if query else "the search"
            raise BadInput(f"the server rejected {what}: {e.message}") from None
        raise


async def waiting_for(
    client: Client, run_ids: list[str], *, timeout: float = 5.0
) -> dict[str, str]:
    """What each of these waiting runs waits for, in words, with the commands that
    answer (``approval of prod.deploy: towline approve|reject RUN prod.deploy``).

    Asked of the runs all at once; a run no worker answers within ``timeout`` says so.
    """
    from towline.starter import views

    async def one(rid: str) -> str:
        try:
            state = await asyncio.wait_for(get_status(client, rid), timeout)
        except (TimeoutError, NoWorker):
            return "(no worker answered: is `towline worker` running?)"
        except (UnknownRun, RPCError) as e:
            return f"(cannot tell: {e})"
        return views.waits_in_words(state, commands=True)

    return dict(zip(run_ids, await asyncio.gather(*(one(r) for r in run_ids)), strict=True))


_FALLBACK_STATUS = {
    WorkflowExecutionStatus.RUNNING: "running",
    WorkflowExecutionStatus.COMPLETED: "succeeded",
    WorkflowExecutionStatus.CANCELED: "cancelled",
}


def _fallback_status(status: WorkflowExecutionStatus | None) -> str:
    """For runs started before their status was recorded: Temporal's own status."""
    return _FALLBACK_STATUS.get(status, "failed") if status else "pending"
