"""The run's "current details" in the Temporal Web UI: a small markdown progress table.

Pure functions of the run's state, so the run workflow can set them on every run-level
transition (``workflow.set_current_details``) and tests can check them directly.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from towline.state import RunState, WorkstreamState

# Final statuses first, so the eye finds how far a workstream got.
_ORDER = (
    "succeeded",
    "failed",
    "skipped",
    "cancelled",
    "rolled_back",
    "running",
    "waiting",
    "pending",
)
_MAX_CELL = 120


def progress_markdown(state: RunState, *, task_counts: Mapping[str, int] | None = None) -> str:
    """One line for the run, then a row per workstream: its status, tasks and note.

    A workstream's tasks column counts its tasks by status when ``state`` holds them
    (the full status of a run); otherwise it gives the number of tasks the plan has
    for it, from ``task_counts`` (the run workflow itself only follows workstreams).
    """
    head = f"**{state.status}** · run `{state.run_id}` · plan `{_cell(state.plan)}`"
    if state.reason:
        head += f" · {_cell(state.reason)}"
    rows = ["| workstream | status | tasks | note |", "|---|---|---|---|"]
    for wid, ws in state.workstreams.items():
        tasks = _task_summary(ws, (task_counts or {}).get(wid))
        rows.append(f"| {_cell(wid)} | {ws.status} | {tasks} | {_cell(ws.reason or '')} |")
    return "\n".join([head, "", *rows])


def _task_summary(ws: WorkstreamState, planned: int | None) -> str:
    if ws.tasks:
        counts: Counter[str] = Counter(t.status for t in ws.tasks.values())
        return ", ".join(f"{counts[s]} {s}" for s in _ORDER if counts[s])
    if planned is not None:
        return f"{planned} task{'s' if planned != 1 else ''}"
    return ""


def _cell(text: str) -> str:
    """Text that stays inside one table cell: no newline, no column break, not too long."""
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= _MAX_CELL else text[: _MAX_CELL - 1] + "…"
