"""Recurring runs on Temporal Schedules: ``towline schedule create|list|pause|resume|
delete|trigger``.

A schedule's action starts the run workflow with the plan in its input, like ``towline
run`` does, with the plan's search attributes (status, plan, labels), so each firing is
an ordinary run: ``towline status``, ``list``, ``cancel`` and the rest work on it. The run
input carries no run id: Temporal names each firing's workflow ``<schedule id>-<time>``
(e.g. ``nightly-2026-01-05T03:00:00Z``) and the run takes its workflow id as its run id,
so the convention run id = workflow id holds. Temporal also sets the search attribute
``TemporalScheduledById`` on it (``towline list --query 'TemporalScheduledById="nightly"'``).

The overlap policy defaults to ``skip``: a firing while the previous run is still going
starts nothing (the count of skipped firings is in ``towline schedule list``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleHandle,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
)
from temporalio.common import Priority, SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError, RPCStatusCode

from towline import estimates
from towline.config import DEFAULT_TASK_QUEUE
from towline.plan.spec import PlanSpec
from towline.state import (
    LABELS_KEY,
    PLAN_KEY,
    RUN_ENGINE,
    RUN_WORKFLOW,
    STATUS_KEY,
    RunInput,
    fairness_key,
)

T = TypeVar("T")

OVERLAP = {
    "skip": ScheduleOverlapPolicy.SKIP,
    "buffer_one": ScheduleOverlapPolicy.BUFFER_ONE,
    "buffer_all": ScheduleOverlapPolicy.BUFFER_ALL,
    "cancel_other": ScheduleOverlapPolicy.CANCEL_OTHER,
    "terminate_other": ScheduleOverlapPolicy.TERMINATE_OTHER,
    "allow_all": ScheduleOverlapPolicy.ALLOW_ALL,
}


class ScheduleError(ValueError):
    """A schedule that cannot be made or found: exit 2 with the message."""


@dataclass(frozen=True)
class ScheduleSummary:
    schedule_id: str
    plan: str
    cron: str
    paused: bool
    note: str
    next_runs: list[datetime]
    recent_runs: list[str]  # the run ids of its latest firings, newest last
    skipped: int  # firings skipped because the previous run was still going


async def create_schedule(
    client: Client,
    plan: PlanSpec,
    *,
    plan_dir: str | Path,
    cron: str,
    schedule_id: str | None = None,
    task_queue: str = DEFAULT_TASK_QUEUE,
    overlap: str = "skip",
    search_attributes: bool = True,
) -> str:
    """Create a schedule that runs ``plan`` at each time of ``cron``; return its id."""
    sid = schedule_id or _slug(plan.name)
    labels = [f"{k}={v}" for k, v in sorted(plan.labels.items())]
    plan = await asyncio.to_thread(estimates.resolve_from_history, plan)
    action = ScheduleActionStartWorkflow(
        RUN_WORKFLOW,
        RunInput(run_id="", plan=plan, plan_dir=str(Path(plan_dir).resolve()), engine=RUN_ENGINE),
        id=sid,
        task_queue=task_queue,
        typed_search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(STATUS_KEY, "running"),
                SearchAttributePair(PLAN_KEY, plan.name),
                SearchAttributePair(LABELS_KEY, labels),
            ]
            if search_attributes
            else []
        ),
        static_summary=f"towline run of plan {plan.name} (schedule {sid})",
        priority=Priority(fairness_key=fairness_key(sid)),
    )
    schedule = Schedule(
        action=action,
        spec=ScheduleSpec(cron_expressions=[cron]),
        policy=SchedulePolicy(overlap=OVERLAP[overlap]),
        state=ScheduleState(note=f"towline: plan {plan.name}"),
    )
    try:
        await client.create_schedule(sid, schedule, memo={"cron": cron})
    except ScheduleAlreadyRunningError:
        raise ScheduleError(
            f"a schedule with id '{sid}' already exists; choose another --id, or delete it "
            f"first (towline schedule delete {sid})"
        ) from None
    except RPCError as e:
        if e.status == RPCStatusCode.INVALID_ARGUMENT:
            raise ScheduleError(f"--cron {cron!r}: {e.message}") from None
        raise
    return sid


def _slug(name: str) -> str:
    from towline.starter.api import new_run_id

    return new_run_id(name).rsplit("-", 1)[0]


async def list_schedules(client: Client) -> AsyncIterator[ScheduleSummary]:
    """Every schedule that starts towline runs, with its next run times."""
    async for entry in await client.list_schedules():
        action = entry.schedule.action if entry.schedule else None
        if action is None or getattr(action, "workflow", None) != RUN_WORKFLOW:
            continue
        yield await describe_schedule(client, entry.id)


async def describe_schedule(client: Client, schedule_id: str) -> ScheduleSummary:
    d = await _call(client.get_schedule_handle(schedule_id).describe(), schedule_id)
    action = d.schedule.action
    plan = ""
    if isinstance(action, ScheduleActionStartWorkflow) and action.args:
        found = await client.data_converter.decode([action.args[0]], [RunInput])
        plan = found[0].plan.name if isinstance(found[0], RunInput) else ""
    cron = await d.memo_value("cron", default="")
    recent = [
        a.action.workflow_id for a in d.info.recent_actions if hasattr(a.action, "workflow_id")
    ]
    return ScheduleSummary(
        schedule_id=schedule_id,
        plan=plan,
        cron=str(cron),
        paused=d.schedule.state.paused,
        note=d.schedule.state.note or "",
        next_runs=list(d.info.next_action_times),
        recent_runs=recent,
        skipped=d.info.num_actions_skipped_overlap,
    )


async def pause_schedule(client: Client, schedule_id: str, *, note: str | None = None) -> None:
    await _call(_handle(client, schedule_id).pause(note=note or "paused by towline"), schedule_id)


async def resume_schedule(client: Client, schedule_id: str, *, note: str | None = None) -> None:
    await _call(
        _handle(client, schedule_id).unpause(note=note or "resumed by towline"), schedule_id
    )


async def delete_schedule(client: Client, schedule_id: str) -> None:
    await _call(_handle(client, schedule_id).delete(), schedule_id)


async def trigger_schedule(client: Client, schedule_id: str) -> None:
    """Start a run now, whatever the cron says (the overlap policy still applies)."""
    await _call(_handle(client, schedule_id).trigger(), schedule_id)


def _handle(client: Client, schedule_id: str) -> ScheduleHandle:
    return client.get_schedule_handle(schedule_id)


async def _call(call: Awaitable[T], schedule_id: str) -> T:
    try:
        return await call
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            raise ScheduleError(f"unknown schedule '{schedule_id}'") from None
        raise
