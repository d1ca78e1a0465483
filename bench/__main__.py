"""``make bench``: towline against bare Temporal, side by side, on one fresh dev server.

    python -m bench            # the full run; writes bench/results/latest.{json,md}
    python -m bench --quick    # small sizes, two repetitions, prints only

See bench/README.md for what each scenario measures and what was tried to make towline
fast.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import temporalio
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client

from bench import agent, plans, scenarios, snapshot, wide
from bench.agent import AgentTurns
from bench.scenarios import Bench, LargeResult
from bench.snapshot import SnapshotCost
from bench.wide import Wide

RESULTS = Path(__file__).parent / "results"


@dataclass(frozen=True)
class Sizes:
    fanout: int = 500
    chain: int = 100
    first_samples: int = 20
    concurrent_runs: int = 50
    concurrent_steps: int = 20
    # Workstreams of thousands of tasks: each passes the history limit towline keeps
    # (8,000 events) and continues-as-new at least once.
    large_workstreams: int = 5
    large_tasks: int = 2000
    large_width: int = 50
    # Runs in flight at once on the one worker, each checked task by task.
    in_flight_runs: int = 100
    in_flight_steps: int = 5
    # Tasks that change one file of a 10,000-file repository: the snapshot after each.
    snapshot_samples: int = 20
    # One run across many repositories: workstreams of two chained tasks.
    wide: int = 1000
    wide_every: float = 5.0  # seconds between `towline status` calls while it runs
    reps: int = 3


QUICK = Sizes(
    fanout=100,
    chain=20,
    first_samples=5,
    concurrent_runs=10,
    concurrent_steps=5,
    large_workstreams=2,
    large_tasks=300,
    large_width=20,
    in_flight_runs=20,
    in_flight_steps=3,
    snapshot_samples=5,
    wide=100,
    wide_every=1.0,
    reps=2,
)

# The goals: the largest acceptable towline/bare ratio, by scenario kind.
GOALS = {"fanout": 1.3, "chain": 1.2, "first_task": 1.1, "concurrent": 1.3}
# Kinds judged against bare Temporal in the run's own shape (a parent with its search
# attributes and one child), not against a lone workflow: what a run's shape costs is
# the contract's, and not towline's to save.
AGAINST_SHAPED = {"first_task"}
RSS_GOAL_MB = 200.0
HISTORY_GOAL = 10_240


@dataclass
class Samples:
    """One scenario's measurements for both sides, in its unit, and the CPU they took."""

    name: str
    kind: str  # a key of GOALS
    unit: str
    tool_calls: int  # per repetition, for CPU per tool call
    towline: list[float] = field(default_factory=list)
    bare: list[float] = field(default_factory=list)
    # Bare Temporal in the shape of a towline run: a parent workflow and a child workflow.
    shaped: list[float] = field(default_factory=list)
    towline_cpu: list[float] = field(default_factory=list)  # worker + server ms per call
    bare_cpu: list[float] = field(default_factory=list)
    shaped_cpu: list[float] = field(default_factory=list)

    def medians(self) -> tuple[float, float, float]:
        t, b = statistics.median(self.towline), statistics.median(self.bare)
        return t, b, t / b

    def shaped_ratio(self) -> float:
        return statistics.median(self.towline) / statistics.median(self.shaped)


Side = Callable[[], Awaitable[float]]


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def _alternate(
    b: Bench,
    s: Samples,
    reps: int,
    towline: Side,
    bare: Side,
    shaped: Side,
    *,
    scale: float = 1.0,
) -> Samples:
    """``reps`` repetitions of each side, rotating which goes first.

    Each side's value is multiplied by ``scale`` (e.g. seconds to ms per step). The CPU
    its worker and the server used meanwhile is recorded too: unlike wall time, it
    hardly moves when other work shares the machine.
    """
    sides = [
        (towline, b.towline_worker, s.towline, s.towline_cpu, "towline"),
        (bare, b.bare_worker, s.bare, s.bare_cpu, "bare"),
        (shaped, b.bare_worker, s.shaped, s.shaped_cpu, "bare with a child"),
    ]
    for i in range(reps):
        for side, worker, out, cpu, label in sides[i % 3 :] + sides[: i % 3]:
            before = worker.cpu_seconds() + b.server.cpu_seconds()
            value = await side() * scale
            used = worker.cpu_seconds() + b.server.cpu_seconds() - before
            out.append(value)
            cpu.append(1000 * used / s.tool_calls)
            _say(f"  {s.name} {label} #{i + 1}: {value:.3f} {s.unit}")
    return s


