"""The ``towline`` command line (CONTRACT.md): a thin layer over :mod:`towline.starter.api`.

Exit codes: 0 success, 1 a run that did not succeed, 2 invalid input, 3 no server.
The process leaves through ``os._exit`` after flushing, so its exit code never depends on
interpreter finalisation (temporalio 1.35 sometimes aborts there: sdk-python#300).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, get_args

from rich.console import Console
from temporalio.client import Client, WorkflowFailureError
from temporalio.service import RPCError, RPCStatusCode

from towline import config
from towline.catalogue import own_queue_tools
from towline.dashboard import serve as dashboard
from towline.plan.load import PlanError, load_plan
from towline.plan.spec import BudgetSpec, PlanSpec
from towline.starter import api, local, ops, progress
from towline.starter import args as checks
from towline.starter.schedules import ScheduleError
from towline.state import RunState, Status
from towline.store import StoreError, open_store
from towline.worker.client import (
    BadAddress,
    ServerUnreachable,
    UnknownNamespace,
    check_namespace,
    connect,
    has_poller,
    wait_until_serving,
)

if TYPE_CHECKING:
    from towline.worker.main import WorkerOptions

OK, NOT_SUCCEEDED, BAD_INPUT, NO_SERVER = 0, 1, 2, 3


class UsageError(Exception):
    """A bad argument: exit 2 with the message."""


def _out() -> Console:
    return Console(highlight=False, soft_wrap=True)


def _err() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


# ---------------------------------------------------------------- arguments


def _parser() -> argparse.ArgumentParser:
    # Options that fall back to an environment variable default to None here: checked
    # and filled in by args.settle, so a bad value names its variable (exit 2).
    conn = argparse.ArgumentParser(add_help=False)
    conn.add_argument(
        "--address",
        type=checks.address,
        help="Temporal frontend host:port (env TEMPORAL_ADDRESS, else the profile, else "
        f"temporal.toml; default {config.DEFAULT_ADDRESS})",
    )
    conn.add_argument(
        "--namespace",
        type=checks.name,
        help="Temporal namespace (env TEMPORAL_NAMESPACE, else the profile, else "
        f"temporal.toml; default {config.DEFAULT_NAMESPACE})",
    )
    conn.add_argument(
        "--task-queue",
        type=checks.name,
        help=f"task queue of towline's workers {checks.env_help('task_queue')}",
    )
    server = argparse.ArgumentParser(add_help=False)
    server.add_argument("--port", type=checks.port, default=7233, help="the local server's port")
    server.add_argument(
        "--ui-port", type=checks.port, default=config.DEFAULT_UI_PORT, help="Web UI port"
    )
    endpoint = argparse.ArgumentParser(add_help=False)
    endpoint.add_argument(
        "--http-port",
        type=checks.port_or_off,
        help="the worker's /metrics, /healthz and /readyz port; 0 turns it off "
        + checks.env_help("http_port"),
    )

    p = argparse.ArgumentParser(prog="towline", description="Durable automation runs on Temporal.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    prof = ops.profile_parser()

    def cmd(name: str, help: str, *parents: argparse.ArgumentParser) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help, parents=[prof, *parents])

    up_help = "start a local Temporal dev server and a worker in the background"
    up = cmd("up", up_help, conn, server, endpoint)
    up.add_argument(
        "--dashboard-port",
        type=int,
        default=dashboard.DEFAULT_PORT,
        help="serve `towline dashboard` on this port of 127.0.0.1; 0: do not (default %(default)s)",
    )
    cmd("down", "stop what `towline up` started")
    cmd("dev", "a local Temporal dev server and a worker in the foreground", conn, server, endpoint)
    w = cmd("worker", "run a worker against any Temporal server", conn, endpoint)
    w.add_argument("--max-concurrent-activities", type=checks.positive, default=100)
    w.add_argument(
        "--rate-limit",
        action="append",
        default=[],
        metavar="TOOL=PER_SECOND",
        help="cap a tool's calls per second across all workers, e.g. llm=2 (tools: "
        + ", ".join(own_queue_tools())
        + ")",
    )
    w.add_argument(
        "--http-host",
        type=checks.host,
        help="the address the HTTP endpoint listens on " + checks.env_help("http_host"),
    )
    w.add_argument(
        "--log-format",
        type=checks.log_format,
        help="text for people, json (one object a line, with run/workstream/task/attempt "
        "ids) for log pipelines " + checks.env_help("log_format"),
    )
    w.add_argument(
        "--log-level",
        type=checks.log_level,
        help="info: each task's outcome and every failed tool call; debug adds each "
        "successful tool call (also warning, error) " + checks.env_help("log_level"),
    )
    v = cmd("validate", "check a plan and print every problem")
    v.add_argument("plan", metavar="PLAN", type=checks.plan_path)
    v.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    cmd("schema", "print the plan file's JSON Schema (for editors)")
    r = cmd("run", "start a run of a plan", conn)
    r.add_argument("plan", metavar="PLAN", type=checks.plan_path)
    r.add_argument(
        "--id",
        dest="run_id",
        type=checks.new_run_id,
        help="the run id: letters, digits, '.', '_' and '-' (default: <plan name>-<6 hex>)",
    )
    r.add_argument("--wait", action="store_true", help="follow the run live to its end")
    r.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    r.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a plan value, e.g. settings.max_parallel=2",
    )
    s = cmd("status", "the run, its workstreams and tasks", conn)
    s.add_argument("run_id", metavar="RUN", type=checks.run_ref)
    s.add_argument("--json", action="store_true")
    s.add_argument(
        "--workstream",
        action="append",
        metavar="W",
        help="the tasks of this workstream (repeat for more); a run of more than "
        f"{api.DETAIL_LIMIT} started workstreams shows only their summary otherwise",
    )
    wa = cmd("watch", "follow a running run live", conn)
    wa.add_argument("run_id", metavar="RUN", type=checks.run_ref)
    li = cmd("list", "runs, newest first", conn)
    li.add_argument("--status", choices=get_args(Status), help="only runs with this status")
    li.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
    li.add_argument("--query", help="a Temporal visibility query, e.g. 'TowlinePlan=\"x\"'")
    li.add_argument("--limit", type=checks.positive, default=50)
    li.add_argument("--json", action="store_true")
    c = cmd("cancel", "cancel a run: running tools are stopped, their processes killed", conn)
    c.add_argument("run_id", metavar="RUN", type=checks.run_ref)
    for name, what in (
        ("approve", "approve a task waiting for approval"),
        ("reject", "reject a task waiting for approval (it fails)"),
        ("skip", "skip a failed task waiting for an operator"),
        ("abort", "fail a task waiting for an operator"),
        ("retry", "retry a failed task waiting for an operator"),
    ):
        a = cmd(name, what, conn)
        a.add_argument("run_id", metavar="RUN", type=checks.run_ref)
        if name == "retry":
            a.description = (
                "retry RUN TASK: retry a failed task waiting for an operator; "
                "retry RUN: a new run, linked to a finished failed run, that reuses the "
                "succeeded tasks' outputs and runs only the rest"
            )
            a.add_argument("task", metavar="TASK", nargs="?", help="workstream.task")
            a.add_argument(
                "--id",
                dest="new_id",
                type=checks.new_run_id,
                help="the new run's id (retry RUN only)",
            )
        else:
            a.add_argument("task", metavar="TASK", help="workstream.task")
        a.add_argument("--note", help="a note recorded with the answer")
        a.add_argument("--by", help="who answers (default: your user name)")
    an = cmd("answer", "answer the question an agent task asked (ask_human)", conn)
    an.add_argument("run_id", metavar="RUN", type=checks.run_ref)
    an.add_argument("task", metavar="TASK", help="workstream.task")
    an.add_argument("text", metavar="TEXT", help="the answer, sent to the agent as it is")
    an.add_argument("--by", help="who answers (default: your user name)")
    es = cmd("estimate", "expected duration, tokens and cost per task, from history and prices")
    es.add_argument("plan", metavar="PLAN", type=checks.plan_path)
    es.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    es.add_argument("--json", action="store_true")
    rb = cmd(
        "rollback", "run the rollbacks of a finished run's succeeded tasks, newest first", conn
    )
    rb.add_argument("run_id", metavar="RUN", type=checks.run_ref)
    rb.add_argument("--wait", action="store_true", help="wait for the rollbacks to finish")
    for name, what in (
        ("pause", "stop starting new tasks; running ones finish"),
        ("resume", "start scheduling tasks again"),
    ):
        pr = cmd(name, what, conn)
        pr.add_argument("run_id", metavar="RUN", type=checks.run_ref)
        pr.add_argument("--by", help="who does it (default: your user name)")
        if name == "resume":
            pr.add_argument(
                "--raise-budget",
                action="append",
                default=[],
                metavar="KEY=VALUE",
                help="new budget limits: max_cost_usd=5, max_tokens=100000",
            )
    t = cmd("tools", "the tools, with their input schemas")
    form = t.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="description, input schema, outputs")
    form.add_argument("--markdown", action="store_true", help="as Markdown (docs/tools.md)")
    lg = cmd("logs", "a task's tool output: its log artifacts, else its outputs", conn)
    lg.add_argument("run_id", metavar="RUN", type=checks.run_ref)
    lg.add_argument("task", metavar="TASK", help="workstream.task")
    nt = cmd("new-tool", "scaffold a tool's module and its integration test")
    nt.add_argument("name", metavar="NAME", help="the tool's name, e.g. slack_notify")
    nt.add_argument("--dir", default=".", help="the towline checkout to write into (default: .)")
    st = cmd("stats", "success rates, durations and cost of tool calls, from the run history")
    st.add_argument("--plan", help="only this plan's calls, per task")
    st.add_argument("--tool", help="only this tool's calls")
    st.add_argument("--json", action="store_true")
    ops.add_commands(cmd, conn)
    dashboard.add_command(cmd, conn)
    _schedule_parser(cmd("schedule", "recurring runs of a plan, on Temporal Schedules"), conn)
    return p


def _schedule_parser(sc: argparse.ArgumentParser, conn: argparse.ArgumentParser) -> None:
    """``towline schedule create|list|pause|resume|delete|trigger``."""
    from towline.starter.schedules import OVERLAP

    verbs = sc.add_subparsers(dest="verb", required=True, metavar="VERB")
    create = verbs.add_parser(
        "create", help="run PLAN at each time of a cron expression", parents=[conn]
    )
    create.add_argument("plan", metavar="PLAN")
    create.add_argument(
        "--cron",
        required=True,
        metavar="EXPR",
        help="e.g. '0 3 * * 1' (Mondays 03:00 UTC); 7 fields add seconds and years",
    )
    create.add_argument(
        "--id", dest="schedule_id", help="the schedule's id (default: the plan's name)"
    )
    create.add_argument(
        "--overlap",
        choices=sorted(OVERLAP),
        default="skip",
        help="a firing while the last run still goes: skip it (default), buffer it, ...",
    )
    create.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ls = verbs.add_parser("list", help="schedules, with their next run times", parents=[conn])
    ls.add_argument("--json", action="store_true")
    for verb, what in (
        ("pause", "stop firing until resumed"),
        ("resume", "fire again"),
        ("delete", "delete the schedule (its runs are not touched)"),
        ("trigger", "start a run now"),
    ):
        v = verbs.add_parser(verb, help=what, parents=[conn])
        v.add_argument("schedule_id", metavar="ID")
        if verb in ("pause", "resume"):
            v.add_argument("--note", help="why (shown by temporal schedule describe)")


# ---------------------------------------------------------------- helpers


async def _client(args: argparse.Namespace) -> Client:
    client = await connect(args.address, args.namespace)
    await check_namespace(client, args.address)
    return client


def _load(path: str, sets: Sequence[str]) -> tuple[PlanSpec, Path]:
    plan = load_plan(path, sets=sets)
    return plan, Path(path).resolve().parent


def run_json(state: RunState, web_ui: str) -> dict[str, Any]:
    """The contract's ``--json`` object for a run."""
    workstreams: dict[str, Any] = {}
    for wid, ws in state.workstreams.items():
        tasks: dict[str, Any] = {}
        for tid, t in ws.tasks.items():
            entry: dict[str, Any] = {
                "status": t.status,
                "attempts": t.attempts,
                "outputs": t.outputs,
            }
            if t.error is not None:
                entry["error"] = t.error.model_dump(exclude_none=True)
            if t.reason:
                entry["reason"] = t.reason
            if t.cached:
                entry["cached"] = True
            if t.waiting_for:
                entry["waiting_for"] = t.waiting_for
            if t.runs > 1:
                entry["runs"] = t.runs
            if t.fixes:
                entry["fixes"] = t.fixes
            if t.fix_outputs is not None:
                entry["fix"] = t.fix_outputs  # what the last agent fix did
            if t.decisions:
                entry["decisions"] = [
                    d.model_dump(mode="json", exclude_none=True) for d in t.decisions
                ]
            if t.rollback_error is not None:
                entry["rollback_error"] = t.rollback_error.model_dump(exclude_none=True)
            tasks[tid] = entry
        workstreams[wid] = {"status": ws.status, "tasks": tasks}
        if ws.counts and not ws.tasks:  # a wide run's summary: its tasks by status
            workstreams[wid]["counts"] = dict(ws.counts)
        if ws.reason:
            workstreams[wid]["reason"] = ws.reason
    out: dict[str, Any] = {
        "run_id": state.run_id,
        "plan": state.plan,
        "status": state.status,
        "web_ui": web_ui,
        "workstreams": workstreams,
        "usage": {"cost_usd": state.usage.cost_usd, "tokens": state.usage.tokens},
    }
    if state.reason:
        out["reason"] = state.reason
    if state.retry_of:
        out["retry_of"] = state.retry_of
    return out


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def _summary(state: RunState, link: str, console: Console, *, table: bool = True) -> None:
    if table:
        console.print(progress.table(state))
    console.print(f"Web UI: {link}")


