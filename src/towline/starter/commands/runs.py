"""A plan and its runs: ``towline validate``, ``schema``, ``estimate``, ``run``,
``status``, ``watch``, ``list`` and ``cancel``."""

from __future__ import annotations

import argparse
import asyncio
from typing import get_args

from towline.plan.spec import PlanSpec
from towline.starter import api, local, progress
from towline.starter import args as checks
from towline.starter.commands import common
from towline.starter.registry import CONNECTION, OK, RUN, UsageError, arg, command
from towline.state import Status


@command(
    "validate",
    "check a plan and print every problem",
    arg("plan", metavar="PLAN", type=checks.plan_path),
    arg("--set", action="append", default=[], metavar="KEY=VALUE"),
)
async def _validate(args: argparse.Namespace) -> int:
    plan, _ = common.load(args.plan, args.set)
    tasks = sum(len(ws.tasks) for ws in plan.workstreams)
    ws_count = len(plan.workstreams)
    common.out().print(
        f"{args.plan}: valid ({ws_count} workstream{'s' * (ws_count != 1)}, "
        f"{tasks} task{'s' * (tasks != 1)})"
    )
    return OK


@command("schema", "print the plan file's JSON Schema (for editors)")
async def _schema(args: argparse.Namespace) -> int:
    schema = PlanSpec.model_json_schema(by_alias=True)
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "towline plan",
        **schema,
    }
    common.print_json(schema)
    return OK


@command(
    "estimate",
    "expected duration, tokens and cost per task, from history and prices",
    arg("plan", metavar="PLAN", type=checks.plan_path),
    arg("--set", action="append", default=[], metavar="KEY=VALUE"),
    arg("--json", action="store_true"),
)
async def _estimate(args: argparse.Namespace) -> int:
    from towline import history
    from towline.starter import estimate

    plan, _ = common.load(args.plan, args.set)
    store = history.open_store()
    try:
        rows = await asyncio.to_thread(estimate.for_plan, plan, store)
    except Exception as e:
        raise UsageError(f"cannot read the run history at {store.location}: {e}") from None
    if args.json:
        common.print_json(estimate.as_json(plan, rows, store.location))
        return OK
    out = common.out()
    out.print(f"plan {plan.name}: from the run history at {store.location}", markup=False)
    out.print(estimate.table(rows))
    return OK


@command(
    "run",
    "start a run of a plan",
    CONNECTION,
    arg("plan", metavar="PLAN", type=checks.plan_path),
    arg(
        "--id",
        dest="run_id",
        type=checks.new_run_id,
        help="the run id: letters, digits, '.', '_' and '-' (default: <plan name>-<6 hex>)",
    ),
    arg("--wait", action="store_true", help="follow the run live to its end"),
    arg("--json", action="store_true", help="print one JSON object on stdout"),
    arg(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a plan value, e.g. settings.max_parallel=2",
    ),
    links=True,
)
async def _run(args: argparse.Namespace) -> int:
    plan, plan_dir = common.load(args.plan, args.set)
    client = await common.client(args)
    run_id = await api.start_run(
        client, plan, plan_dir=plan_dir, task_queue=args.task_queue, run_id=args.run_id
    )
    link = local.web_ui_link(args.address, args.namespace, run_id)
    info = common.err() if args.json else common.out()
    if not args.wait:
        if args.json:
            common.print_json({"run_id": run_id, "status": "running", "web_ui": link})
        else:
            info.print(
                f"started run {run_id}\nWeb UI: {link}\nfollow it with: towline watch {run_id}"
            )
        return OK
    info.print(f"run {run_id} started; Web UI: {link}")
    state = await progress.follow(client, run_id, console=info, live=info.is_terminal)
    if args.json:
        common.print_json(common.run_json(state, link))
    else:  # a live view leaves its last frame on the screen: no second table
        common.summary(state, link, info, table=not info.is_terminal)
    return common.exit_for(state)


@command(
    "status",
    "the run, its workstreams and tasks",
    CONNECTION,
    RUN,
    arg("--json", action="store_true"),
    arg(
        "--workstream",
        action="append",
        metavar="W",
        help="the tasks of this workstream (repeat for more); a run of more than "
        f"{api.DETAIL_LIMIT} started workstreams shows only their summary otherwise",
    ),
    links=True,
)
async def _status(args: argparse.Namespace) -> int:
    client = await common.client(args)
    state = await api.get_status(client, args.run_id, workstreams=args.workstream)
    link = local.web_ui_link(args.address, args.namespace, args.run_id)
    if args.json:
        common.print_json(common.run_json(state, link))
    else:
        common.summary(state, link, common.out())
    return OK


@command("watch", "follow a running run live", CONNECTION, RUN, links=True)
async def _watch(args: argparse.Namespace) -> int:
    client = await common.client(args)
    out = common.out()
    state = await progress.follow(client, args.run_id, console=out, live=out.is_terminal)
    link = local.web_ui_link(args.address, args.namespace, args.run_id)
    common.summary(state, link, out, table=not out.is_terminal)
    return common.exit_for(state)


@command(
    "list",
    "runs, newest first",
    CONNECTION,
    arg("--status", choices=get_args(Status), help="only runs with this status"),
    arg("--label", action="append", default=[], metavar="KEY=VALUE"),
    arg("--query", help="a Temporal visibility query, e.g. 'TowlinePlan=\"x\"'"),
    arg("--limit", type=checks.positive, default=50),
    arg("--json", action="store_true"),
)
async def _list(args: argparse.Namespace) -> int:
    labels = {}
    for item in args.label:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--label {item!r}: expected KEY=VALUE")
        labels[key] = value
    client = await common.client(args)
    runs = [
        r
        async for r in api.list_runs(
            client, status=args.status, labels=labels, query=args.query, limit=args.limit
        )
    ]
    waiting = await api.waiting_for(client, [r.run_id for r in runs if r.status == "waiting"])
    if args.json:
        common.print_json(
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
        row = [r.run_id, r.plan, r.status, common.when(r.started_at), common.when(r.closed_at)]
        grid.add_row(*row, *([waiting.get(r.run_id, "")] if waiting else []))
    out = common.out()
    common.whole_rows(out, grid)
    out.print(grid if runs else "no runs")
    return OK


@command(
    "cancel", "cancel a run: running tools are stopped, their processes killed", CONNECTION, RUN
)
async def _cancel(args: argparse.Namespace) -> int:
    client = await common.client(args)
    await api.cancel_run(client, args.run_id)
    common.out().print(f"cancellation requested for run {args.run_id}")
    return OK
