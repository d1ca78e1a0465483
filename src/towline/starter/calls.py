"""Every tool call a task made, read from the histories Temporal keeps.

A task's state holds its last call's outputs only; its workstream's history holds them
all: each run of the tool (an operator's retry, a fix loop's), each fix call and the
rollback call, as activities whose input names the task (``ToolCall.context``).
``towline rollback`` runs its calls in a workflow of its own (``<run>/rollback``), read
too. A workstream that continued-as-new is read back through its chain of runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from towline.state import ErrorInfo, workstream_workflow_id
from towline.workflows.rollback import rollback_workflow_id


@dataclass
class Call:
    """One call of a task's tool (its last attempt, for a call Temporal retried)."""

    activity_id: str
    tool: str
    kind: str  # "call", "fix" or "rollback"
    number: int  # the call's number among its kind: call 2 is the second run of the tool
    status: str = "running"  # running | succeeded | failed | timed out | cancelled
    attempt: int = 1
    outputs: dict[str, Any] = field(default_factory=dict)
    error: ErrorInfo | None = None
    scheduled_at: datetime | None = None
    ended_at: datetime | None = None

    @property
    def title(self) -> str:
        """``call 2 (shell)``, ``fix 1 (shell)``, ``rollback (shell)``."""
        name = "rollback" if self.kind == "rollback" else f"{self.kind} {self.number}"
        return f"{name} ({self.tool})"


async def task_calls(client: Client, run_id: str, workstream: str, task: str) -> list[Call]:
    """The task's tool calls, oldest first; empty when its histories are gone (retention)."""
    found = await _calls_in(client, workstream_workflow_id(run_id, workstream), workstream, task)
    found += await _calls_in(client, rollback_workflow_id(run_id), workstream, task)
    numbers: dict[str, int] = {}
    for call in found:
        numbers[call.kind] = call.number = numbers.get(call.kind, 0) + 1
    return found


class _Gone(LookupError):
    pass


async def _calls_in(client: Client, workflow_id: str, workstream: str, task: str) -> list[Call]:
    calls: list[Call] = []
    run_id: str | None = None  # the latest run first, then the ones it continued
    while True:
        try:
            mine, continued = await _one_run(client, workflow_id, run_id, workstream, task)
        except _Gone:
            break
        calls[:0] = mine
        if not continued:
            break
        run_id = continued
    return calls


async def _one_run(
    client: Client, workflow_id: str, run_id: str | None, workstream: str, task: str
) -> tuple[list[Call], str]:
    """The task's calls in one run of a workflow, and the run it continued (or "")."""
    handle = client.get_workflow_handle(workflow_id, run_id=run_id)
    by_event: dict[int, Call] = {}
    continued = ""
    try:
        async for event in handle.fetch_history_events():
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
                attrs = event.workflow_execution_started_event_attributes
                continued = attrs.continued_execution_run_id
            elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                call = await _scheduled(client, event, workstream, task)
                if call is not None:
                    by_event[event.event_id] = call
            else:
                await _progress(client, event, by_event)
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            raise _Gone(workflow_id) from None
        raise
    return list(by_event.values()), continued


async def _scheduled(
    client: Client, event: HistoryEvent, workstream: str, task: str
) -> Call | None:
    attrs = event.activity_task_scheduled_event_attributes
    aid = attrs.activity_id
    # Activity ids start with the task id (``deploy``, ``deploy#2``, ``deploy.fix1``,
    # ``deploy.rollback``); task ids hold no '.' or '#'. The input says whose call it is.
    if aid != task and not aid.startswith((f"{task}#", f"{task}.")):
        return None
    try:
        (call,) = await client.data_converter.decode(attrs.input.payloads)
        ctx = call["context"]
        if ctx["workstream"] != workstream or ctx["task"] != task:
            return None
    except (ValueError, TypeError, KeyError):
        return None  # not a tool call (a workspace activity, say)
    suffix = aid[len(task) :]
    kind = "rollback" if suffix == ".rollback" else "fix" if suffix.startswith(".fix") else "call"
    return Call(
        activity_id=aid,
        tool=attrs.activity_type.name,
        kind=kind,
        number=0,
        scheduled_at=event.event_time.ToDatetime(tzinfo=UTC),
    )


async def _progress(client: Client, event: HistoryEvent, calls: dict[int, Call]) -> None:
    """Apply a started, completed, failed, timed-out or cancelled event to its call."""
    kind = event.event_type
    if kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
        started = event.activity_task_started_event_attributes
        if (call := calls.get(started.scheduled_event_id)) is not None:
            call.attempt = started.attempt
        return
    if kind == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
        done = event.activity_task_completed_event_attributes
        if (call := calls.get(done.scheduled_event_id)) is None:
            return
        (result,) = await client.data_converter.decode(done.result.payloads)
        call.status = "succeeded"
        call.outputs = dict(result.get("outputs") or {}) if isinstance(result, dict) else {}
    elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED:
        failed = event.activity_task_failed_event_attributes
        if (call := calls.get(failed.scheduled_event_id)) is None:
            return
        call.status = "failed"
        err = await client.data_converter.decode_failure(failed.failure)
        call.error, call.outputs = _failure(err)
    elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT:
        timed_out = event.activity_task_timed_out_event_attributes
        if (call := calls.get(timed_out.scheduled_event_id)) is None:
            return
        call.status = "timed out"
        call.error = ErrorInfo(category="timeout", message="the call ran past its timeout")
    elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED:
        cancelled = event.activity_task_canceled_event_attributes
        if (call := calls.get(cancelled.scheduled_event_id)) is None:
            return
        call.status = "cancelled"
    else:
        return
    call.ended_at = event.event_time.ToDatetime(tzinfo=UTC)


def _failure(err: BaseException) -> tuple[ErrorInfo, dict[str, Any]]:
    """A failed call's error and outputs, as the tool reported them (already redacted)."""
    if isinstance(err, ApplicationError):
        details = err.details[0] if err.details and isinstance(err.details[0], dict) else {}
        info = ErrorInfo(
            category=str(details.get("category") or err.type or "system"),
            message=err.message,
            output=details.get("output"),
        )
        return info, dict(details.get("outputs") or {})
    return ErrorInfo(category="system", message=str(err)), {}
