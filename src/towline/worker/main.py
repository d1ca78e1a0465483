"""The towline worker: the Run and Workstream workflows and every tool activity."""

from __future__ import annotations

import asyncio
import logging
import signal
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from towline.activities import tools, workspace
from towline.workflows.run import RunWorkflow
from towline.workflows.workstream import WorkstreamWorkflow

log = logging.getLogger("towline.worker")

# Pure modules the workflows import: passed through the sandbox, so each workflow run
# does not re-import them (faster first task, less memory).
_PASSTHROUGH = ("pydantic", "pydantic_core", "annotated_types", "towline")


def build_worker(
    client: Client,
    task_queue: str,
    *,
    max_concurrent_activities: int = 100,
    max_concurrent_workflow_tasks: int | None = None,
) -> Worker:
    """A worker for towline's workflows and tools on ``task_queue``."""
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[RunWorkflow, WorkstreamWorkflow],
        activities=[*tools.activities(), workspace.prepare_workspace],
        max_concurrent_activities=max_concurrent_activities,
        max_concurrent_workflow_tasks=max_concurrent_workflow_tasks,
        # Cancellation reaches a running tool on its next heartbeat; keep that prompt.
        max_heartbeat_throttle_interval=timedelta(seconds=1),
        default_heartbeat_throttle_interval=timedelta(seconds=1),
        graceful_shutdown_timeout=timedelta(seconds=10),
        workflow_runner=SandboxedWorkflowRunner(
            restrictions=SandboxRestrictions.default.with_passthrough_modules(*_PASSTHROUGH)
        ),
    )


async def run_worker(
    client: Client, task_queue: str, *, max_concurrent_activities: int = 100
) -> None:
    """Run until SIGINT or SIGTERM, then shut down gracefully (running tools finish or stop)."""
    worker = build_worker(client, task_queue, max_concurrent_activities=max_concurrent_activities)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with worker:
        log.info("worker polling task queue %r", task_queue)
        await stop.wait()
        log.info("shutting down")