def _exit_for(state: RunState) -> int:
    return OK if state.status == "succeeded" else NOT_SUCCEEDED


# ---------------------------------------------------------------- commands


async def _up(args: argparse.Namespace) -> int:
    from towline.worker.devserver import port_open

    out = _out()
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


async def _down(args: argparse.Namespace) -> int:
    out = _out()
    loc = local.local()
    for path, word, what in (
        (loc.dashboard_pid, "dashboard", "dashboard"),
        (loc.worker_pid, "towline", "worker"),
        (loc.server_pid, "temporal", "Temporal dev server"),
    ):
        pid = local.stop_pid(path, word)
        out.print(f"{what}: {'stopped (pid ' + str(pid) + ')' if pid else 'not running'}")
    return OK


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
        _err().print(
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


async def _validate(args: argparse.Namespace) -> int:
    plan, _ = _load(args.plan, args.set)
    tasks = sum(len(ws.tasks) for ws in plan.workstreams)
    ws_count = len(plan.workstreams)
    _out().print(
        f"{args.plan}: valid ({ws_count} workstream{'s' * (ws_count != 1)}, "
        f"{tasks} task{'s' * (tasks != 1)})"
    )
    return OK


async def _schema(args: argparse.Namespace) -> int:
    schema = PlanSpec.model_json_schema(by_alias=True)
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "towline plan",
        **schema,
    }
    _print_json(schema)
    return OK


