"""Showing a run to a person: a live table on a terminal, plain lines elsewhere."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text
from temporalio.client import Client

from towline import estimates
from towline.starter import api, views
from towline.state import FINISHED, RunState, WorkstreamState

log = logging.getLogger("towline.progress")

REFRESH_SECONDS = 1.0
_STYLE = {
    "pending": "dim",
    "waiting": "yellow",
    "running": "cyan",
    "succeeded": "green",
    "failed": "bold red",
    "skipped": "dim",
    "cancelled": "magenta",
    "rolled_back": "magenta",
}


def _elapsed(start: datetime | None, end: datetime | None) -> str:
    if start is None:
        return ""
    return _seconds(((end or datetime.now(UTC)) - start).total_seconds())


def _seconds(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def table(state: RunState, *, eta: str = "") -> Table:
    """The run as a table: one row per task, grouped by workstream."""
    title = Text.assemble(
        ("run ", "bold"),
        (state.run_id, "bold"),
        "  ",
        (state.status, _STYLE.get(state.status, "")),
        f"  {_elapsed(state.started_at, state.ended_at)}",
        (f"  {eta}" if eta else "", "dim"),
        (f"  for {views.waits_in_words(state)}" if state.status == "waiting" else "", "yellow"),
    )
    grid = Table(title=title, title_justify="left", expand=False, show_edge=False)
    grid.add_column("task")
    grid.add_column("status")
    grid.add_column("attempts", justify="right")
    grid.add_column("time", justify="right")
    grid.add_column("note", overflow="fold", max_width=70)
    shown = state.workstreams
    if len(shown) > WIDE:
        shown = _summarise(state, grid)
    for wid, ws in shown.items():
        grid.add_row(
            Text(wid, style="bold"),
            Text(ws.status, style=_STYLE.get(ws.status, "")),
            "",
            _elapsed(ws.started_at, ws.ended_at),
            ws.reason or "",
        )
        for tid, t in ws.tasks.items():
            grid.add_row(
                f"  {tid}",
                Text(t.status, style=_STYLE.get(t.status, "")),
                str(t.attempts or ""),
                _elapsed(t.started_at, t.ended_at),
                views.task_note(state.run_id, f"{wid}.{tid}", t),
            )
    return grid


# Workstreams beyond which the table shows counts by status, and only the workstreams a
# person should look at (waiting, failed, running), not every row.
WIDE = 40
_SHOWN = 15


def _summarise(state: RunState, grid: Table) -> dict[str, WorkstreamState]:
    """Rows for the counts; the workstreams worth a row of their own."""
    counts = Counter(ws.status for ws in state.workstreams.values())
    grid.add_row(
        Text(f"{len(state.workstreams)} workstreams", style="bold"),
        ", ".join(f"{n} {s.replace('_', ' ')}" for s, n in counts.most_common()),
        "",
        "",
        f"their tasks: towline status {state.run_id} --workstream W",
    )
    rank = {"waiting": 0, "failed": 1, "rolled_back": 1, "running": 2}
    worth = sorted(
        (w for w, ws in state.workstreams.items() if ws.status in rank),
        key=lambda w: rank[state.workstreams[w].status],
    )
    return {w: state.workstreams[w] for w in worth[:_SHOWN]}


def transitions(before: RunState | None, after: RunState) -> list[str]:
    """Plain lines for what changed, for logs and pipes."""
    lines = []
    old: dict[str, str] = {}
    if before is not None:
        old = {wid: w.status for wid, w in before.workstreams.items()}
        old.update(
            {
                f"{wid}.{tid}": t.status
                for wid, w in before.workstreams.items()
                for tid, t in w.tasks.items()
            }
        )
    for wid, ws in after.workstreams.items():
        ws_line = []
        if old.get(wid, "pending") != ws.status:
            ws_line.append(
                f"workstream {wid}: {ws.status}" + (f" ({ws.reason})" if ws.reason else "")
            )
        task_lines = []
        for tid, t in ws.tasks.items():
            if old.get(f"{wid}.{tid}", "pending") != t.status:
                note = views.task_note(after.run_id, f"{wid}.{tid}", t)
                task_lines.append(f"task {wid}.{tid}: {t.status}" + (f" ({note})" if note else ""))
        # A workstream that ended is reported after the tasks that ended it.
        lines += task_lines + ws_line if ws.status in FINISHED else ws_line + task_lines
    return lines


async def follow(client: Client, run_id: str, *, console: Console, live: bool) -> RunState:
    """Show the run until it ends, redrawn every second; return its final status."""
    handle = client.get_workflow_handle(run_id)
    done: asyncio.Task[Any] = asyncio.create_task(api.wait_closed(handle))
    state: RunState | None = None
    display = Live(console=console, auto_refresh=False) if live else None
    eta = await _eta(client, run_id) if live else None
    try:
        if display is not None:
            display.start()
        while True:
            await asyncio.wait({done}, timeout=REFRESH_SECONDS)
            new = await api.get_status(client, run_id)
            if display is not None:
                display.update(table(new, eta=eta(new) if eta else ""), refresh=True)
            else:
                for line in transitions(state, new):
                    console.print(line, highlight=False, markup=False)
            state = new
            if done.done() and state.status in FINISHED:
                return state
    finally:
        if display is not None:
            display.stop()
        if not done.done():
            done.cancel()
        elif not done.cancelled():
            done.exception()  # a failed run is reported through its status, not raised


def estimable(state: RunState) -> bool:
    """Whether an ETA means anything now: something runs and nothing waits (the end of a
    wait for a person, a budget or a breaker cannot be foreseen)."""
    tasks = [t for ws in state.workstreams.values() for t in ws.tasks.values()]
    return any(t.status == "running" for t in tasks) and not any(
        t.status == "waiting" for t in tasks
    )


async def _eta(client: Client, run_id: str) -> Callable[[RunState], str] | None:
    """What turns the run's state into "ETA ~3m10s", from the run history (the method is
    in :mod:`towline.estimates`); None when the history cannot be read."""
    try:
        plan = (await api.run_input(client, run_id)).plan
        known = await asyncio.to_thread(estimates.load_estimates, plan)
    except Exception as e:  # the ETA is a nicety: follow the run without it
        log.debug("no ETA for run %s: %s", run_id, e)
        return None

    def text(state: RunState) -> str:
        if not estimable(state):
            return ""
        left = estimates.eta(plan, state, known, now=datetime.now(UTC))
        if left is None:
            return ""
        unknown = f" (+{left.unknown} tasks with no history)" if left.unknown else ""
        return f"ETA ~{_seconds(left.seconds)}{unknown}"

    return text
