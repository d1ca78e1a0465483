"""The towline worker: the Run and Workstream workflows and every tool activity.

:func:`serve` is ``towline worker``: telemetry (metrics, tracing), the connection, the
worker, and its HTTP endpoint (``/metrics``, ``/healthz``, ``/readyz``), until SIGINT or
SIGTERM. :func:`build_worker` is the worker alone, for tests and benchmarks. What every
worker shares (converter, interceptors, workflows, sandbox passthrough) is one plugin,
:class:`~towline.worker.plugin.TowlinePlugin`; here each worker gets its activities.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import signal
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client, Interceptor
from temporalio.worker import UnsandboxedWorkflowRunner, Worker, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from towline import history
from towline.activities import gc, notify, tools, workspace
from towline.activities.agent import AGENT_ACTIVITIES
from towline.activities.base import Tool
from towline.activities.breakers import BreakerActivities
from towline.activities.locks import LockActivities
from towline.catalogue import own_queue_tools
from towline.config import DEFAULT_HTTP_PORT
from towline.retention import holdings, schedule
from towline.store import open_store
from towline.worker import dependencies, metrics, tracing
from towline.worker.client import check_namespace, connect
from towline.worker.http import HttpEndpoint, Probes, Readiness
from towline.worker.plugin import TowlinePlugin

log = logging.getLogger("towline.worker")

# How long /readyz waits for the Temporal server's answer.
READY_TIMEOUT = timedelta(seconds=dependencies.CHECK_TIMEOUT)


def holder_queue_for(task_queue: str) -> str:
    """A task queue of this worker's own, for calls that touch the workspaces it holds:
    ``<queue>/<host>-<pid>-<random>``, new for each process (a restarted worker holds
    nothing: its workspaces are taken over from their snapshots)."""
    host = re.sub(r"[^A-Za-z0-9.-]+", "-", socket.gethostname()) or "host"
    return f"{task_queue}/{host}-{os.getpid()}-{secrets.token_hex(3)}"


def build_workers(
    client: Client,
    task_queue: str,
    *,
    holder_queue: str | None = None,
    rates: Mapping[str, float] | None = None,
    max_concurrent_activities: int = 100,
    sandboxed: bool = False,
    registry: Mapping[str, Tool] | None = None,
) -> list[Worker]:
    """Every worker a towline worker process runs: the shared queue's, the tools' own
    queues', and (with ``holder_queue``) the one for the workspaces it holds."""
    workers = [
        build_worker(
            client,
            task_queue,
            holder_queue=holder_queue,
            max_concurrent_activities=max_concurrent_activities,
            sandboxed=sandboxed,
            registry=registry,
        )
    ]
    if holder_queue is not None:
        workers.append(
            build_holder_worker(
                client,
                holder_queue,
                max_concurrent_activities=max_concurrent_activities,
                registry=registry,
            )
        )
    workers += build_tool_workers(
        client,
        task_queue,
        rates=rates,
        max_concurrent_activities=max_concurrent_activities,
        registry=registry,
    )
    return workers


