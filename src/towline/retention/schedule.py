"""The daily ``towline gc`` as a Temporal Schedule, installed by a worker that is told when."""

from __future__ import annotations

import os
from collections.abc import Mapping

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleCalendarSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from towline.config import ConfigError
from towline.profiles import parse_time_of_day
from towline.retention.policy import GcInput
from towline.workflows.gc import GcWorkflow

DAILY_AT_ENV = "TOWLINE_GC_DAILY_AT"


def schedule_id(task_queue: str) -> str:
    return f"towline-gc-{task_queue}"


def daily(task_queue: str, at: str) -> Schedule:
    """``towline gc`` every day at ``at`` (``HH:MM``, UTC), on ``task_queue``'s workers."""
    try:
        hour, minute = parse_time_of_day(at)
    except ValueError as e:
        raise ConfigError(f"{DAILY_AT_ENV}: {e}") from None
    return Schedule(
        action=ScheduleActionStartWorkflow(
            GcWorkflow.run,
            GcInput(),
            id=schedule_id(task_queue),
            task_queue=task_queue,
            static_summary="towline gc: remove what finished runs left past their retention",
        ),
        spec=ScheduleSpec(
            calendars=[
                ScheduleCalendarSpec(hour=[ScheduleRange(hour)], minute=[ScheduleRange(minute)])
            ]
        ),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def install(client: Client, task_queue: str, at: str) -> str:
    """Create the schedule, or bring an existing one to ``at``; its id."""
    sid = schedule_id(task_queue)
    schedule = daily(task_queue, at)
    try:
        await client.create_schedule(sid, schedule)
    except ScheduleAlreadyRunningError:

        def update(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await client.get_schedule_handle(sid).update(update)
    return sid


async def install_from_environment(
    client: Client, task_queue: str, env: Mapping[str, str] = os.environ
) -> str | None:
    """Install the schedule when ``TOWLINE_GC_DAILY_AT`` (``retention.daily_at``) says."""
    at = env.get(DAILY_AT_ENV)
    return await install(client, task_queue, at) if at else None
