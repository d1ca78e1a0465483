"""The daily ``towline gc``: a Temporal Schedule starts this workflow, which runs one activity.

A workflow rather than a timer in the worker: the schedule is visible and can be paused or
triggered in the Web UI and with ``temporal schedule``, a missed day is not run twice
(overlap: skip), and the collection is retried by Temporal if its worker dies.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

from towline.retention.policy import GcInput

GC_ACTIVITY = "collect_garbage"


@workflow.defn(name="GcWorkflow")
class GcWorkflow:
    @workflow.run
    async def run(self, inp: GcInput) -> dict[str, Any]:
        result: dict[str, Any] = await workflow.execute_activity(
            GC_ACTIVITY,
            inp,
            start_to_close_timeout=timedelta(hours=1),
            retry_policy=RetryPolicy(maximum_attempts=3),
            summary="towline gc",
        )
        return result
