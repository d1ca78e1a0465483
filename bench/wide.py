"""Wide runs: one run across many repositories (``wide_1000``, ``wide_5000``).

Towline: one run of ``n`` workstreams of two chained ``echo`` tasks, with
``max_parallel_workstreams`` at its default (100). Bare: ``BareWide``, a parent workflow
starting ``n`` child workflows of two activities, 100 at a time (an
``asyncio.Semaphore`` in the parent), so both sides keep the same number of workstreams in
flight. The repetitions compared are timed alone; then one more towline run is timed
with ``towline status`` called every few seconds while it is in flight (the API, then
the CLI as a new process) and once after it has ended.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bench import scenarios
from bench.scenarios import Bench, WideResult
from towline.plan.spec import DEFAULT_MAX_PARALLEL_WORKSTREAMS

RATIO_GOAL = 1.3
HISTORY_GOAL = 10_240
WORKFLOW_TASK_GOAL_MS = 200.0
STATUS_GOAL_MS = 2000.0
STEPS = 2


@dataclass
class Wide:
    workstreams: int
    towline: list[WideResult] = field(default_factory=list)
    bare: list[WideResult] = field(default_factory=list)
    probed: WideResult | None = None  # the run whose status was timed
    towline_cpu_s: list[float] = field(default_factory=list)  # worker + server
    bare_cpu_s: list[float] = field(default_factory=list)
    peak_rss_mb: float | None = None  # the towline worker's, over all its runs here
    probed_is_timed: bool = False  # the probed run is the one compared with bare
    # Bare continuing-as-new as the run does: what its longest workflow task is then.
    bare_continued: WideResult | None = None

    @property
    def name(self) -> str:
        return f"wide_{self.workstreams}"  # as issue 11 names them: wide_1000, wide_5000

    def seconds(self) -> tuple[float, float, float]:
        t = statistics.median(r.seconds for r in self.towline)
        b = statistics.median(r.seconds for r in self.bare)
        return t, b, t / b

    def towline_runs(self) -> list[WideResult]:
        extra = [self.probed] if self.probed and not self.probed_is_timed else []
        return self.towline + extra


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def measure(b: Bench, n: int, reps: int, *, every: float, probe_alone: bool = True) -> Wide:
    """``reps`` repetitions of each side, alternating, then one towline run probed.

    ``probe_alone=False`` (a run of minutes): one bare run and the probed towline run
    only, that one compared with bare.
    """
    w = Wide(n)
    limit = DEFAULT_MAX_PARALLEL_WORKSTREAMS
    sides: list[tuple[str, Callable[[], Awaitable[WideResult]], list[WideResult], Any]] = [
        ("towline", lambda: scenarios.towline_wide(b, n, STEPS), w.towline, w.towline_cpu_s),
        ("bare", lambda: scenarios.bare_wide(b, n, STEPS, limit), w.bare, w.bare_cpu_s),
    ]
    b.towline_worker.reset_peak_rss()
    if not probe_alone:
        sides = sides[1:]
        reps = 1
    for i in range(reps):
        for label, side, out, cpu in sides[i % 2 :] + sides[: i % 2]:
            worker = b.towline_worker if label == "towline" else b.bare_worker
            before = worker.cpu_seconds() + b.server.cpu_seconds()
            result = await side()
            cpu.append(worker.cpu_seconds() + b.server.cpu_seconds() - before)
            out.append(result)
            _say(
                f"  {w.name} {label} #{i + 1}: {result.seconds:.1f} s, history"
                f" {result.max_history_events} events in {result.run_executions} run(s),"
                f" longest workflow task {result.longest_workflow_task_ms:.0f} ms"
            )
    if probe_alone:
        w.bare_continued = c = await scenarios.bare_wide(b, n, STEPS, limit, continued=True)
        _say(
            f"  {w.name} bare continuing-as-new: {c.seconds:.1f} s, history"
            f" {c.max_history_events} events in {c.run_executions} run(s), longest workflow"
            f" task {c.longest_workflow_task_ms:.0f} ms"
        )
    before = b.towline_worker.cpu_seconds() + b.server.cpu_seconds()
    w.probed = await scenarios.towline_wide(b, n, STEPS, address=b.address, every=every)
    used = b.towline_worker.cpu_seconds() + b.server.cpu_seconds() - before
    w.peak_rss_mb = b.towline_worker.peak_rss_mb()
    if not probe_alone:  # its CPU includes answering the status calls
        w.towline.append(w.probed)
        w.towline_cpu_s.append(used)
        w.probed_is_timed = True
    st = w.probed.status
    assert st is not None
    _say(
        f"  {w.name} towline with status probes: {w.probed.seconds:.1f} s; status"
        f" in flight api {_ms(st.api_ms)}, cli {_ms(st.cli_ms)}"
    )
    return w


def _ms(xs: list[float]) -> str:
    if not xs:
        return "none (the run ended before the first probe)"
    return f"median {statistics.median(xs):.0f} ms, max {max(xs):.0f} ms ({len(xs)} calls)"


def document(w: Wide) -> dict[str, Any]:
    t, b, ratio = w.seconds()
    runs = w.towline_runs()
    st = w.probed.status if w.probed else None
    out: dict[str, Any] = {
        "workstreams": w.workstreams,
        "tasks_per_workstream": STEPS,
        "max_parallel_workstreams": DEFAULT_MAX_PARALLEL_WORKSTREAMS,
        "towline": t,
        "bare": b,
        "ratio": ratio,
        "towline_samples": [r.seconds for r in w.towline],
        "bare_samples": [r.seconds for r in w.bare],
        "towline_cpu_s": statistics.median(w.towline_cpu_s),
        "bare_cpu_s": statistics.median(w.bare_cpu_s),
        "max_history_events": max(r.max_history_events for r in runs),
        "run_executions": max(r.run_executions for r in runs),
        "longest_workflow_task_ms": max(r.longest_workflow_task_ms for r in runs),
        "bare_max_history_events": max(r.max_history_events for r in w.bare),
        "bare_longest_workflow_task_ms": max(r.longest_workflow_task_ms for r in w.bare),
        "worker_peak_rss_mb": w.peak_rss_mb,
    }
    if (c := w.bare_continued) is not None:
        out["bare_continued"] = {
            "seconds": c.seconds,
            "executions": c.run_executions,
            "max_history_events": c.max_history_events,
            "longest_workflow_task_ms": c.longest_workflow_task_ms,
        }
    if w.probed and st:
        out["probed_run_seconds"] = w.probed.seconds
        out["status_in_flight_api_ms"] = st.api_ms
        out["status_in_flight_cli_ms"] = st.cli_ms
        out["status_ended_api_ms"] = st.ended_api_ms
        out["status_ended_cli_ms"] = st.ended_cli_ms
    return out


def markdown(w: Wide) -> list[str]:
    """Lines for a results file: the comparison, then the run's own figures."""
    doc = document(w)
    t, b, ratio = w.seconds()

    def mark(ok: bool) -> str:
        return "✓" if ok else "✗"

    lines = [
        f"- {w.name}: {w.workstreams:,} workstreams of {STEPS} chained `echo` tasks,"
        f" {DEFAULT_MAX_PARALLEL_WORKSTREAMS} at a time: towline {t:.1f} s"
        f" ({', '.join(f'{r.seconds:.1f}' for r in w.towline)}), bare (a parent of"
        f" {w.workstreams:,} child workflows of {STEPS} activities,"
        f" {DEFAULT_MAX_PARALLEL_WORKSTREAMS} at a time) {b:.1f} s"
        f" ({', '.join(f'{r.seconds:.1f}' for r in w.bare)}): ratio {ratio:.2f}"
        f" (goal ≤ {RATIO_GOAL} {mark(ratio <= RATIO_GOAL)}); CPU (worker + server)"
        f" {doc['towline_cpu_s']:.0f} s / {doc['bare_cpu_s']:.0f} s",
        f"- {w.name}: the run workflow's longest history {doc['max_history_events']:,}"
        f" events over up to {doc['run_executions']} executions (continue-as-new; goal ≤"
        f" {HISTORY_GOAL:,} {mark(doc['max_history_events'] <= HISTORY_GOAL)}); its"
        f" longest workflow task {doc['longest_workflow_task_ms']:.0f} ms (goal ≤"
        f" {WORKFLOW_TASK_GOAL_MS:.0f}"
        f" {mark(doc['longest_workflow_task_ms'] <= WORKFLOW_TASK_GOAL_MS)}); bare's"
        f" parent: {doc['bare_max_history_events']:,} events, longest workflow task"
        f" {doc['bare_longest_workflow_task_ms']:.0f} ms",
        f"- {w.name}: towline worker peak RSS {w.peak_rss_mb or 0:.0f} MB",
    ]
    if (c := w.bare_continued) is not None:
        lines.append(
            f"- {w.name}: bare continuing-as-new as the run does (`BareWideContinued`: its"
            f" children abandoned, reporting their end by signal): {c.seconds:.1f} s,"
            f" {c.run_executions} executions, longest history {c.max_history_events:,}"
            f" events, longest workflow task {c.longest_workflow_task_ms:.0f} ms"
        )
    if w.probed and (st := w.probed.status):
        worst = max([*st.api_ms, *st.cli_ms, st.ended_api_ms, st.ended_cli_ms])
        lines.append(
            f"- {w.name}: `towline status` of the run while in flight: API"
            f" {_ms(st.api_ms)}; CLI `towline status RUN --json` (a new process)"
            f" {_ms(st.cli_ms)}; after it ended: API {st.ended_api_ms:.0f} ms, CLI"
            f" {st.ended_cli_ms:.0f} ms (goal < {STATUS_GOAL_MS:.0f} ms"
            f" {mark(worst < STATUS_GOAL_MS)}); that run took {w.probed.seconds:.1f} s"
            f" with the probes"
        )
    return lines