async def _run(args: argparse.Namespace) -> int:
    plan, plan_dir = _load(args.plan, args.set)
    client = await _client(args)
    run_id = await api.start_run(
        client, plan, plan_dir=plan_dir, task_queue=args.task_queue, run_id=args.run_id
    )
    link = local.web_ui_link(args.address, args.namespace, run_id)
    info = _err() if args.json else _out()
    if not args.wait:
        if args.json:
            _print_json({"run_id": run_id, "status": "running", "web_ui": link})
        else:
            info.print(
                f"started run {run_id}\nWeb UI: {link}\nfollow it with: towline watch {run_id}"
            )
        return OK
    info.print(f"run {run_id} started; Web UI: {link}")
    state = await progress.follow(client, run_id, console=info, live=info.is_terminal)
    if args.json:
        _print_json(run_json(state, link))
    else:  # a live view leaves its last frame on the screen: no second table
        _summary(state, link, info, table=not info.is_terminal)
    return _exit_for(state)


async def _status(args: argparse.Namespace) -> int:
    client = await _client(args)
    state = await api.get_status(client, args.run_id, workstreams=args.workstream)
    link = local.web_ui_link(args.address, args.namespace, args.run_id)
    if args.json:
        _print_json(run_json(state, link))
    else:
        _summary(state, link, _out())
    return OK


