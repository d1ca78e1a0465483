"""Tools and what they did: ``towline tools``, ``logs``, ``new-tool`` and ``stats``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from towline.starter import api
from towline.starter.commands import common
from towline.starter.registry import CONNECTION, OK, RUN, TASK, UsageError, arg, command


def _tools_form(p: argparse.ArgumentParser) -> None:
    form = p.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="description, input schema, outputs")
    form.add_argument("--markdown", action="store_true", help="as Markdown (docs/tools.md)")


@command("tools", "the tools, with their input schemas", _tools_form)
async def _tools(args: argparse.Namespace) -> int:
    from towline.activities.tools import TOOLS
    from towline.starter import tooldocs

    if args.json:
        common.print_json(tooldocs.as_json(TOOLS))
        return OK
    if args.markdown:
        sys.stdout.write(tooldocs.as_markdown(TOOLS))
        return OK
    out = common.out()
    for name, t in sorted(TOOLS.items()):
        out.print(f"[bold]{name}[/bold]  {t.description}")
        for f in tooldocs.fields(t.input_model):
            default = f.default if f.default == tooldocs.REQUIRED else f"default {f.default}"
            out.print(f"    {f.key} ({f.type}; {default}): {f.description}", markup=False)
    return OK


@command(
    "logs",
    "a task's tool output: its log artifacts, else its outputs",
    CONNECTION,
    RUN,
    TASK,
)
async def _logs(args: argparse.Namespace) -> int:
    from towline.starter import calls, logs

    client = await common.client(args)
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
        common.err().print(f"task {name} has no output ({task.status}: {did})", markup=False)
        return OK
    sys.stdout.flush()
    out = sys.stdout.buffer
    for part in parts:
        if len(parts) > 1:
            out.write(f"==> {part.title} <==\n".encode())
        out.write(part.content if part.content.endswith(b"\n") else part.content + b"\n")
    out.flush()
    return OK


@command(
    "new-tool",
    "scaffold a tool's module and its integration test",
    arg("name", metavar="NAME", help="the tool's name, e.g. slack_notify"),
    arg("--dir", default=".", help="the towline checkout to write into (default: .)"),
)
async def _new_tool(args: argparse.Namespace) -> int:
    from towline.activities.tools import TOOLS
    from towline.starter import scaffold

    try:
        written = scaffold.new_tool(args.name, Path(args.dir), registered=set(TOOLS))
    except scaffold.ScaffoldError as e:
        raise UsageError(str(e)) from None
    out = common.out()
    for path in written:
        out.print(f"wrote {path}", markup=False)
    out.print(f"register it in {scaffold.REGISTRY}:", markup=False)
    for line in scaffold.registry_lines(args.name):
        out.print(f"    {line}", markup=False)
    out.print(f"then run its test: python -m pytest {written[1]}", markup=False)
    return OK


@command(
    "stats",
    "success rates, durations and cost of tool calls, from the run history",
    arg("--plan", help="only this plan's calls, per task"),
    arg("--tool", help="only this tool's calls"),
    arg("--json", action="store_true"),
)
async def _stats(args: argparse.Namespace) -> int:
    from towline import history
    from towline.starter import stats

    store = history.open_store()
    try:
        summary = await asyncio.to_thread(stats.summary, store, plan=args.plan, tool=args.tool)
    except Exception as e:
        raise UsageError(f"cannot read the run history at {store.location}: {e}") from None
    if args.json:
        common.print_json(summary.as_json())
        return OK
    out = common.out()
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
        common.whole_rows(out, grid)
        if grid is not grids[0]:
            out.print(
                f"\nagents by model; {summary.memory} past fix(es) remembered for later failures",
                markup=False,
            )
        out.print(grid)
    return OK
