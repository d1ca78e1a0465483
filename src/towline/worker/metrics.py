"""Everything the worker's ``/metrics`` serves, from two sources merged into one page.

- The Temporal SDK's runtime: the SDK's own metrics (``temporal_*``: polls, task
  latencies, slots, requests) and towline's workflow metrics, which must come from the
  replay-safe ``workflow.metric_meter()`` (:mod:`towline.workflows.metrics`). The runtime
  aggregates them in Rust and serves Prometheus text on a loopback port of its own.
- ``prometheus_client``'s default registry: towline's activity-side metrics (tool calls,
  LLM tokens and cost, which need float counters the SDK meter lacks), the gauges of
  state the workflows rebuild on replay (tasks waiting, breaker states), and the
  process's own (memory, CPU, open files).

``/metrics`` appends the runtime's page to the registry's. The two never share a metric
name (``towline_*`` names are defined once, on one side), so the result is one valid
exposition. The alternative, a ``MetricBuffer`` drained into Python collectors, would
re-implement the SDK's aggregation and histogram buckets in Python and pay for every
sample in Python; reading the SDK's own exporter keeps both exact and cheap.
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import (
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from towline.worker.devserver import free_port
from towline.workflows import metrics as workflow_metrics

# Prometheus' classic text format: what both sources write, and what every Prometheus
# version reads.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SCRAPE_TIMEOUT = 5.0

# ``*_created`` series (a timestamp per label set) only double the page; Prometheus
# detects counter resets without them.
disable_created_metrics()  # type: ignore[no-untyped-call]  # prometheus_client has no hints here

TOOL_CALL_BUCKETS = (0.01, 0.05, 0.25, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600)

TOOL_CALLS = Counter(
    "towline_tool_calls",
    "tool calls (activity attempts), by outcome",
    ["tool", "status", "category"],
)
TOOL_CALL_DURATION = Histogram(
    "towline_tool_call_duration_seconds",
    "one tool call's (activity attempt's) duration",
    ["tool"],
    buckets=TOOL_CALL_BUCKETS,
)
LLM_TOKENS = Counter("towline_llm_tokens", "tokens used by tool calls", ["tool", "model"])
LLM_COST = Counter("towline_llm_cost_usd", "cost of tool calls in US dollars", ["tool", "model"])


class _WaitingCollector(Collector):
    """``towline_tasks_waiting{reason}``: tasks waiting in the workflows this worker holds."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            workflow_metrics.TASKS_WAITING,
            "tasks waiting (approval, operator, budget, breaker) in this worker's workflows",
            labels=["reason"],
        )
        for reason, count in sorted(workflow_metrics.waiting_now().items()):
            family.add_metric([reason], count)
        yield family


class _OldestWaitCollector(Collector):
    """``towline_task_wait_oldest_seconds{reason}``: how long the longest wait has lasted."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            workflow_metrics.OLDEST_WAIT,
            "how long the longest-waiting task of this worker's workflows has waited, by reason",
            labels=["reason"],
        )
        now = time.time()
        for reason, since in sorted(workflow_metrics.oldest_waits().items()):
            family.add_metric([reason], max(now - since, 0.0))
        yield family


class _BudgetCollector(Collector):
    """``towline_run_budget_used_ratio{run_id,plan}``: runs with a budget, share spent."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            workflow_metrics.BUDGET_USED,
            "the share of its budget (settings.budget) a run has spent; 1 is all of it",
            labels=["run_id", "plan"],
        )
        for run_id, plan, used in workflow_metrics.budgets_now():
            family.add_metric([run_id, plan], used)
        yield family


class _BreakerCollector(Collector):
    """``towline_breaker_state{target}``: the circuit breakers this worker holds."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            workflow_metrics.BREAKER_STATE,
            "circuit breaker state: 0 closed, 1 half-open, 2 open",
            labels=["target"],
        )
        for target, code in sorted(workflow_metrics.breakers_now().items()):
            family.add_metric([target], code)
        yield family


class _DiskCollector(Collector):
    """``towline_disk_used_bytes{kind}``: what runs' things take on this worker's machine.

    Measuring walks the workspaces and artifacts folders: :meth:`refresh` does it in a
    thread, at most every ``max_age`` seconds, so a scrape never blocks the worker's loop
    and frequent scrapes cost one walk.
    """

    def __init__(self) -> None:
        self.values: dict[str, int] = {}
        self._measured_at = float("-inf")
        self._lock = asyncio.Lock()

    async def refresh(
        self, measure: Callable[[], dict[str, int]], *, max_age: float = 30.0
    ) -> None:
        async with self._lock:
            loop = asyncio.get_running_loop()
            if loop.time() - self._measured_at < max_age:
                return
            self.values = await asyncio.to_thread(measure)
            self._measured_at = loop.time()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            DISK_USED,
            "bytes taken by runs' things on this machine: workspaces, artifacts, history, cache",
            labels=["kind"],
        )
        for kind, size in sorted(self.values.items()):
            family.add_metric([kind], size)
        yield family


DISK_USED = "towline_disk_used_bytes"
DISK = _DiskCollector()
REGISTRY.register(_WaitingCollector())
REGISTRY.register(_OldestWaitCollector())
REGISTRY.register(_BudgetCollector())
REGISTRY.register(_BreakerCollector())
REGISTRY.register(DISK)

WORKER_READY = Gauge(
    "towline_worker_ready",
    "1 while the worker polls and the Temporal server answers (as /readyz), else 0; "
    "checked on each scrape",
)


@dataclass(frozen=True)
class SdkMetrics:
    """A Temporal runtime whose metrics are served on ``address`` (loopback only)."""

    runtime: Runtime
    address: str


def sdk_metrics_runtime(*, attempts: int = 3) -> SdkMetrics:
    """A runtime exporting Prometheus text on a free loopback port, for :func:`exposition`.

    Clients and workers whose metrics should be served must be created with its runtime.
    """
    for attempt in range(attempts):
        address = f"127.0.0.1:{free_port()}"
        config = PrometheusConfig(
            bind_address=address,
            counters_total_suffix=True,
            durations_as_seconds=True,
            histogram_bucket_overrides={
                workflow_metrics.TASK_DURATION: list(workflow_metrics.TASK_DURATION_BUCKETS)
            },
        )
        try:
            runtime = Runtime(telemetry=TelemetryConfig(metrics=config))
        except ValueError:
            # Another process took the port between free_port() and the bind: try again.
            if attempt == attempts - 1:
                raise
            continue
        return SdkMetrics(runtime, address)
    raise AssertionError("unreachable")


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=SCRAPE_TIMEOUT) as resp:
        body: bytes = resp.read()
    return body


async def exposition(sdk: SdkMetrics | None) -> bytes:
    """The whole ``/metrics`` page: towline's and the process's, then the SDK's."""
    page = generate_latest(REGISTRY)
    if sdk is not None:
        sdk_page = await asyncio.to_thread(_fetch, f"http://{sdk.address}/metrics")
        if not page.endswith(b"\n"):
            page += b"\n"
        page += sdk_page
    return page
