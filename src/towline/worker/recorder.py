"""The worker's side of the run history: record every tool call, serve cached results.

An activity interceptor wraps each tool activity (an activity whose type is in the tool
registry), so no task pays for an extra activity: it times the call, records its
outcome in the history store, and, for a task with ``cache:``, returns a stored result
instead of running the tool when an identical call succeeded within the TTL. Only
successful results are stored.

The history is a convenience, never a reason for a tool to fail: a store that cannot be
read or written is logged and the tool runs as it would without it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection
from typing import Any

from prometheus_client import Counter
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from towline.activities.base import attempt_usage
from towline.errors import CATEGORIES, NOT_YET
from towline.history import HistoryStore, Outcome, ToolCallRecord, cache_key
from towline.state import Usage
from towline.toolcall import ToolCall, ToolResult

log = logging.getLogger("towline.history")

CACHE_LOOKUPS = Counter(
    "towline_result_cache_lookups",
    "lookups of a task's cache: (its stored results), by result: hit or miss",
    ["tool", "result"],
)


class HistoryInterceptor(Interceptor):
    """Records the tool activities named in ``tools`` in ``store``, and caches them."""

    def __init__(self, store: HistoryStore, tools: Collection[str]) -> None:
        self.store = store
        self.tools = frozenset(tools)

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _ToolCalls(next, self)


class _ToolCalls(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, owner: HistoryInterceptor) -> None:
        super().__init__(next)
        self._store = owner.store
        self._tools = owner.tools

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        call = input.args[0] if len(input.args) == 1 else None
        if info.activity_type not in self._tools or not isinstance(call, ToolCall):
            return await self.next.execute_activity(input)
        tool = info.activity_type
        started, clock = time.time(), time.monotonic()

        def finished(outcome: Outcome, category: str | None, **extra: Any) -> ToolCallRecord:
            ctx = call.context
            return ToolCallRecord(
                run_id=ctx.run_id,
                plan=ctx.plan,
                workstream=ctx.workstream,
                task=ctx.task,
                tool=tool,
                attempt=info.attempt,
                outcome=outcome,
                category=category,
                started_at=started,
                duration_s=time.monotonic() - clock,
                **extra,
            )

        key, ttl = None, 0.0
        if call.cache is not None:
            key, ttl = cache_key(tool, call.args, call.cache.key), call.cache.ttl.total_seconds()
            hit = await self._safely(
                "read the cache", self._store.cache_get, key, ttl_s=ttl, now=started
            )
            CACHE_LOOKUPS.labels(tool, "miss" if hit is None else "hit").inc()
            if hit is not None:
                # The tool did not run, so this call spent nothing: no usage.
                reused = ToolResult(
                    outputs=hit.result.get("outputs", {}), attempt=info.attempt, cached=True
                )
                await self._safely(
                    "record", self._store.record, finished("succeeded", None, cached=True)
                )
                return reused
        try:
            result = await self.next.execute_activity(input)
        except BaseException as e:
            if isinstance(e, ApplicationError) and e.type == NOT_YET:
                raise  # a poll that found nothing yet (pr with wait:) is not an outcome
            outcome, category = _outcome_of(e, time.monotonic() - clock)
            paid = attempt_usage.get(Usage())
            await self._safely(
                "record",
                self._store.record,
                finished(outcome, category, tokens=paid.tokens, cost_usd=paid.cost_usd),
            )
            raise
        if key is not None:
            await self._safely(
                "write the cache",
                self._store.cache_put,
                key,
                tool=tool,
                result=result.model_dump(mode="json", include={"outputs"}),
                ttl_s=ttl,
                now=time.time(),
            )
        usage = attempt_usage.get(Usage())  # this attempt's own (result.usage may carry more)
        await self._safely(
            "record",
            self._store.record,
            finished("succeeded", None, tokens=usage.tokens, cost_usd=usage.cost_usd),
        )
        return result

    async def _safely(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a store operation in a thread; on failure, log it and return None.

        A cancel of the tool call landing meanwhile is absorbed: the tool has already
        done its work (or failed), and that outcome, not "cancelled", must reach the
        workflow, or a tool that changed things would be taken for one that never ran.
        """
        op = asyncio.ensure_future(asyncio.to_thread(fn, *args, **kwargs))
        while True:
            try:
                return await asyncio.shield(op)
            except asyncio.CancelledError:
                if op.done():
                    break
            except Exception as e:
                log.warning("cannot %s in the run history at %s: %s", what, self._store.location, e)
                return None
        try:
            return op.result()
        except Exception as e:
            log.warning("cannot %s in the run history at %s: %s", what, self._store.location, e)
            return None


def _outcome_of(error: BaseException, elapsed: float) -> tuple[Outcome, str]:
    """How a tool call that raised ``error`` after ``elapsed`` seconds ended, and its
    error category."""
    if isinstance(error, asyncio.CancelledError):
        details = activity.cancellation_details()
        limit = activity.info().start_to_close_timeout
        # The server times an attempt out; the worker hears of it as "not found" on the
        # next heartbeat (or as timed_out when the SDK says so).
        timed_out = details is not None and (
            details.timed_out
            or (details.not_found and limit is not None and elapsed >= limit.total_seconds())
        )
        return ("failed", "timeout") if timed_out else ("cancelled", "cancelled")
    if isinstance(error, ApplicationError):
        return "failed", error.type if error.type in CATEGORIES else "system"
    return "failed", "system"
