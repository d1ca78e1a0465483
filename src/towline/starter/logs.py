"""What ``towline logs RUN TASK`` shows: a task's tool output.

A task's outputs may reference artifacts: a log (``log``), a stored body, or values the
``@tool`` decorator moved out of history for their size (``{"$artifact": ref}``). Each
is read from the artifact store (``TOWLINE_STORE``, shared by workers and the CLI). A
task whose outputs reference none shows its inline output (``stdout``/``stderr``,
``text``), else the outputs as JSON; a failed task also shows its error and the tail of
what its tool printed. A task whose tool was called more than once (an operator's retry,
a fix, a rollback) shows every call, each under a title (:mod:`towline.starter.calls`).
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from typing import Any

from towline.activities.artifacts import SCHEME, read_artifact
from towline.starter.calls import Call
from towline.state import ErrorInfo, RunState, TaskState
from towline.store import StoreError
from towline.stored import stored_ref

# Outputs shown inline when no artifact is referenced, in this order.
_INLINE = ("stdout", "stderr", "text", "output")


class UnknownTask(LookupError):
    """``TASK`` names no task of the run; the message lists the ones it has."""


@dataclass(frozen=True)
class Section:
    """One piece of a task's output: where it comes from, and its content."""

    title: str
    content: bytes


def find_task(state: RunState, name: str) -> tuple[str, TaskState]:
    """The task ``workstream.task`` (or a bare task id, when only one workstream has it)."""
    every = {
        f"{w}.{t}": task for w, ws in state.workstreams.items() for t, task in ws.tasks.items()
    }
    if name in every:
        return name, every[name]
    if "." not in name:
        matches = [full for full in every if full.split(".", 1)[1] == name]
        if len(matches) == 1:
            return matches[0], every[matches[0]]
        if len(matches) > 1:
            raise UnknownTask(
                f"task '{name}' is in several workstreams of run {state.run_id}: "
                f"say which, e.g. {matches[0]}"
            )
    close = difflib.get_close_matches(name, list(every), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    listed = ", ".join(every) or "none"
    raise UnknownTask(f"unknown task '{name}' in run {state.run_id}{hint}; its tasks: {listed}")


def sections(task: TaskState) -> list[Section]:
    """The task's output, piece by piece (see the module's docstring)."""
    return sections_of(task.outputs, task.error)


def sections_of(outputs: dict[str, Any], error: ErrorInfo | None) -> list[Section]:
    """The pieces of one call's output: its artifacts, else its inline output, else its
    outputs as JSON; then, for a failed call, what it printed and its error."""
    out = [_artifact(key, ref) for key, ref in _references(outputs)]
    if not out:
        out = [
            Section(key, value.encode())
            for key in _INLINE
            if isinstance(value := outputs.get(key), str) and value
        ]
    if not out and outputs:
        out = [Section("outputs", json.dumps(outputs, indent=2).encode() + b"\n")]
    if error is not None:
        if error.output and not any(s.title.startswith("log") for s in out):
            out.append(Section("output of the failed attempt", error.output.encode()))
        text = f"{error.category}: {error.message}\n"
        out.append(Section("error", text.encode()))
    return [s for s in out if s.content.strip()]


def call_sections(calls: list[Call]) -> list[Section]:
    """One section (or one per piece) for each of several tool calls of a task, each
    titled with the call, and saying so when it printed nothing."""
    out = []
    for call in calls:
        head = f"{call.title}: {call.status}"
        if call.attempt > 1:
            head += f" (attempt {call.attempt})"
        pieces = sections_of(call.outputs, call.error)
        if not pieces:
            said = "no output yet" if call.status == "running" else "no output"
            out.append(Section(head, f"({said})\n".encode()))
        for piece in pieces:
            out.append(Section(f"{head}; {piece.title}", piece.content))
    return out


def _references(outputs: dict[str, Any]) -> list[tuple[str, str]]:
    """``(key, ref)`` for every top-level output that is, or holds, an artifact reference."""
    found = []
    for key, value in outputs.items():
        ref = stored_ref(value)
        if ref is None and isinstance(value, str) and value.startswith(SCHEME):
            ref = value
        if ref is not None:
            found.append((key, ref))
    return found


def _artifact(key: str, ref: str) -> Section:
    try:
        return Section(f"{key}: {ref}", read_artifact(ref))
    except (FileNotFoundError, ValueError, StoreError) as e:
        note = (
            f"({e}; artifacts live in the store the workers share: set TOWLINE_STORE "
            "as they have it, or TOWLINE_ARTIFACTS if they set that)\n"
        )
        return Section(f"{key}: {ref}", note.encode())