async def _watch(args: argparse.Namespace) -> int:
    client = await _client(args)
    out = _out()
    state = await progress.follow(client, args.run_id, console=out, live=out.is_terminal)
    link = local.web_ui_link(args.address, args.namespace, args.run_id)
    _summary(state, link, out, table=not out.is_terminal)
    return _exit_for(state)


async def _list(args: argparse.Namespace) -> int:
    labels = {}
    for item in args.label:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--label {item!r}: expected KEY=VALUE")
        labels[key] = value
    client = await _client(args)
    runs = [
        r
        async for r in api.list_runs(
            client, status=args.status, labels=labels, query=args.query, limit=args.limit
        )
    ]
    waiting = await api.waiting_for(client, [r.run_id for r in runs if r.status == "waiting"])
    if args.json:
        _print_json(
            [
                r.__dict__ | ({"waiting_for": waiting[r.run_id]} if r.run_id in waiting else {})
                for r in runs
            ]
        )
        return OK
    from rich.table import Table

    grid = Table(show_edge=False)
    # Ids are what people copy into the next command: never cut, never folded.
    grid.add_column("run", no_wrap=True, min_width=max((len(r.run_id) for r in runs), default=3))
    for col in ("plan", "status", "started", "ended"):
        grid.add_column(col)
    if waiting:
        grid.add_column("waiting for", overflow="fold")
    for r in runs:
        row = [r.run_id, r.plan, r.status, _when(r.started_at), _when(r.closed_at)]
        grid.add_row(*row, *([waiting.get(r.run_id, "")] if waiting else []))
    out = _out()
    _whole_rows(out, grid)
    out.print(grid if runs else "no runs")
    return OK


