"""The task lifecycle, run inside its workstream's workflow.

A task evaluates its ``if:``, resolves the expressions in its ``with``, and calls its tool:
an activity with the task's timeout and retry policy (Temporal does the retrying), or a
durable timer for ``wait``. The outcome lands in the task's :class:`TaskState`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    RetryState,
    TimeoutError,
    TimeoutType,
)
from temporalio.workflow import ActivityCancellationType

from towline.activities.base import ToolCall, ToolContext, ToolResult
from towline.durations import parse_duration
from towline.errors import CATEGORIES, NON_RETRYABLE, hint_for
from towline.workflows import expressions
from towline.workflows.spec import DEFAULT_TIMEOUT, Defaults, RetrySpec, TaskSpec
from towline.workflows.state import ErrorInfo, TaskState

# A tool heartbeats every second while it runs; a worker that stops doing so has died,
# and the attempt is retried elsewhere after this long.
HEARTBEAT_TIMEOUT = timedelta(seconds=20)
WORKFLOW_TOOLS = frozenset({"wait"})


@dataclass(frozen=True)
class TaskEnv:
    """What every task of a workstream shares."""

    run_id: str
    workstream: str
    workspace: str
    plan_dir: str
    defaults: tuple[Defaults, ...]  # the workstream's, then the plan's


def attempt_timeout(spec: TaskSpec, env: TaskEnv) -> timedelta:
    if spec.timeout is not None:
        return spec.timeout
    for d in env.defaults:
        if d.timeout is not None:
            return d.timeout
    return DEFAULT_TIMEOUT


def retry_spec(spec: TaskSpec, env: TaskEnv) -> RetrySpec:
    if spec.retry is not None:
        return spec.retry
    for d in env.defaults:
        if d.retry is not None:
            return d.retry
    return RetrySpec()


def retry_policy(retry: RetrySpec) -> RetryPolicy:
    return RetryPolicy(
        maximum_attempts=retry.max_attempts,
        initial_interval=retry.initial_interval,
        backoff_coefficient=retry.backoff,
        maximum_interval=max(retry.max_interval, retry.initial_interval),
        non_retryable_error_types=list(NON_RETRYABLE),
    )


async def run_task(
    spec: TaskSpec, state: TaskState, env: TaskEnv, scope: expressions.Scope
) -> None:
    """Run one task to a final status in ``state``. Only cancellation propagates."""
    state.started_at = workflow.now()
    try:
        if spec.if_ is not None and not expressions.evaluate(spec.if_, scope):
            state.status = "skipped"
            state.reason = f"condition is false: {spec.if_}"
            state.ended_at = workflow.now()
            return
        args = expressions.resolve(spec.with_, scope)
    except expressions.ExpressionError as e:
        _fail(state, ErrorInfo(category="validation", message=str(e)), attempts=0)
        state.ended_at = workflow.now()
        return
    state.status = "running"
    retry = retry_spec(spec, env)
    try:
        if spec.tool in WORKFLOW_TOOLS:
            await _run_in_workflow(spec, args)
            state.attempts = 1
        else:
            result = await workflow.execute_activity(
                spec.tool,
                ToolCall(
                    context=ToolContext(
                        run_id=env.run_id,
                        workstream=env.workstream,
                        task=spec.id,
                        workspace=env.workspace,
                        plan_dir=env.plan_dir,
                    ),
                    args=args,
                    cache=spec.cache,
                ),
                result_type=ToolResult,
                activity_id=spec.id,
                summary=f"{spec.id}: {spec.tool}",
                start_to_close_timeout=attempt_timeout(spec, env),
                heartbeat_timeout=HEARTBEAT_TIMEOUT,
                retry_policy=retry_policy(retry),
                cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            )
            state.outputs = result.outputs
            state.usage = result.usage
            state.attempts = result.attempt
            state.cached = result.cached
        state.status = "succeeded"
    except ActivityError as e:
        if isinstance(e.cause, CancelledError):
            state.status = "cancelled"
            state.ended_at = workflow.now()
            raise asyncio.CancelledError from e
        error, attempts, outputs = _failure(e, retry.max_attempts)
        state.outputs = outputs
        _fail(state, error, attempts=attempts)
    except asyncio.CancelledError:
        state.status = "cancelled"
        state.ended_at = workflow.now()
        raise
    state.ended_at = workflow.now()


async def _run_in_workflow(spec: TaskSpec, args: dict[str, Any]) -> None:
    if spec.tool == "wait":
        await workflow.sleep(parse_duration(args["for"]), summary=f"{spec.id}: wait")


def _fail(state: TaskState, error: ErrorInfo, *, attempts: int) -> None:
    state.status = "failed"
    state.error = error
    state.attempts = attempts


def _failure(err: ActivityError, max_attempts: int) -> tuple[ErrorInfo, int, dict[str, Any]]:
    """The category, message and attempt count of an activity that failed for good."""
    cause = err.cause
    exhausted = err.retry_state == RetryState.MAXIMUM_ATTEMPTS_REACHED
    if isinstance(cause, ApplicationError):
        details = cause.details[0] if cause.details and isinstance(cause.details[0], dict) else {}
        category = cause.type if cause.type in CATEGORIES else "system"
        attempt = details.get("attempt") or (max_attempts if exhausted else 1)
        info = ErrorInfo(
            category=category,
            message=cause.message,
            hint=details.get("hint") or hint_for(category),
            output=details.get("output"),
        )
        return info, int(attempt), dict(details.get("outputs") or {})
    if isinstance(cause, TimeoutError):
        beat = cause.last_heartbeat_details
        output = beat[0] if beat and isinstance(beat[0], str) else None
        if cause.type == TimeoutType.HEARTBEAT:
            message = "the worker running the tool stopped responding (no heartbeat)"
        else:
            kind = cause.type.name.lower() if cause.type else "timeout"
            message = f"the attempt ran past its timeout ({kind})"
        info = ErrorInfo(
            category="timeout", message=message, hint=hint_for("timeout"), output=output
        )
        return info, max_attempts if exhausted else 1, {}
    message = str(cause or err)
    return ErrorInfo(category="system", message=message, hint=hint_for("system")), 1, {}
