"""Running towline: ``towline up``, ``down``, ``dev`` and ``worker``."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

from temporalio.client import Client

from towline.catalogue import own_queue_tools
from towline.dashboard.serve import DEFAULT_PORT as DASHBOARD_PORT
from towline.starter import args as checks
from towline.starter import local
from towline.starter.commands import common
from towline.starter.registry import (
    CONNECTION,
    ENDPOINT,
    LOCAL_SERVER,
    OK,
    UsageError,
    arg,
    command,
)
from towline.store import open_store
from towline.worker.client import has_poller, wait_until_serving

if TYPE_CHECKING:
    from towline.worker.main import WorkerOptions


@command(
    "up",
    "start a local Temporal dev server and a worker in the background",
    CONNECTION,
    LOCAL_SERVER,
    ENDPOINT,
    arg(
        "--dashboard-port",
        type=int,
        default=DASHBOARD_PORT,
        help="serve `towline dashboard` on this port of 127.0.0.1; 0: do not (default %(default)s)",
    ),
    connection="local",
)
async def _up(args: argparse.Namespace) -> int:
    from towline.worker.devserver import port_open

    out = common.out()
    address = f"127.0.0.1:{args.port}"
    _, new = local.start_server(args.port, args.ui_port)
    where = f"localhost:{args.port}, Web UI {local.ui_url_for(address)}"
    out.print(f"Temporal dev server {'started' if new else 'already running'} ({where})")
    client = await wait_until_serving(address, args.namespace)
    if args.http_port and not local.worker_running() and port_open("127.0.0.1", args.http_port):
        raise UsageError(
            f"port {args.http_port} (the worker's /metrics) is in use; "
            "pass --http-port with a free port, or 0 to turn the endpoint off"
        )
    wpid, wnew = local.start_worker(
        address, args.namespace, args.task_queue, http_port=args.http_port
    )
    await _wait_for_poller(client, args.task_queue)
    out.print(
        f"worker {'started' if wnew else 'already running'} (pid {wpid}, "
        f"task queue {args.task_queue}); logs in {local.local().root}"
    )
    if args.http_port and wnew:
        out.print(f"worker metrics: http://localhost:{args.http_port}/metrics")
    if args.dashboard_port:
        dash = await asyncio.to_thread(_start_dashboard, address, args)
        out.print(f"dashboard: {dash} (the link holds the token that answering needs)")
    out.print("stop them with: towline down")
    return OK


def _start_dashboard(address: str, args: argparse.Namespace) -> str:
    from towline.worker.devserver import port_open

    if not local.dashboard_running() and port_open("127.0.0.1", args.dashboard_port):
        raise UsageError(
            f"port {args.dashboard_port} (the dashboard) is in use; "
            "pass --dashboard-port with a free port, or 0 not to start it"
        )
    try:
        return local.start_dashboard(address, args.namespace, args.dashboard_port)[2]
    except RuntimeError as e:
        raise UsageError(str(e)) from None


async def _wait_for_poller(client: Client, task_queue: str, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if await has_poller(client, task_queue):
            return
        await asyncio.sleep(0.2)
    raise UsageError(
        f"the worker did not start polling within {timeout:g}s; see {local.local().root}/worker.log"
    )


@command("down", "stop what `towline up` started")
async def _down(args: argparse.Namespace) -> int:
    out = common.out()
    loc = local.local()
    for path, word, what in (
        (loc.dashboard_pid, "dashboard", "dashboard"),
        (loc.worker_pid, "towline", "worker"),
        (loc.server_pid, "temporal", "Temporal dev server"),
    ):
        pid = local.stop_pid(path, word)
        out.print(f"{what}: {'stopped (pid ' + str(pid) + ')' if pid else 'not running'}")
    return OK


@command(
    "dev",
    "a local Temporal dev server and a worker in the foreground",
    CONNECTION,
    LOCAL_SERVER,
    ENDPOINT,
    connection="local",
)
async def _dev(args: argparse.Namespace) -> int:
    from towline.worker import devserver, logs
    from towline.worker.main import WorkerOptions

    loc = local.local()
    loc.root.mkdir(parents=True, exist_ok=True)
    opts = devserver.DevServerOptions(
        port=args.port, ui_port=args.ui_port, db_filename=loc.root / "temporal.db"
    )
    proc = devserver.start(opts, log=loc.root / "server.log")
    local.record_server(proc.pid, args.port, args.ui_port)
    try:
        await wait_until_serving(f"127.0.0.1:{args.port}", args.namespace)
        metrics = f", metrics on :{args.http_port}" if args.http_port else ""
        common.err().print(
            f"Temporal dev server on localhost:{args.port}, "
            f"Web UI http://localhost:{args.ui_port}; "
            f"worker on task queue {args.task_queue}{metrics}. Ctrl-C stops both."
        )
        logs.configure("text")
        await _serve_worker(
            WorkerOptions(
                address=f"127.0.0.1:{args.port}",
                namespace=args.namespace,
                task_queue=args.task_queue,
                http_host="127.0.0.1",
                http_port=args.http_port,
            )
        )
    finally:
        devserver.stop(proc)
        local.forget_server(proc.pid)
    return OK


@command(
    "worker",
    "run a worker against any Temporal server",
    CONNECTION,
    ENDPOINT,
    arg("--max-concurrent-activities", type=checks.positive, default=100),
    arg(
        "--rate-limit",
        action="append",
        default=[],
        metavar="TOOL=PER_SECOND",
        help="cap a tool's calls per second across all workers, e.g. llm=2 (tools: "
        + ", ".join(own_queue_tools())
        + ")",
    ),
    arg(
        "--http-host",
        type=checks.host,
        help="the address the HTTP endpoint listens on " + checks.env_help("http_host"),
    ),
    arg(
        "--log-format",
        type=checks.log_format,
        help="text for people, json (one object a line, with run/workstream/task/attempt "
        "ids) for log pipelines " + checks.env_help("log_format"),
    ),
    arg(
        "--log-level",
        type=checks.log_level,
        help="info: each task's outcome and every failed tool call; debug adds each "
        "successful tool call (also warning, error) " + checks.env_help("log_level"),
    ),
)
async def _worker(args: argparse.Namespace) -> int:
    from towline.worker import logs
    from towline.worker.main import WorkerOptions

    opts = WorkerOptions(
        address=args.address,
        namespace=args.namespace,
        task_queue=args.task_queue,
        max_concurrent_activities=args.max_concurrent_activities,
        rates=_rates(args.rate_limit),
        http_host=args.http_host,
        http_port=args.http_port,
    )
    logs.configure(args.log_format, level=args.log_level.upper())
    await _serve_worker(opts)
    return OK


def _rates(items: Sequence[str]) -> dict[str, float]:
    rates: dict[str, float] = {}
    for item in items:
        tool, sep, value = item.partition("=")
        if not sep or tool not in own_queue_tools():
            known = ", ".join(own_queue_tools())
            raise UsageError(
                f"--rate-limit {item!r}: expected TOOL=PER_SECOND, TOOL one of {known}"
            )
        try:
            rates[tool] = checks.rate(value)
        except argparse.ArgumentTypeError as e:
            raise UsageError(f"--rate-limit {item!r}: {e}") from None
    return rates


async def _serve_worker(opts: WorkerOptions) -> None:
    """``towline worker``'s work; a port in use or bad ``OTEL_*`` settings are bad input."""
    from towline.worker.http import EndpointError
    from towline.worker.main import serve
    from towline.worker.tracing import TracingConfigError

    open_store().check()  # a store the worker cannot use is bad input: say so at once
    try:
        await serve(opts)
    except (EndpointError, TracingConfigError) as e:
        raise UsageError(str(e)) from None