def _whole_rows(out: Console, grid: Any) -> None:
    """On a pipe or in a file, print whole rows: widen the console to the table's width."""
    if not out.is_terminal:
        out.width = max(
            out.width, out.measure(grid, options=out.options.update_width(1000)).maximum
        )


def _when(ts: Any) -> str:
    return ts.strftime("%Y-%m-%d %H:%M:%S") if ts else ""


async def _cancel(args: argparse.Namespace) -> int:
    client = await _client(args)
    await api.cancel_run(client, args.run_id)
    _out().print(f"cancellation requested for run {args.run_id}")
    return OK


async def _tools(args: argparse.Namespace) -> int:
    from towline.activities.tools import TOOLS
    from towline.starter import tooldocs

    if args.json:
        _print_json(tooldocs.as_json(TOOLS))
        return OK
    if args.markdown:
        sys.stdout.write(tooldocs.as_markdown(TOOLS))
        return OK
    out = _out()
    for name, t in sorted(TOOLS.items()):
        out.print(f"[bold]{name}[/bold]  {t.description}")
        for f in tooldocs.fields(t.input_model):
            default = f.default if f.default == tooldocs.REQUIRED else f"default {f.default}"
            out.print(f"    {f.key} ({f.type}; {default}): {f.description}", markup=False)
    return OK


