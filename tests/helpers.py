"""Small builders shared by the tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plan(*workstreams: dict[str, Any], name: str = "test", **settings: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"version": 1, "name": name, "workstreams": list(workstreams)}
    if settings:
        out["settings"] = settings
    return out


def ws(wid: str, *tasks: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"id": wid, "tasks": list(tasks), **extra}


def echo(tid: str, **extra: Any) -> dict[str, Any]:
    return {"id": tid, "tool": "echo", **extra}


def sh(tid: str, script: str, **extra: Any) -> dict[str, Any]:
    """A shell task running ``script`` with /bin/sh, tried once unless told otherwise."""
    extra.setdefault("retry", {"max_attempts": 1})
    return {"id": tid, "tool": "shell", "with": {"command": ["sh", "-c", script]}, **extra}


def ledger_task(tid: str, ledger: Path, *, seconds: float = 0.3, **extra: Any) -> dict[str, Any]:
    """A shell task that records its start and end in ``ledger`` (one line each)."""
    script = f"echo start {tid} >> {ledger}; sleep {seconds}; echo end {tid} >> {ledger}"
    return sh(tid, script, **extra)


def max_concurrency(ledger: Path) -> int:
    running = peak = 0
    for line in ledger.read_text().splitlines():
        running += 1 if line.startswith("start") else -1
        peak = max(peak, running)
    return peak
