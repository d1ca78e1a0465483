"""The worker's anomaly watch: slow tool calls and jumps in a tool's failure rate, as
metrics and log lines while they happen (the rules: :mod:`towline.anomalies`).

An activity interceptor, inside the history's (a cache hit is no call), around each
tool call:

- A watcher task waits out :data:`~towline.anomalies.SLOW_FLOOR` (most calls end
  sooner, at the cost of a timer), then looks up the call's slow threshold (the p99 of
  its task's past successful calls, else its tool's, from the run history; in a thread,
  kept :data:`THRESHOLD_TTL`) and sleeps until the call passes it. If the call is still
  running then, it counts ``towline_tool_calls_over_p99_total``, raises
  ``towline_tool_calls_running_over_p99`` until the call ends, and logs a warning. The
  tool never waits for any of it.
- Each call's outcome enters its tool's window of recent outcomes; when the window's
  failure rate jumps above the tool's long-term rate in the history,
  ``towline_tool_failure_rate_jumped`` turns 1 (and a warning is logged) until it
  comes back down.

The history is a convenience here too: a store that cannot be read means no threshold
and no baseline (nothing is told), logged once per lookup.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter, Gauge
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from towline import anomalies
from towline.errors import NOT_YET
from towline.history import HistoryStore
from towline.toolcall import ToolCall, ToolContext

log = logging.getLogger("towline.anomalies")

THRESHOLD_TTL = 300.0  # seconds a looked-up threshold or baseline is reused
_KNOWN_MAX = 4096  # lookups kept before the expired ones are dropped

SLOW_RUNNING = Gauge(
    "towline_tool_calls_running_over_p99",
    "tool calls running now that have passed the p99 of their past successful calls",
    ["tool"],
)
SLOW_CALLS = Counter(
    "towline_tool_calls_over_p99",
    "tool calls that ran past the p99 of their past successful calls",
    ["tool"],
)
FAILURE_JUMPED = Gauge(
    "towline_tool_failure_rate_jumped",
    "1 while a tool's recent failure rate on this worker is far above its long-term rate",
    ["tool"],
)
FAILURE_RECENT = Gauge(
    "towline_tool_failure_ratio_recent",
    "the share of a tool's latest calls on this worker that failed",
    ["tool"],
)
FAILURE_JUMPS = Counter(
    "towline_tool_failure_rate_jumps",
    "times a tool's recent failure rate jumped above its long-term rate",
    ["tool"],
)


_RECENT = anomalies.RecentOutcomes()


@dataclass(frozen=True)
class _Known:
    value: asyncio.Future[Any]
    until: float


class AnomalyInterceptor(Interceptor):
    """Watches the tool activities named in ``tools``, against ``store``'s history."""

    def __init__(self, store: HistoryStore, tools: Collection[str]) -> None:
        self.store = store
        self.tools = frozenset(tools)
        # One window per tool for the process: its workers (shared queue, workspace
        # holder, own queues) may each run calls of one tool, and the gauges are the
        # process's.
        self.recent = _RECENT
        self._known: dict[tuple[str, ...], _Known] = {}

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Watch(next, self)

    async def threshold(self, ctx: ToolContext, tool: str) -> anomalies.SlowThreshold | None:
        """The call's slow threshold: its task's when it has enough past calls, else its
        tool's. A tool with too few calls in all has none, and its tasks are not asked."""
        tool_calls: list[float] | None = await self._cached(
            ("tool", tool), lambda: self._durations(tool)
        )
        if tool_calls is None or len(tool_calls) < anomalies.MIN_SAMPLES:
            return None
        task_key = ("task", tool, ctx.plan, ctx.workstream, ctx.task)
        own: list[float] | None = await self._cached(task_key, lambda: self._durations(tool, ctx))
        return anomalies.pick_threshold(own or [], tool_calls)

    def _durations(self, tool: str, ctx: ToolContext | None = None) -> list[float]:
        """The newest successful calls' durations, of the tool or of one task."""
        calls = self.store.latest_calls(
            tool=tool,
            plan=ctx.plan if ctx else None,
            workstream=ctx.workstream if ctx else None,
            task=ctx.task if ctx else None,
            succeeded_only=True,
            limit=anomalies.SLOW_WINDOW,
        )
        return [r.duration_s for r in calls]

    async def look_up_baseline(self, tool: str) -> None:
        await self._cached(("baseline", tool), lambda: self._baseline(tool))

    def baseline(self, tool: str) -> anomalies.FailureRate | None:
        """The tool's long-term failure rate, if it has been looked up (None: not yet)."""
        known = self._known.get(("baseline", tool))
        if known is None or not known.value.done() or known.value.cancelled():
            return None
        found: anomalies.FailureRate | None = known.value.result()
        return found

    def _baseline(self, tool: str) -> anomalies.FailureRate:
        calls = self.store.latest_calls(tool=tool, limit=anomalies.BASELINE_CALLS)
        decided = [r for r in calls if r.outcome != "cancelled"]
        return anomalies.FailureRate(sum(r.outcome == "failed" for r in decided), len(decided))

    async def _cached(self, key: tuple[str, ...], look_up: Callable[[], Any]) -> Any:
        """``look_up()`` in a thread, once per key and :data:`THRESHOLD_TTL`; the calls that
        ask meanwhile share it, and one cancelled does not cancel it for the others."""
        now = time.monotonic()
        known = self._known.get(key)
        if known is None or known.until <= now:
            if len(self._known) >= _KNOWN_MAX:  # the tasks of many runs: forget the stale
                self._known = {k: v for k, v in self._known.items() if v.until > now}
            known = _Known(
                asyncio.ensure_future(asyncio.to_thread(self._safely, look_up)), now + THRESHOLD_TTL
            )
            self._known[key] = known
        return await asyncio.shield(known.value)

    def _safely(self, look_up: Callable[[], Any]) -> Any:
        try:
            return look_up()
        except Exception as e:
            log.warning("cannot read the run history at %s: %s", self.store.location, e)
            return None