async def _logs(args: argparse.Namespace) -> int:
    from towline.starter import calls, logs

    client = await _client(args)
    state = await api.get_status(client, args.run_id)
    try:
        name, task = logs.find_task(state, args.task)
    except logs.UnknownTask as e:
        raise UsageError(str(e)) from None
    wid, tid = name.split(".", 1)
    made = await calls.task_calls(client, args.run_id, wid, tid)
    # One call (the usual case): its output as it is. Several: each under its title.
    parts = logs.call_sections(made) if len(made) > 1 else logs.sections(task)
    if not parts:
        did = "its tool printed nothing" if made else "no tool call was made"
        _err().print(f"task {name} has no output ({task.status}: {did})", markup=False)
        return OK
    sys.stdout.flush()
    out = sys.stdout.buffer
    for part in parts:
        if len(parts) > 1:
            out.write(f"==> {part.title} <==\n".encode())
        out.write(part.content if part.content.endswith(b"\n") else part.content + b"\n")
    out.flush()
    return OK


async def _new_tool(args: argparse.Namespace) -> int:
    from towline.activities.tools import TOOLS
    from towline.starter import scaffold

    try:
        written = scaffold.new_tool(args.name, Path(args.dir), registered=set(TOOLS))
    except scaffold.ScaffoldError as e:
        raise UsageError(str(e)) from None
    out = _out()
    for path in written:
        out.print(f"wrote {path}", markup=False)
    out.print(f"register it in {scaffold.REGISTRY}:", markup=False)
    for line in scaffold.registry_lines(args.name):
        out.print(f"    {line}", markup=False)
    out.print(f"then run its test: python -m pytest {written[1]}", markup=False)
    return OK


async def _stats(args: argparse.Namespace) -> int:
    from towline import history
    from towline.starter import stats

    store = history.open_store()
    try:
        summary = await asyncio.to_thread(stats.summary, store, plan=args.plan, tool=args.tool)
    except Exception as e:
        raise UsageError(f"cannot read the run history at {store.location}: {e}") from None
    if args.json:
        _print_json(summary.as_json())
        return OK
    out = _out()
    scope = "".join(f" {k} {v}" for k, v in (("for plan", args.plan), ("of tool", args.tool)) if v)
    if not summary.groups:
        out.print(f"no history yet{scope} (in {store.location})", markup=False)
        return OK
    calls = sum(g.calls + g.cached for g in summary.groups)
    out.print(
        f"{calls} tool calls{scope} from {summary.runs} runs ({store.location})", markup=False
    )
    grids = [stats.table(summary.groups)]
    if summary.agents:
        grids.append(stats.agents_table(summary.agents))
    for grid in grids:
        _whole_rows(out, grid)
        if grid is not grids[0]:
            out.print(
                f"\nagents by model; {summary.memory} past fix(es) remembered for later failures",
                markup=False,
            )
        out.print(grid)
    return OK


async def _answer(args: argparse.Namespace) -> int:
    client = await _client(args)
    if args.command == "retry" and args.task is None:
        rid = await api.retry_run(
            client, args.run_id, task_queue=args.task_queue, new_id=args.new_id
        )
        link = local.web_ui_link(args.address, args.namespace, rid)
        _out().print(
            f"started run {rid}, a retry of {args.run_id}\nWeb UI: {link}\n"
            f"follow it with: towline watch {rid}"
        )
        return OK
    done = await api.answer(
        client, args.run_id, args.task, args.command, by=args.by, note=args.note
    )
    _out().print(done)
    return OK


async def _answer_question(args: argparse.Namespace) -> int:
    client = await _client(args)
    done = await api.answer_question(client, args.run_id, args.task, args.text, by=args.by)
    _out().print(done, markup=False)
    return OK


