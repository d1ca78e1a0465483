"""The activity behind the daily ``towline gc`` (:mod:`towline.workflows.gc`)."""

from __future__ import annotations

from typing import Any

from temporalio import activity

from towline.durations import parse_duration
from towline.retention import collect, policy
from towline.workflows.gc import GC_ACTIVITY


@activity.defn(name=GC_ACTIVITY)
async def collect_garbage(inp: policy.GcInput) -> dict[str, Any]:
    """``towline gc`` on this worker's machine, with this worker's retention settings."""
    older_than = parse_duration(inp.older_than) if inp.older_than else None
    retention = policy.from_environment(older_than=older_than)
    report = await collect.collect(activity.client(), retention, dry_run=inp.dry_run)
    activity.logger.info("gc: %s", "; ".join(report.lines()))
    return report.as_json()
