"""``towline gc``: remove what finished runs left behind, once their retention has passed.

For every run a holding has things of, Temporal is asked what it knows: whether the run
is open, and when it closed. Open runs keep everything; so do the runs whose things an
open run uses (a retry works in the workspaces of the run it retries, a rollback in those
of the run it undoes). A closed run's things of one kind go once that kind's retention has
passed since it closed; a run Temporal no longer knows (its namespace's retention is over)
is judged by when its things last changed. If Temporal cannot be asked, nothing is removed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from towline import history
from towline.retention import holdings as holdings_
from towline.retention.policy import Retention, RunFacts, removable
from towline.state import RUN_WORKFLOW, WORKSPACE_OF_MEMO

_ROLLBACK_SUFFIX = "/rollback"
_ASK_AT_ONCE = 8


@dataclass
class Report:
    """What ``gc`` removed (or, dry, would remove), and what it kept because a run is open."""

    dry_run: bool
    removed: dict[str, list[str]] = field(default_factory=dict)  # kind -> run ids
    kept_open: list[str] = field(default_factory=list)  # runs open or in use
    cache_entries: int = 0
    freed: dict[str, int] = field(default_factory=dict)  # kind -> bytes

    def as_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "removed": self.removed,
            "kept_open": sorted(self.kept_open),
            "cache_entries": self.cache_entries,
            "freed_bytes": self.freed,
        }

    def lines(self) -> list[str]:
        verb = "would remove" if self.dry_run else "removed"
        out = [
            f"{verb} the {kind} of {len(ids)} run{'s' * (len(ids) != 1)}: {', '.join(ids)}"
            for kind, ids in self.removed.items()
            if ids
        ]
        if self.cache_entries:
            out.append(f"{verb} {self.cache_entries} cache entries")
        if self.kept_open:
            out.append(f"kept the things of {len(self.kept_open)} open or in-use runs")
        freed = sum(self.freed.values())
        if freed and not self.dry_run:
            out.append(f"freed {freed / 1e6:.1f} MB")
        return out or ["nothing to remove"]


async def collect(
    client: Client,
    retention: Retention,
    *,
    dry_run: bool = False,
    holdings: Iterable[holdings_.Holding] | None = None,
    store: history.HistoryStore | None = None,
    now: float | None = None,
) -> Report:
    """Remove what the policy allows from ``holdings`` (default: this machine's)."""
    store = store or history.open_store()
    kept = list(holdings) if holdings is not None else holdings_.local_holdings(store)
    now = time.time() if now is None else now
    found = {h.kind: await asyncio.to_thread(h.runs) for h in kept}
    run_ids = sorted({rid for runs in found.values() for rid in runs})
    in_use = await _in_use(client)
    states = await _ask_temporal(client, run_ids)

    report = Report(dry_run=dry_run)
    open_runs: set[str] = set()
    for h in kept:
        gone: list[str] = []
        for rid, touched in sorted(found[h.kind].items()):
            state, closed_at = states[rid]
            facts = RunFacts(rid, state, touched, closed_at, in_use=rid in in_use)
            if state == "running" or facts.in_use:
                open_runs.add(rid)
            if removable(facts, retention.of(h.kind), now=now):
                gone.append(rid)
        if gone and not dry_run:
            before = await asyncio.to_thread(h.usage)
            for rid in gone:
                await asyncio.to_thread(h.remove, rid)
            report.freed[h.kind] = max(0, before - await asyncio.to_thread(h.usage))
        report.removed[h.kind] = gone
    report.kept_open = sorted(open_runs)
    keep_cache = retention.of("cache").total_seconds()
    report.cache_entries = await asyncio.to_thread(
        store.cache_prune, created_before=now - keep_cache, now=now, dry_run=dry_run
    )
    return report


async def _in_use(client: Client) -> set[str]:
    """Runs whose things an open run uses: retries' and rollbacks' originals."""
    query = (
        f'WorkflowType IN ("{RUN_WORKFLOW}", "RollbackWorkflow") AND ExecutionStatus = "Running"'
    )
    used: set[str] = set()
    async for wf in client.list_workflows(query):
        if wf.id.endswith(_ROLLBACK_SUFFIX):
            used.add(wf.id.removesuffix(_ROLLBACK_SUFFIX))
            continue
        memo = await wf.memo()
        if isinstance(origin := memo.get(WORKSPACE_OF_MEMO), str):
            used.add(origin)
    return used


async def _ask_temporal(client: Client, run_ids: list[str]) -> dict[str, tuple[Any, float | None]]:
    """What Temporal says of each run: running, closed (and when) or unknown."""
    limit = asyncio.Semaphore(_ASK_AT_ONCE)

    async def ask(rid: str) -> tuple[Any, float | None]:
        async with limit:
            try:
                desc = await client.get_workflow_handle(rid).describe()
            except RPCError as e:
                if e.status == RPCStatusCode.NOT_FOUND:
                    return "unknown", None
                raise
        if desc.close_time is None:  # running, or paused: open either way
            return "running", None
        return "closed", desc.close_time.timestamp()

    answers = await asyncio.gather(*(ask(rid) for rid in run_ids))
    return dict(zip(run_ids, answers, strict=True))