def build_worker(
    client: Client,
    task_queue: str,
    *,
    holder_queue: str | None = None,
    max_concurrent_activities: int = 100,
    max_concurrent_workflow_tasks: int | None = None,
    sandboxed: bool = False,
    registry: Mapping[str, Tool] | None = None,
    max_cached_workflows: int = 1000,
    workflows: Sequence[type] | None = None,
) -> Worker:
    """A worker for towline's workflows and tools on ``task_queue``.

    ``holder_queue``: the workspaces this worker prepares are held there (a worker of
    :func:`build_holder_worker` must poll it); without it, calls that touch them go to
    ``task_queue`` (workers that share one disk).

    towline's workflows are towline's own code (plans are data), kept deterministic by
    review and by the test suite, which runs them ``sandboxed``: there the sandbox fails
    any workflow code that reads the clock, does I/O or imports with side effects. A
    production worker skips the sandbox, whose checks cost about a quarter of the
    worker's CPU per task (bench/README.md).

    ``workflows`` replaces towline's (the upgrade test's other version of one);
    ``registry`` replaces the tools (tests give scripted ones under the real names);
    ``max_cached_workflows=0`` makes every workflow task replay its whole history, as a
    worker that has just replaced a dead one does.
    """
    registry = tools.TOOLS if registry is None else registry
    # The plugin lets towline's pure modules through a sandbox.
    runner: WorkflowRunner = SandboxedWorkflowRunner() if sandboxed else UnsandboxedWorkflowRunner()
    return Worker(
        client,
        task_queue=task_queue,
        activities=[
            *(t.activity for t in registry.values() if t.activity is not None),
            *_agent_steps(),
            workspace.prepare_workspace,
            workspace.cleanup_workspace,
            gc.collect_garbage,
            notify.notify,
            *workspace.WorkspaceActivities(holder_queue).activities(),
            *BreakerActivities(client).activities(),
            *LockActivities(client).activities(),
        ],
        plugins=[TowlinePlugin(workflows=workflows or None, registry=registry)],
        max_concurrent_activities=max_concurrent_activities,
        max_concurrent_workflow_tasks=max_concurrent_workflow_tasks,
        max_cached_workflows=max_cached_workflows,
        # Cancellation reaches a running tool on its next heartbeat; keep that prompt.
        max_heartbeat_throttle_interval=timedelta(seconds=1),
        default_heartbeat_throttle_interval=timedelta(seconds=1),
        graceful_shutdown_timeout=timedelta(seconds=10),
        workflow_runner=runner,
    )


def build_holder_worker(
    client: Client,
    holder_queue: str,
    *,
    max_concurrent_activities: int = 100,
    registry: Mapping[str, Tool] | None = None,
) -> Worker:
    """The worker for calls to the workspaces this process holds: their tools and their
    clean-up, on a task queue only this process polls (the worker-specific task queue
    pattern). It has slots of its own, so a busy shared queue never delays them."""
    registry = tools.TOOLS if registry is None else registry
    return Worker(
        client,
        task_queue=holder_queue,
        activities=[
            *(t.activity for t in registry.values() if t.activity is not None),
            *_agent_steps(),
            workspace.cleanup_workspace,
            *workspace.WorkspaceActivities(holder_queue).activities(),
        ],
        plugins=[TowlinePlugin(workflows=(), registry=registry)],
        max_concurrent_activities=max_concurrent_activities,
        max_heartbeat_throttle_interval=timedelta(seconds=1),
        default_heartbeat_throttle_interval=timedelta(seconds=1),
        graceful_shutdown_timeout=timedelta(seconds=10),
    )


def _agent_steps() -> list[Callable[..., Any]]:
    """The agent's model calls and tool calls (towline.activities.agent)."""
    return [t.activity for t in AGENT_ACTIVITIES if t.activity is not None]


def build_tool_workers(
    client: Client,
    task_queue: str,
    *,
    rates: Mapping[str, float] | None = None,
    max_concurrent_activities: int = 100,
    registry: Mapping[str, Tool] | None = None,
) -> list[Worker]:
    """Workers for the tools that have a task queue of their own (``<queue>-llm``).

    ``rates`` caps a tool's calls per second across all workers, enforced by the server
    (``max_task_queue_activities_per_second``).
    """
    registry = tools.TOOLS if registry is None else registry
    return [
        Worker(
            client,
            task_queue=f"{task_queue}-{name}",
            activities=[activity],
            plugins=[TowlinePlugin(workflows=(), registry=registry)],
            max_concurrent_activities=max_concurrent_activities,
            max_task_queue_activities_per_second=(rates or {}).get(name),
            max_heartbeat_throttle_interval=timedelta(seconds=1),
            default_heartbeat_throttle_interval=timedelta(seconds=1),
            graceful_shutdown_timeout=timedelta(seconds=10),
        )
        for name in own_queue_tools()
        if (activity := registry[name].activity) is not None
    ]


@dataclass(frozen=True)
class WorkerOptions:
    """What ``towline worker`` is told: where to connect, what to poll, where to serve."""

    address: str
    namespace: str
    task_queue: str
    max_concurrent_activities: int = 100
    http_host: str = "0.0.0.0"
    http_port: int = DEFAULT_HTTP_PORT  # 0: no HTTP endpoint
    rates: Mapping[str, float] = field(default_factory=dict)  # tool -> calls per second