async def _estimate(args: argparse.Namespace) -> int:
    from towline import history
    from towline.starter import estimate

    plan, _ = _load(args.plan, args.set)
    store = history.open_store()
    try:
        rows = await asyncio.to_thread(estimate.for_plan, plan, store)
    except Exception as e:
        raise UsageError(f"cannot read the run history at {store.location}: {e}") from None
    if args.json:
        _print_json(estimate.as_json(plan, rows, store.location))
        return OK
    out = _out()
    out.print(f"plan {plan.name}: from the run history at {store.location}", markup=False)
    out.print(estimate.table(rows))
    return OK


def _budget_args(items: Sequence[str]) -> BudgetSpec | None:
    if not items:
        return None
    values: dict[str, float | int] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in ("max_cost_usd", "max_tokens"):
            raise UsageError(f"--raise-budget {item!r}: expected max_cost_usd=N or max_tokens=N")
        check = checks.token_count if key == "max_tokens" else checks.amount
        try:
            values[key] = check(value)
        except argparse.ArgumentTypeError as e:
            raise UsageError(f"--raise-budget {item!r}: {e}") from None
    return BudgetSpec.model_validate(values)


async def _rollback(args: argparse.Namespace) -> int:
    client = await _client(args)
    wid = await api.rollback_run(client, args.run_id, task_queue=args.task_queue)
    out = _out()
    out.print(f"rolling back run {args.run_id} (workflow {wid})")
    if not args.wait:
        return OK
    with contextlib.suppress(WorkflowFailureError):  # the status below says what failed
        await client.get_workflow_handle(wid).result()
    state = await api.get_status(client, args.run_id)
    _summary(state, local.web_ui_link(args.address, args.namespace, args.run_id), out)
    return OK if state.status == "rolled_back" else NOT_SUCCEEDED


async def _pause(args: argparse.Namespace) -> int:
    raise_to = _budget_args(getattr(args, "raise_budget", []))
    client = await _client(args)
    if raise_to is not None:
        _out().print(await api.raise_budget(client, args.run_id, raise_to))
    change = api.pause_run if args.command == "pause" else api.resume_run
    _out().print(await change(client, args.run_id, by=args.by))
    return OK


async def _schedule(args: argparse.Namespace) -> int:
    from towline.starter import schedules

    client = await _client(args)
    out = _out()
    if args.verb == "create":
        plan, plan_dir = _load(args.plan, args.set)
        sid = await schedules.create_schedule(
            client,
            plan,
            plan_dir=plan_dir,
            cron=args.cron,
            schedule_id=args.schedule_id,
            task_queue=args.task_queue,
            overlap=args.overlap,
        )
        described = await schedules.describe_schedule(client, sid)
        after = f"; next run {_when(described.next_runs[0])} UTC" if described.next_runs else ""
        out.print(f"created schedule {sid} (plan {plan.name}, cron {args.cron}){after}")
        return OK
    if args.verb == "list":
        found = [s async for s in schedules.list_schedules(client)]
        if args.json:
            _print_json([s.__dict__ for s in found])
            return OK
        from rich.table import Table

        grid = Table(show_edge=False)
        for col in ("schedule", "plan", "cron", "state", "next runs", "last run", "skipped"):
            grid.add_column(col)
        for s in found:
            grid.add_row(
                s.schedule_id,
                s.plan,
                s.cron,
                "paused" if s.paused else "active",
                ", ".join(_when(t) for t in s.next_runs[:3]),
                s.recent_runs[-1] if s.recent_runs else "",
                str(s.skipped),
            )
        out.print(grid if found else "no schedules")
        return OK
    sid = args.schedule_id
    if args.verb == "pause":
        await schedules.pause_schedule(client, sid, note=args.note)
    elif args.verb == "resume":
        await schedules.resume_schedule(client, sid, note=args.note)
    elif args.verb == "delete":
        await schedules.delete_schedule(client, sid)
    else:
        await schedules.trigger_schedule(client, sid)
    done = {"pause": "paused", "resume": "resumed", "delete": "deleted", "trigger": "triggered"}
    out.print(f"schedule {sid} {done[args.verb]}")
    return OK


