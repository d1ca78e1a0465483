"""The worker's interceptor: metrics, a span and log ids for every tool call, and a span
for every run and workstream.

Activity code is not replayed, so tool-call metrics go straight to ``prometheus_client``
(:mod:`towline.worker.metrics`). Spans are made only when tracing is on
(:mod:`towline.worker.tracing`); Temporal's OpenTelemetry interceptor, registered on the
client and so outside this one, has already attached the caller's span context: a tool
call's span is a child of its task's, a workstream's of its run's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from opentelemetry.trace import Status, StatusCode
from temporalio import activity, workflow
from temporalio.exceptions import ApplicationError
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    ExecuteWorkflowInput,
    Interceptor,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
)

from towline.errors import CATEGORIES, NOT_YET
from towline.state import RunInput, WorkstreamInput
from towline.toolcall import ToolCall, ToolResult
from towline.worker import metrics
from towline.worker.logs import tool_call_ids
from towline.workflows import observe


class TowlineInterceptor(Interceptor):
    """Give to the worker (``Worker(interceptors=[...])``)."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _ToolCalls(next)

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        return _WorkflowSpans


class _ToolCalls(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        call = input.args[0] if input.args else None
        if not isinstance(call, ToolCall):  # e.g. preparing a workspace
            return await self.next.execute_activity(input)
        info = activity.info()
        tool = info.activity_type
        ids: dict[str, str | int] = {
            "run_id": call.context.run_id,
            "workstream": call.context.workstream,
            "task": call.context.task,
            "attempt": info.attempt,
        }
        token = tool_call_ids.set(ids)
        started = time.monotonic()
        status, category = "failed", "system"
        attributes = {f"towline.{k}": v for k, v in ids.items()} | {"towline.tool": tool}
        try:
            with observe.span(f"tool {tool}", attributes) as span:
                try:
                    result = await self.next.execute_activity(input)
                    status, category = "succeeded", ""
                    if isinstance(result, ToolResult):
                        _count_usage(tool, call, result)
                    return result
                except ApplicationError as e:
                    category = e.type if e.type in CATEGORIES else "system"
                    if e.type == NOT_YET:  # a poll (pr with wait:): not a failure
                        status, category = "polled", ""
                    elif span is not None:
                        span.set_status(Status(StatusCode.ERROR, f"{category}: {e.message}"))
                    raise
                except asyncio.CancelledError:
                    status, category = "cancelled", "cancelled"
                    raise
                finally:
                    if span is not None:
                        span.set_attribute("towline.status", status)
        finally:
            seconds = time.monotonic() - started
            metrics.TOOL_CALLS.labels(tool, status, category).inc()
            metrics.TOOL_CALL_DURATION.labels(tool).observe(seconds)
            # A successful call is in its task's line already ("succeeded (2 attempts,
            # 1.38s)"); a failed one is news. One INFO line per tool call cost about 4%
            # of a busy worker's CPU (bench/README.md).
            activity.logger.log(
                logging.DEBUG if status == "succeeded" else logging.INFO,
                "tool %s %s in %.3gs%s",
                tool,
                status,
                seconds,
                f" ({category})" if category else "",
            )
            tool_call_ids.reset(token)


def _count_usage(tool: str, call: ToolCall, result: ToolResult) -> None:
    if not result.usage.tokens and not result.usage.cost_usd:
        return
    model = result.outputs.get("model") or call.args.get("model")
    model = model if isinstance(model, str) else ""
    metrics.LLM_TOKENS.labels(tool, model).inc(result.usage.tokens)
    metrics.LLM_COST.labels(tool, model).inc(result.usage.cost_usd)


class _WorkflowSpans(WorkflowInboundInterceptor):
    """A span around each run and each workstream (one per continue-as-new)."""

    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        arg = input.args[0] if input.args else None
        if isinstance(arg, RunInput):
            run_id = arg.run_id or workflow.info().workflow_id  # a schedule's runs: no id
            name = f"run {run_id}"
            attributes = {"towline.run_id": run_id, "towline.plan": arg.plan.name}
        elif isinstance(arg, WorkstreamInput):
            name = f"workstream {arg.spec.id}"
            attributes = {"towline.run_id": arg.run_id, "towline.workstream": arg.spec.id}
        else:
            return await super().execute_workflow(input)
        with observe.span(name, attributes) as span:
            try:
                result = await super().execute_workflow(input)
            except ApplicationError as e:
                if span is not None:
                    span.set_attribute("towline.status", "failed")
                    span.set_status(Status(StatusCode.ERROR, e.message))
                raise
            except asyncio.CancelledError:
                if span is not None:
                    span.set_attribute("towline.status", "cancelled")
                raise
            if span is not None and hasattr(result, "status"):
                span.set_attribute("towline.status", result.status)
            return result