async def _warm_up(b: Bench) -> None:
    """Load both workers' code paths and caches before anything is timed."""
    _say("warm-up")
    for _ in range(3):
        await scenarios.towline_first_task(b)
        await scenarios.bare_first_task(b)
        await scenarios.bare_first_task(b, shaped=True)
    await scenarios.towline_plan(b, plans.fanout(50))
    await scenarios.bare_fanout(b, 50)
    await scenarios.towline_plan(b, plans.chain(10))
    await scenarios.bare_chain(b, 10)


@dataclass
class InFlight:
    """Many runs started at once on one worker: did every task of every run succeed."""

    runs: int
    steps: int
    seconds: float
    peak_rss_mb: float | None


async def _run_all(
    b: Bench, sizes: Sizes
) -> tuple[list[Samples], float | None, InFlight, LargeResult, Wide]:
    await _warm_up(b)
    results = []
    n = sizes.fanout
    _say(f"fanout_{n}")
    fan = Samples(f"fanout_{n}", "fanout", "s", n)
    results.append(
        await _alternate(
            b,
            fan,
            sizes.reps,
            lambda: scenarios.towline_plan(b, plans.fanout(n)),
            lambda: scenarios.bare_fanout(b, n),
            lambda: scenarios.bare_fanout(b, n, shaped=True),
        )
    )

    c = sizes.chain
    _say(f"chain_{c}")
    chain = Samples(f"chain_{c}", "chain", "ms/step", c)
    results.append(
        await _alternate(
            b,
            chain,
            sizes.reps,
            lambda: scenarios.towline_plan(b, plans.chain(c)),
            lambda: scenarios.bare_chain(b, c),
            lambda: scenarios.bare_chain(b, c, shaped=True),
            scale=1000 / c,
        )
    )

    _say("first_task")
    first = Samples("first_task", "first_task", "ms", 1)
    results.append(
        await _alternate(
            b,
            first,
            sizes.first_samples,
            lambda: scenarios.towline_first_task(b),
            lambda: scenarios.bare_first_task(b),
            lambda: scenarios.bare_first_task(b, shaped=True),
        )
    )

    runs, steps = sizes.concurrent_runs, sizes.concurrent_steps
    _say(f"concurrent_{runs}x{steps}")
    peaks: list[float] = []

    async def towline_concurrent() -> float:
        b.towline_worker.reset_peak_rss()
        elapsed = await scenarios.towline_concurrent(b, runs, steps)
        if (peak := b.towline_worker.peak_rss_mb()) is not None:
            peaks.append(peak)
        return elapsed

    conc = Samples(f"concurrent_{runs}x{steps}", "concurrent", "s", runs * steps)
    results.append(
        await _alternate(
            b,
            conc,
            sizes.reps,
            towline_concurrent,
            lambda: scenarios.bare_concurrent(b, runs, steps),
            lambda: scenarios.bare_concurrent(b, runs, steps, shaped=True),
        )
    )

    n, steps = sizes.in_flight_runs, sizes.in_flight_steps
    _say(f"in flight: {n} runs of {steps} chained tasks at once")
    b.towline_worker.reset_peak_rss()
    # towline_concurrent checks every task of every run once they have all finished.
    seconds = await scenarios.towline_concurrent(b, n, steps)
    in_flight = InFlight(n, steps, seconds, b.towline_worker.peak_rss_mb())
    _say(f"  in flight: {seconds:.1f} s")

    _say(f"large: {sizes.large_workstreams} workstreams of {sizes.large_tasks} tasks")
    large = await scenarios.towline_large(
        b, sizes.large_workstreams, sizes.large_tasks, sizes.large_width
    )
    _say(f"  large: {large.seconds:.1f} s, longest history {large.max_history_events} events")

    _say(f"wide: {sizes.wide} workstreams of {wide.STEPS} chained tasks")
    w = await wide.measure(b, sizes.wide, sizes.reps, every=sizes.wide_every)
    return results, max(peaks) if peaks else None, in_flight, large, w