COMMANDS: dict[str, Callable[[argparse.Namespace], Coroutine[Any, Any, int]]] = {
    "approve": _answer,
    "reject": _answer,
    "skip": _answer,
    "abort": _answer,
    "retry": _answer,
    "answer": _answer_question,
    "estimate": _estimate,
    "rollback": _rollback,
    "pause": _pause,
    "resume": _pause,
    "up": _up,
    "down": _down,
    "dev": _dev,
    "worker": _worker,
    "validate": _validate,
    "schema": _schema,
    "run": _run,
    "status": _status,
    "watch": _watch,
    "list": _list,
    "cancel": _cancel,
    "tools": _tools,
    "logs": _logs,
    "new-tool": _new_tool,
    "stats": _stats,
    **ops.COMMANDS,
    **dashboard.COMMANDS,
    "schedule": _schedule,
}


# ---------------------------------------------------------------- entry point


def run_cli(argv: Sequence[str] | None = None) -> int:
    """Run one command and return its exit code (never raises for expected failures)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    err = _err()
    try:
        ops.activate_profile(argv)  # before the parser: a profile sets its defaults
        args = _parser().parse_args(argv)
    except SystemExit as e:  # argparse already printed the problem
        return OK if e.code in (0, None) else BAD_INPUT
    except config.ConfigError as e:
        err.print(f"towline: {e}", markup=False)
        return BAD_INPUT
    try:
        checks.settle(args)  # the environment's values, checked
        ops.settle_connection(args)  # then the profile's, temporal.toml's, the defaults
        return asyncio.run(COMMANDS[args.command](args))
    except PlanError as e:
        err.print(str(e), markup=False)
        return BAD_INPUT
    except (
        api.UnknownRun,
        api.RunExists,
        api.Refused,
        api.BadInput,
        checks.BadArgument,
        BadAddress,
        UnknownNamespace,
        UsageError,
        config.ConfigError,
        ScheduleError,
        StoreError,
    ) as e:
        err.print(f"towline: {e}", markup=False)
        return BAD_INPUT
    except ServerUnreachable as e:
        err.print(f"towline: {e}\n  {ops.unreachable_hint(e)}", markup=False)
        return NO_SERVER
    except api.NoWorker as e:
        err.print(f"towline: {e}", markup=False)
        return NO_SERVER
    except RPCError as e:
        code, message = _refused(e, args.address if "address" in args else None)
        err.print(f"towline: {message}", markup=False)
        return code
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        if os.environ.get("TOWLINE_DEBUG"):
            raise
        err.print(
            f"towline: unexpected error: {type(e).__name__}: {e} (set TOWLINE_DEBUG=1 for details)",
            markup=False,
        )
        return NOT_SUCCEEDED


# What the server says about a request, as input that cannot work (2); any other
# refusal (unavailable, overloaded, not allowed, timed out) is the server's (3).
_INPUT_REFUSED = (
    RPCStatusCode.INVALID_ARGUMENT,
    RPCStatusCode.NOT_FOUND,
    RPCStatusCode.ALREADY_EXISTS,
    RPCStatusCode.FAILED_PRECONDITION,
    RPCStatusCode.OUT_OF_RANGE,
)


def _refused(error: RPCError, address: str | None) -> tuple[int, str]:
    """The exit code and message for a request the Temporal server refused."""
    where = f" at {address}" if address else ""
    reason = f"{error.status.name.lower()}: {error.message}"
    if error.status in _INPUT_REFUSED:
        return BAD_INPUT, f"the Temporal server{where} rejected the request ({reason})"
    return NO_SERVER, f"the Temporal server{where} refused the request ({reason})"


def main() -> NoReturn:
    code = run_cli()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