class _Watch(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, owner: AnomalyInterceptor) -> None:
        super().__init__(next)
        self._owner = owner

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        call = input.args[0] if len(input.args) == 1 else None
        if info.activity_type not in self._owner.tools or not isinstance(call, ToolCall):
            return await self.next.execute_activity(input)
        tool = info.activity_type
        started = time.monotonic()
        slow: list[anomalies.SlowThreshold] = []  # set by the watcher once the call is slow
        watcher = asyncio.create_task(self._watch(call.context, tool, started, slow))
        failed: bool | None = None
        try:
            result = await self.next.execute_activity(input)
            failed = False
            return result
        except asyncio.CancelledError:
            raise  # cancelled: nobody's failure
        except ApplicationError as e:
            failed = e.type != NOT_YET or None  # a poll that found nothing yet: no outcome
            raise
        except Exception:
            failed = True
            raise
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            if slow:
                SLOW_RUNNING.labels(tool).dec()
                activity.logger.info(
                    "tool %s ended after %.3gs, past its p99 of %.3gs",
                    tool,
                    time.monotonic() - started,
                    slow[0].p99_s,
                )
            if failed is not None:
                self._outcome(tool, failed)

    async def _watch(
        self, ctx: ToolContext, tool: str, started: float, slow: list[anomalies.SlowThreshold]
    ) -> None:
        await self._owner.look_up_baseline(tool)  # ready for this call's outcome
        # No call is slow before the floor: most calls end sooner, and never look up more.
        await asyncio.sleep(max(anomalies.SLOW_FLOOR - (time.monotonic() - started), 0.0))
        threshold = await self._owner.threshold(ctx, tool)
        if threshold is None:
            return
        await asyncio.sleep(max(threshold.seconds - (time.monotonic() - started), 0.0))
        slow.append(threshold)
        SLOW_RUNNING.labels(tool).inc()
        SLOW_CALLS.labels(tool).inc()
        of = "this task's" if threshold.scope == "task" else "the tool's"
        activity.logger.warning(
            "tool %s has run %.3gs, past the p99 of %s %d past calls (%.3gs): still running",
            tool,
            time.monotonic() - started,
            of,
            threshold.samples,
            threshold.p99_s,
        )

    def _outcome(self, tool: str, failed: bool) -> None:
        recent = self._owner.recent.add(tool, failed)
        FAILURE_RECENT.labels(tool).set(recent.ratio)
        baseline = self._owner.baseline(tool)
        if baseline is None:
            return  # the history has not answered yet: judged on the next call
        crossed = self._owner.recent.crossing(tool, anomalies.failure_rate_jumped(recent, baseline))
        if crossed is None:
            return
        FAILURE_JUMPED.labels(tool).set(1 if crossed else 0)
        if crossed:
            FAILURE_JUMPS.labels(tool).inc()
            log.warning(
                "tool %s: %d of its last %d calls failed (%.0f%%), against %.0f%% of its last "
                "%d in the history",
                tool,
                recent.failed,
                recent.calls,
                100 * recent.ratio,
                100 * baseline.ratio,
                baseline.calls,
            )
        else:
            log.info(
                "tool %s: its failure rate is back to %.0f%% of its last %d calls",
                tool,
                100 * recent.ratio,
                recent.calls,
            )