async def serve(opts: WorkerOptions) -> None:
    """Run a worker with its telemetry until SIGINT or SIGTERM.

    Raises :class:`~towline.worker.client.ServerUnreachable` when Temporal cannot be
    reached, :class:`~towline.worker.client.UnknownNamespace` when it has no such
    namespace, :class:`~towline.worker.http.EndpointError` when the HTTP port cannot be
    bound, and :class:`~towline.worker.tracing.TracingConfigError` for unusable
    ``OTEL_*`` settings.
    """
    sdk = metrics.sdk_metrics_runtime() if opts.http_port else None
    traces = tracing.from_environment()
    try:
        interceptors: list[Interceptor] = [traces.interceptor] if traces else []
        client = await connect(
            opts.address,
            opts.namespace,
            runtime=sdk.runtime if sdk else None,
            interceptors=interceptors,
        )
        if sid := await schedule.install_from_environment(client, opts.task_queue):
            log.info("daily towline gc: schedule %s", sid)
        await check_namespace(client, opts.address)
        await run_worker(
            client,
            opts.task_queue,
            max_concurrent_activities=opts.max_concurrent_activities,
            http_host=opts.http_host,
            http_port=opts.http_port,
            sdk_metrics=sdk,
            rates=opts.rates,
        )
    finally:
        if traces is not None:
            traces.shutdown()


async def run_worker(
    client: Client,
    task_queue: str,
    *,
    max_concurrent_activities: int = 100,
    http_host: str = "0.0.0.0",
    http_port: int = 0,
    sdk_metrics: metrics.SdkMetrics | None = None,
    rates: Mapping[str, float] | None = None,
) -> None:
    """Run until SIGINT or SIGTERM, then shut down gracefully (running tools finish or stop).

    With ``http_port``, serve the worker's endpoint while it runs; ``sdk_metrics`` is the
    runtime ``client`` was created with, whose metrics ``/metrics`` includes.
    """
    holder_queue = holder_queue_for(task_queue)
    worker, *others = build_workers(
        client,
        task_queue,
        holder_queue=holder_queue,
        rates=rates,
        max_concurrent_activities=max_concurrent_activities,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with contextlib.AsyncExitStack() as stack:
        if http_port:
            probes = endpoint_probes(client, worker, sdk_metrics, stopping=stop.is_set)
            await stack.enter_async_context(HttpEndpoint(probes, host=http_host, port=http_port))
        await stack.enter_async_context(worker)
        for extra in others:
            await stack.enter_async_context(extra)
        log.info("worker polling task queue %r (its workspaces: %r)", task_queue, holder_queue)
        await stop.wait()
        log.info("shutting down")


def endpoint_probes(
    client: Client,
    worker: Worker,
    sdk_metrics: metrics.SdkMetrics | None,
    *,
    stopping: Callable[[], bool] = lambda: False,
) -> Probes:
    """What the HTTP endpoint reports for this worker.

    Ready means: the worker runs and polls (it is not shutting down), and its
    dependencies answer a cheap real operation within 2 s each, asked afresh on each
    ``/readyz``: the Temporal server (``GetSystemInfo``), the shared store and the run
    history (:mod:`~towline.worker.dependencies`). Not ready says which failed and why.
    """

    store = history.open_store()
    shared = open_store()
    dependencies.prepare_store(shared)

    def disk() -> dict[str, int]:
        return holdings.usage(holdings.local_holdings(store), store)

    async def page() -> tuple[bytes, str]:
        await metrics.DISK.refresh(disk)
        await dependencies.STORE_SIZE.refresh(shared)
        metrics.WORKER_READY.set(1 if (await readiness()).ready else 0)
        return await metrics.exposition(sdk_metrics), metrics.CONTENT_TYPE

    async def temporal() -> None:
        await client.workflow_service.get_system_info(
            GetSystemInfoRequest(), retry=False, timeout=READY_TIMEOUT
        )

    async def readiness() -> Readiness:
        checks = await asyncio.gather(
            dependencies.check(
                "temporal", temporal, explain=lambda r: f"the Temporal server does not answer: {r}"
            ),
            dependencies.check_store(shared),
            dependencies.check_history(store),
        )
        if not worker.is_running or stopping():
            return Readiness(False, "the worker is not polling")
        down = [c for c in checks if not c.up]
        return Readiness(not down, "; ".join(map(str, down)))

    return Probes(metrics=page, readiness=readiness)
