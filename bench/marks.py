"""When a tool body starts running, seen from inside the worker.

``first_task`` measures from the start call to the first tool body running. Only the
worker knows that moment, so both benchmark workers (towline's and the bare one) carry
this activity interceptor. It appends ``<workflow id> <activity type> <unix time>`` to a
file for activities of workflows whose id starts with :data:`PREFIX`, and costs one
string comparison for every other activity.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

PREFIX = "first-"


class _Inbound(ActivityInboundInterceptor):
    def __init__(self, nxt: ActivityInboundInterceptor, path: Path) -> None:
        super().__init__(nxt)
        self._path = path

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        if info.workflow_id and info.workflow_id.startswith(PREFIX):
            now = time.time()
            with self._path.open("a") as f:
                f.write(f"{info.workflow_id} {info.activity_type} {now:.6f}\n")
        return await super().execute_activity(input)


class FirstBodyMarks(Interceptor):
    """A worker interceptor recording when activity bodies of ``first-*`` workflows start."""

    def __init__(self, path: Path) -> None:
        self._path = path

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Inbound(next, self._path)


def body_started(path: Path, workflow_id: str, activity_type: str) -> float | None:
    """The unix time the first ``activity_type`` body of ``workflow_id`` started, if any."""
    if not path.exists():
        return None
    for line in path.read_text().splitlines():
        wid, kind, at = line.split(" ")
        if wid == workflow_id and kind == activity_type:
            return float(at)
    return None
