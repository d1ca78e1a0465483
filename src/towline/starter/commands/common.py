"""What several commands share: the consoles, the connection, loading a plan, and how a
run is shown (its table, its ``--json`` object, its exit code)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from temporalio.client import Client

from towline.plan.load import load_plan
from towline.plan.spec import PlanSpec
from towline.starter import progress
from towline.starter.registry import NOT_SUCCEEDED, OK
from towline.state import RunState
from towline.worker.client import check_namespace, connect


def out() -> Console:
    return Console(highlight=False, soft_wrap=True)


def err() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


async def client(args: argparse.Namespace) -> Client:
    """A client for the command's ``--address`` and ``--namespace``, which must exist."""
    made = await connect(args.address, args.namespace)
    await check_namespace(made, args.address)
    return made


def load(path: str, sets: Sequence[str]) -> tuple[PlanSpec, Path]:
    """The plan at ``path`` with ``--set`` values applied, and its folder."""
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
    obj: dict[str, Any] = {
        "run_id": state.run_id,
        "plan": state.plan,
        "status": state.status,
        "web_ui": web_ui,
        "workstreams": workstreams,
        "usage": {"cost_usd": state.usage.cost_usd, "tokens": state.usage.tokens},
    }
    if state.reason:
        obj["reason"] = state.reason
    if state.retry_of:
        obj["retry_of"] = state.retry_of
    return obj


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def summary(state: RunState, link: str, console: Console, *, table: bool = True) -> None:
    if table:
        console.print(progress.table(state))
    console.print(f"Web UI: {link}")


def exit_for(state: RunState) -> int:
    return OK if state.status == "succeeded" else NOT_SUCCEEDED


def whole_rows(console: Console, grid: Any) -> None:
    """On a pipe or in a file, print whole rows: widen the console to the table's width."""
    if not console.is_terminal:
        console.width = max(
            console.width,
            console.measure(grid, options=console.options.update_width(1000)).maximum,
        )


def when(ts: Any) -> str:
    return ts.strftime("%Y-%m-%d %H:%M:%S") if ts else ""
