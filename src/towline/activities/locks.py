"""The activity behind concurrency keys: how a run asks a key's lock for it.

A workflow cannot update-with-start another workflow, so the run asks through this
local activity, which uses the worker's client and starts the key's
:class:`~towline.workflows.locks.LockWorkflow` when it does not run yet.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from temporalio import activity
from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy

from towline.workflows.locks import (
    ACQUIRE_LOCK_ACTIVITY,
    AcquireLock,
    LockInput,
    LockWorkflow,
    lock_workflow_id,
)


class LockActivities:
    """``lock_acquire``, holding the worker's client."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def activities(self) -> list[Callable[..., Any]]:
        return [self.acquire]

    @activity.defn(name=ACQUIRE_LOCK_ACTIVITY)
    async def acquire(self, req: AcquireLock) -> bool:
        """Whether the key is the workstream's now (else it waits in line, and its run
        is told when it is its turn). Asking again is harmless: a holder is a holder."""
        return await self._client.execute_update_with_start_workflow(
            LockWorkflow.acquire,
            req,
            start_workflow_operation=WithStartWorkflowOperation(
                LockWorkflow.run,
                LockInput(key=req.key),
                id=lock_workflow_id(req.queue, req.key),
                task_queue=req.queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                static_summary=f"concurrency key {req.key}",
            ),
        )