async def _agent_turns(b: Bench, sizes: Sizes) -> AgentTurns:
    _say(f"agent_turns: {agent.TURNS} turns of one tool call")
    turns = await agent.measure(b.towline, b.towline_queue, b.plan_dir, reps=sizes.reps)
    _say(f"  agent_turns: overhead {turns.overhead_ms:.1f} ms per turn")
    return turns


# Temporal's warnings about payloads and blobs past the warning size (512 KB by default):
# the server's "Blob data size exceeds the warning limit", the SDK's TMPRL1103.
_WARNING = re.compile(r"blob data size exceeds|exceeded the warning limit|payload.*size", re.I)


def _payload_warnings(*logs: Path) -> list[str]:
    found = []
    for log in logs:
        if log.exists():
            found += [
                f"{log.name}: {line.strip()[:300]}"
                for line in log.read_text(errors="replace").splitlines()
                if _WARNING.search(line)
            ]
    return found


async def _env(client: Client) -> dict[str, Any]:
    info = await client.workflow_service.get_system_info(GetSystemInfoRequest())
    return {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "temporalio": temporalio.__version__,
        "server_version": info.server_version,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _large_name(tasks: int) -> str:
    return f"large_{tasks // 1000}k" if tasks % 1000 == 0 else f"large_{tasks}"


def _document(
    samples: list[Samples],
    rss: float | None,
    in_flight: InFlight,
    large: LargeResult,
    snap: SnapshotCost,
    env: dict[str, Any],
) -> dict[str, Any]:
    """``latest.json``, in the shape the issue gives."""
    out: dict[str, Any] = {}
    for s in samples:
        t, b, ratio = s.medians()
        shaped = statistics.median(s.shaped)
        if s.kind == "chain":
            out[s.name] = {"towline_ms_per_step": t, "bare_ms_per_step": b, "ratio": ratio}
            out[s.name]["bare_with_child_ms_per_step"] = shaped
        elif s.kind == "first_task":
            out[s.name] = {
                "towline_ms": t,
                "bare_ms": b,
                "ratio": ratio,
                "bare_with_child_ms": shaped,
            }
        else:
            out[s.name] = {"towline": t, "bare": b, "ratio": ratio, "bare_with_child": shaped}
        out[s.name]["ratio_to_bare_with_child"] = s.shaped_ratio()
        if s.kind == "concurrent":
            out[s.name]["worker_peak_rss_mb"] = rss
    out[f"in_flight_{in_flight.runs}"] = {
        "towline": in_flight.seconds,
        "runs": in_flight.runs,
        "tasks_per_run": in_flight.steps,
        "all_succeeded": True,  # towline_concurrent raises otherwise
        "worker_peak_rss_mb": in_flight.peak_rss_mb,
    }
    out[_large_name(large.tasks)] = {
        "towline": large.seconds,
        "tasks": large.tasks,
        "max_history_events": large.max_history_events,
    }
    out["snapshot_10k"] = {
        "median_ms": snap.median_ms,
        "goal_ms": snapshot.GOAL_MS,
        "first_ms": snap.first_ms,
        "cpu_median_ms": statistics.median(snap.cpu_ms),
        "samples_ms": snap.take_ms,
        "restore_median_ms": statistics.median(snap.restore_ms),
        "newest_snapshot_bytes": snap.bytes,
        "files": snap.files,
    }
    return {"scenarios": out, "env": env}


def _markdown(
    samples: list[Samples],
    rss: float | None,
    in_flight: InFlight,
    large: LargeResult,
    snap: SnapshotCost,
    warnings: list[str],
    env: dict[str, Any],
    load: tuple[float, float],
    seconds: float,
) -> str:
    def stat(xs: list[float]) -> str:
        return f"{statistics.median(xs):.3g} ({min(xs):.3g} to {max(xs):.3g})"

    def cpu(xs: list[float]) -> str:
        return f"{statistics.median(xs):.1f}"

    lines = [
        "| scenario | unit | towline median (min to max) | bare median (min to max) | ratio | goal"
        " | CPU ms per tool call, towline / bare |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in samples:
        ratio = s.medians()[2]
        goal = GOALS[s.kind]
        if s.kind in AGAINST_SHAPED:
            judged = f"≤ {goal} to bare with a child ({s.shaped_ratio():.2f})"
            met = s.shaped_ratio() <= goal
        else:
            judged, met = f"≤ {goal}", ratio <= goal
        lines.append(
            f"| {s.name} | {s.unit} | {stat(s.towline)} | {stat(s.bare)} | {ratio:.2f}"
            f" | {judged} {'✓' if met else '✗'}"
            f" | {cpu(s.towline_cpu)} / {cpu(s.bare_cpu)} |"
        )
    lines += [
        "",
        "The same, against bare Temporal in the shape the contract gives a run (a parent"
        " workflow with search attributes, its workstream a child workflow):",
        "",
        "| scenario | unit | bare with a child, median (min to max) | its ratio to bare"
        " | towline / bare with a child | CPU ms per tool call, bare with a child |",
        "|---|---|---|---|---|---|",
    ]
    for s in samples:
        base = statistics.median(s.shaped) / statistics.median(s.bare)
        lines.append(
            f"| {s.name} | {s.unit} | {stat(s.shaped)} | {base:.2f} | {s.shaped_ratio():.2f}"
            f" | {cpu(s.shaped_cpu)} |"
        )
    rss_text = f"{rss:.0f} MB" if rss is not None else "unknown"
    rss_mark = "✓" if rss is not None and rss <= RSS_GOAL_MB else "✗"
    hist_mark = "✓" if large.max_history_events <= HISTORY_GOAL else "✗"
    continued = {wid: n for wid, n in large.runs.items() if n > 1}
    lines += [
        "",
        "CPU is the worker's plus the server's, per tool call (per run for first_task):"
        " unlike wall time it hardly moves when other work shares the machine.",
        "",
        f"- towline worker peak RSS during the concurrent runs: {rss_text}"
        f" (goal ≤ {RSS_GOAL_MB:.0f} MB {rss_mark})",
        f"- in_flight_{in_flight.runs}: {in_flight.runs} runs of {in_flight.steps} chained"
        f" tasks started at once on the one worker, every task of every run succeeded, in"
        f" {in_flight.seconds:.1f} s; worker peak RSS"
        f" {in_flight.peak_rss_mb or 0:.0f} MB",
        f"- {_large_name(large.tasks)}: {large.tasks} tasks in {large.seconds:.1f} s"
        f" ({1000 * large.seconds / large.tasks:.2f} ms per task); validating the plan took"
        f" {large.validate_seconds:.2f} s",
        f"- {_large_name(large.tasks)}: longest history {large.max_history_events} events"
        f" (goal ≤ {HISTORY_GOAL} {hist_mark}); workflows that continued-as-new:"
        f" {len(continued)} of {len(large.runs)}"
        + (f" (up to {max(continued.values())} runs each)" if continued else ""),
        f"- {_large_name(large.tasks)}: longest workflow task"
        f" {large.longest_workflow_task_ms:.0f} ms (the deadlock detector fires at 2000 ms)",
        f"- snapshot_10k: saving a {snap.files:,}-file repository after a task that changed"
        f" it: median {snap.median_ms:.0f} ms ({min(snap.take_ms):.0f} to"
        f" {max(snap.take_ms):.0f}; CPU {statistics.median(snap.cpu_ms):.0f} ms) over"
        f" {snap.samples} tasks (goal < {snapshot.GOAL_MS:.0f}"
        f" ms {'✓' if snap.median_ms < snapshot.GOAL_MS else '✗'}); the first after the clone"
        f" {snap.first_ms:.0f} ms; restoring the newest on a fresh"
        f" clone {statistics.median(snap.restore_ms):.0f} ms; the newest snapshot"
        f" {snap.bytes / 1024:.0f} KB",
        f"- payload-size warnings in the server and worker logs: {len(warnings)}"
        f" (goal: none {'✓' if not warnings else '✗'})",
        *(f"  - {w}" for w in warnings[:5]),
        f"- machine: {env['cpu_count']} CPUs, load average {load[0]:.2f} before and"
        f" {load[1]:.2f} after (other work shares these cores); python {env['python']},"
        f" temporalio {env['temporalio']}, server {env['server_version']}, {env['date']}",
        f"- the whole benchmark took {seconds:.0f} s",
    ]
    return "\n".join(lines) + "\n"


async def _main(args: argparse.Namespace) -> int:
    sizes = QUICK if args.quick else Sizes()
    if args.reps is not None:
        sizes = replace(sizes, reps=args.reps)
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="towline-bench-") as tmp:
        folder = Path(tmp)
        async with scenarios.started(folder, tuple(args.server_arg)) as b:
            env = await _env(b.towline)
            samples, rss, in_flight, large, w = await _run_all(b, sizes)
            turns = await _agent_turns(b, sizes)
            warnings = _payload_warnings(b.server.log, b.towline_worker.log, b.bare_worker.log)
        _say(f"snapshot_10k: {sizes.snapshot_samples} tasks")
        snap = await snapshot.measure(folder / "snapshot", sizes.snapshot_samples)
        _say(f"  snapshot_10k: median {snap.median_ms:.0f} ms")
    seconds = time.perf_counter() - started
    doc = _document(samples, rss, in_flight, large, snap, env)
    doc["scenarios"][w.name] = wide.document(w)
    doc["scenarios"]["agent_turns"] = {
        "turns": turns.turns,
        "towline_ms_per_turn": statistics.median(turns.towline_ms),
        "direct_ms_per_turn": statistics.median(turns.direct_ms),
        "overhead_ms_per_turn": turns.overhead_ms,
        "goal_ms": agent.GOAL_MS,
    }
    load = (load_before, os.getloadavg()[0])
    md = _markdown(samples, rss, in_flight, large, snap, warnings, env, load, seconds)
    md += "\n".join(wide.markdown(w)) + "\n"
    md += (
        f"- agent_turns: {turns.turns} turns of one tool call against the local fake:"
        f" towline {statistics.median(turns.towline_ms):.1f} ms per turn, the same loop"
        f" calling the fake directly {statistics.median(turns.direct_ms):.1f} ms; overhead"
        f" {turns.overhead_ms:.1f} ms per turn (goal ≤ {agent.GOAL_MS:.0f}"
        f" {'✓' if turns.overhead_ms <= agent.GOAL_MS else '✗'})\n"
    )
    print(md)
    out = args.out or (None if args.quick else RESULTS)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "latest.json").write_text(json.dumps(doc, indent=2) + "\n")
        (out / "latest.md").write_text(md)
        _say(f"wrote {out / 'latest.json'} and {out / 'latest.md'}")
    return 0


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes; prints only")
    p.add_argument("--reps", type=int, help="repetitions of each side (default 3)")
    p.add_argument("--out", type=Path, help="folder for latest.json and latest.md")
    p.add_argument(
        "--server-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="an extra `temporal server start-dev` argument, for experiments, e.g."
        " --server-arg=--dynamic-config-value=KEY=VALUE (repeatable)",
    )
    args = p.parse_args()
    code = asyncio.run(_main(args))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # temporalio may crash at interpreter exit (sdk-python#300)


if __name__ == "__main__":
    main()
