"""The activities behind circuit breakers: how task code reaches a target's breaker.

A workflow cannot update-with-start another workflow, so the task lifecycle asks and
tells its target's :class:`~towline.workflows.breaker.BreakerWorkflow` through these two
activities, which use the worker's client. Both start the breaker when it does not run
yet (update-with-start / signal-with-start), so a breaker exists from its first use.

Most calls find their breaker closed, and then neither asking nor telling changes it. So
both first read the breaker's state with a query (no history written, nothing for the
breaker to process) and only send the update or signal when it could change something:
see :func:`~towline.workflows.breaker.settled` and
:func:`~towline.workflows.breaker.changes`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio import activity
from temporalio.client import Client, WithStartWorkflowOperation, WorkflowQueryRejectedError
from temporalio.common import QueryRejectCondition, WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from towline.workflows.breaker import (
    ACQUIRE_ACTIVITY,
    REPORT_ACTIVITY,
    AcquireRequest,
    BreakerDecision,
    BreakerInput,
    BreakerState,
    BreakerWorkflow,
    ReportRequest,
    breaker_workflow_id,
    changes,
    settled,
)

_QUERY_TIMEOUT = timedelta(seconds=10)


class BreakerActivities:
    """``breaker_acquire`` and ``breaker_report``, holding the worker's client."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def activities(self) -> list[Callable[..., Any]]:
        """The activity callables a worker registers."""
        return [self.acquire, self.report]

    @activity.defn(name=ACQUIRE_ACTIVITY)
    async def acquire(self, req: AcquireRequest) -> BreakerDecision:
        """Ask the target's breaker (starting it if needed) whether the call may go now.

        The request's id is the update's id, so a retried activity is answered once: it
        cannot take the half-open probe twice.
        """
        state = await self._peek(req.queue, req.target)
        decision = settled(state, datetime.now(UTC)) if state is not None else None
        if decision is not None:
            return decision
        return await self._client.execute_update_with_start_workflow(
            BreakerWorkflow.acquire,
            req.holder,
            start_workflow_operation=WithStartWorkflowOperation(
                BreakerWorkflow.run,
                BreakerInput(target=req.target),
                id=breaker_workflow_id(req.queue, req.target),
                task_queue=req.queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                static_summary=f"circuit breaker for {req.target}",
            ),
            id=req.id,
        )

    @activity.defn(name=REPORT_ACTIVITY)
    async def report(self, req: ReportRequest) -> None:
        """Tell the target's breaker (starting it if needed) how a task ended."""
        state = await self._peek(req.queue, req.target)
        if state is not None and not changes(state, req.success):
            return
        await self._client.start_workflow(
            BreakerWorkflow.run,
            BreakerInput(target=req.target),
            id=breaker_workflow_id(req.queue, req.target),
            task_queue=req.queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            start_signal="report",
            start_signal_args=[req],
            static_summary=f"circuit breaker for {req.target}",
        )

    async def _peek(self, queue: str, target: str) -> BreakerState | None:
        """The running breaker's state, or None when none runs (never started, ended
        idle, or terminated by an operator to reset it)."""
        handle = self._client.get_workflow_handle(breaker_workflow_id(queue, target))
        try:
            return await handle.query(
                BreakerWorkflow.state,
                reject_condition=QueryRejectCondition.NOT_OPEN,
                rpc_timeout=_QUERY_TIMEOUT,
            )
        except WorkflowQueryRejectedError:
            return None
        except RPCError as e:
            if e.status == RPCStatusCode.NOT_FOUND:
                return None
            raise
