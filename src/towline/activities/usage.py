"""Every paid attempt of a tool call counted once, however the attempt ends.

Temporal hands a workflow only the last outcome of an activity: the failures of attempts
it retried are gone, and a call cancelled while it waits to retry hands over nothing at
all. So a tool call's spending reaches its workflow three ways:

- an attempt that succeeds returns what it spent in its result, together with what
  earlier attempts left unreported (they died: a killed worker, a timeout);
- an attempt that fails or is cancelled after paying tells its workflow at once, with
  the ``tool_usage`` signal, keyed by activity id and attempt so a signal delivered twice
  counts once; if that signal cannot be sent, the failure carries the usage instead;
- heartbeats carry what is still unreported, so the next attempt (or the timeout the
  workflow sees) reports what a dead attempt spent.
"""

from __future__ import annotations

import logging
from typing import Any

from temporalio import activity

from towline.state import TOOL_USAGE_SIGNAL, Usage, UsageReport
from towline.toolcall import ToolContext

log = logging.getLogger("towline.worker")


def _paid(usage: Usage) -> bool:
    return bool(usage.tokens or usage.cost_usd)


def carried_over(info: activity.Info) -> Usage:
    """What earlier attempts of this call spent and never reported (the second detail of
    the last heartbeat Temporal kept for the call)."""
    beat = info.heartbeat_details
    if len(beat) > 1 and isinstance(beat[1], dict):
        try:
            return Usage.model_validate(beat[1])
        except ValueError:
            return Usage()
    return Usage()


class Meter:
    """One attempt's spending, and what it still has to report."""

    def __init__(self, info: activity.Info) -> None:
        self.carried = carried_over(info)
        self.spent = Usage()  # by this attempt
        self.reported = False

    @property
    def unreported(self) -> Usage:
        return Usage() if self.reported else self.carried.add(self.spent)

    def heartbeat_detail(self) -> dict[str, Any] | None:
        """The usage detail of a heartbeat (None: nothing to carry over)."""
        left = self.unreported
        return left.model_dump() if _paid(left) else None

    async def report(self, ctx: ToolContext) -> bool:
        """Tell the workflow what is unreported, now (the attempt failed or was
        cancelled). False when the signal could not be sent: the caller puts the usage in
        the failure instead."""
        left = self.unreported
        if not _paid(left):
            return True
        info = activity.info()
        report = UsageReport(
            workstream=ctx.workstream,
            task=ctx.task,
            key=f"{info.activity_id}#{info.attempt}",
            usage=left,
        )
        try:
            handle = activity.client().get_workflow_handle(info.workflow_id or "")
            await handle.signal(TOOL_USAGE_SIGNAL, report)
        except Exception as e:
            log.warning("could not report the usage of %s to its workflow: %s", ctx.task, e)
            return False
        self.reported = True
        return True
