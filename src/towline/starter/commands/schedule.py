"""Recurring runs: ``towline schedule create|list|pause|resume|delete|trigger``, on
Temporal Schedules (towline.starter.schedules)."""

from __future__ import annotations

import argparse

from towline.starter import schedules
from towline.starter.commands import common
from towline.starter.registry import CONNECTION, OK, arg, command, options


def _verbs(sc: argparse.ArgumentParser) -> None:
    verbs = sc.add_subparsers(dest="verb", required=True, metavar="VERB")
    options(
        verbs.add_parser("create", help="run PLAN at each time of a cron expression"),
        CONNECTION,
        arg("plan", metavar="PLAN"),
        arg(
            "--cron",
            required=True,
            metavar="EXPR",
            help="e.g. '0 3 * * 1' (Mondays 03:00 UTC); 7 fields add seconds and years",
        ),
        arg("--id", dest="schedule_id", help="the schedule's id (default: the plan's name)"),
        arg(
            "--overlap",
            choices=sorted(schedules.OVERLAP),
            default="skip",
            help="a firing while the last run still goes: skip it (default), buffer it, ...",
        ),
        arg("--set", action="append", default=[], metavar="KEY=VALUE"),
    )
    options(
        verbs.add_parser("list", help="schedules, with their next run times"),
        CONNECTION,
        arg("--json", action="store_true"),
    )
    for verb, what in (
        ("pause", "stop firing until resumed"),
        ("resume", "fire again"),
        ("delete", "delete the schedule (its runs are not touched)"),
        ("trigger", "start a run now"),
    ):
        v = options(verbs.add_parser(verb, help=what), CONNECTION, arg("schedule_id", metavar="ID"))
        if verb in ("pause", "resume"):
            v.add_argument("--note", help="why (shown by temporal schedule describe)")


@command("schedule", "recurring runs of a plan, on Temporal Schedules", _verbs)
async def _schedule(args: argparse.Namespace) -> int:
    client = await common.client(args)
    out = common.out()
    if args.verb == "create":
        plan, plan_dir = common.load(args.plan, args.set)
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
        after = (
            f"; next run {common.when(described.next_runs[0])} UTC" if described.next_runs else ""
        )
        out.print(f"created schedule {sid} (plan {plan.name}, cron {args.cron}){after}")
        return OK
    if args.verb == "list":
        found = [s async for s in schedules.list_schedules(client)]
        if args.json:
            common.print_json([s.__dict__ for s in found])
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
                ", ".join(common.when(t) for t in s.next_runs[:3]),
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
