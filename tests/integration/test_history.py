"""The run history on a real dev server: one row per tool call, and `towline stats`."""

from __future__ import annotations

import asyncio
import io
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from temporalio.client import Client

from tests.conftest import RunPlan
from tests.e2e.test_cli import towline
from tests.helpers import echo, plan, sh, ws
from towline import estimates, history
from towline.history import ToolCallRecord
from towline.plan.load import check_data
from towline.starter import api, progress

pytestmark = pytest.mark.timeout(90)


def _by_task(rows: list[ToolCallRecord]) -> dict[str, list[ToolCallRecord]]:
    out: dict[str, list[ToolCallRecord]] = {}
    for r in sorted(rows, key=lambda r: (r.task, r.attempt)):
        out.setdefault(r.task, []).append(r)
    return out


async def test_each_tool_call_is_recorded_with_its_outcome_category_and_attempt(
    run_plan: RunPlan,
) -> None:
    fast_retry = {"max_attempts": 2, "initial_interval": "100ms"}
    state = await run_plan(
        plan(
            ws(
                "w",
                echo("ok", **{"with": {"x": 1}}),
                sh("flaky", "exit 3", retry=fast_retry),
                {"id": "missing", "tool": "shell", "with": {"command": ["no-such-command-x"]}},
                sh("slow", "sleep 30", timeout="1s"),
            ),
            name="recorded",
            failure_policy="continue",
        )
    )
    assert state.status == "failed"
    # The worker records a timed-out attempt once it learns of the timeout (on its next
    # heartbeat), which may be after the run has ended.
    for _ in range(100):
        rows = _by_task(history.open_store().calls(run_id=state.run_id))
        if "slow" in rows:
            break
        await asyncio.sleep(0.1)
    assert set(rows) == {"ok", "flaky", "missing", "slow"}
    for r in (r for task in rows.values() for r in task):
        assert (r.run_id, r.plan, r.workstream) == (state.run_id, "recorded", "w")
        assert r.duration_s >= 0
        assert not r.cached
    [ok] = rows["ok"]
    assert (ok.tool, ok.outcome, ok.category, ok.attempt) == ("echo", "succeeded", None, 1)
    # Each attempt is a call of its own: Temporal retried the first one.
    assert [(r.tool, r.outcome, r.category, r.attempt) for r in rows["flaky"]] == [
        ("shell", "failed", "tool", 1),
        ("shell", "failed", "tool", 2),
    ]
    # validation is never retried: one call, though the retry policy allows three.
    assert [(r.outcome, r.category, r.attempt) for r in rows["missing"]] == [
        ("failed", "validation", 1)
    ]
    assert [(r.outcome, r.category) for r in rows["slow"]] == [("failed", "timeout")]
    assert rows["slow"][0].duration_s >= 1.0
    tasks = state.workstreams["w"].tasks
    assert tasks["flaky"].attempts == 2
    slow_error = tasks["slow"].error
    assert slow_error is not None
    assert slow_error.category == "timeout"


async def test_stats_prints_figures_from_the_runs_done(
    run_plan: RunPlan, towline_home: Path
) -> None:
    for _ in range(2):
        await run_plan(
            plan(
                ws("w", echo("hello"), sh("fails", "exit 1"), sh("build", "sleep 0.2")),
                name="figures",
                failure_policy="continue",
            )
        )
    rows = history.open_store().calls(plan="figures")
    builds = [r.duration_s for r in rows if r.task == "build"]
    assert len(builds) == 2

    r = await towline("stats", "--json")
    assert r.code == 0, r.err
    out = json.loads(r.out)
    assert out["location"] == str(towline_home / "history.db")
    shell = next(g for g in out["groups"] if g["tool"] == "shell")
    assert (shell["calls"], shell["succeeded"], shell["failed"]) == (4, 2, 2)
    assert shell["success_rate"] == 0.5
    assert shell["p50_s"] == pytest.approx(sum(builds) / 2)  # the median of two
    assert shell["p95_s"] == pytest.approx(min(builds) + 0.95 * (max(builds) - min(builds)))
    assert shell["p50_s"] >= 0.2
    echo_stats = next(g for g in out["groups"] if g["tool"] == "echo")
    assert (echo_stats["calls"], echo_stats["success_rate"]) == (2, 1.0)

    r = await towline("stats", "--plan", "figures", "--tool", "shell")
    assert r.code == 0, r.err
    lines = {line.split()[0]: line for line in r.out.splitlines() if line.startswith(" w.")}
    assert set(lines) == {"w.build", "w.fails"}
    assert "100%" in lines["w.build"]
    assert " 0%" in lines["w.fails"]

    r = await towline("stats")
    assert r.code == 0, r.err
    assert all(word in r.out for word in ("shell", "echo", "50%", "2 runs"))


async def test_stats_without_history_says_so_and_succeeds(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "TOWLINE_HISTORY": str(tmp_path / "none.db")}
    r = await towline("stats", env=env)
    assert r.code == 0, r.err
    assert "no history yet" in r.out
    assert not (tmp_path / "none.db").exists()  # reading creates nothing
    r = await towline("stats", "--json", env=env)
    assert r.code == 0
    assert json.loads(r.out)["groups"] == []


_WRITER = """
import sys, time
from towline.history import ToolCallRecord, open_store
store = open_store(sys.argv[1])
for i in range(int(sys.argv[3])):
    store.record(ToolCallRecord(
        run_id=sys.argv[2], plan="p", workstream="w", task=f"t{i}", tool="echo", attempt=1,
        outcome="succeeded", category=None, started_at=time.time(), duration_s=0.01,
    ))
"""


async def test_worker_processes_can_share_one_history_file(tmp_path: Path) -> None:
    db = str(tmp_path / "history.db")
    writers = [
        await asyncio.create_subprocess_exec(sys.executable, "-c", _WRITER, db, f"run{n}", "50")
        for n in range(4)
    ]
    codes = [await w.wait() for w in writers]
    assert codes == [0, 0, 0, 0]
    rows = history.open_store(db).calls()
    assert len(rows) == 200
    assert {r.run_id for r in rows} == {"run0", "run1", "run2", "run3"}


async def test_timeout_auto_without_history_takes_the_stated_default(run_plan: RunPlan) -> None:
    state = await run_plan(
        plan(ws("w", sh("slow", "sleep 30", timeout="auto"), defaults={"timeout": "1s"}))
    )
    error = state.workstreams["w"].tasks["slow"].error
    assert error is not None
    assert error.category == "timeout"  # the 1s default reached the workflow


async def test_timeout_auto_comes_from_the_tasks_history(run_plan: RunPlan) -> None:
    data = plan(
        ws("w", sh("nap", "sleep 0.1", timeout="auto"), defaults={"timeout": "1s"}),
        name="auto-history",
    )
    first = await run_plan(data)
    assert first.status == "succeeded"
    resolved = estimates.resolve_from_history(check_data(data))
    # p99 of one short call x 3 is below the floor: the floor, not the 1s default.
    assert resolved.workstreams[0].tasks[0].timeout == estimates.AUTO_FLOOR


async def test_watch_shows_an_eta_from_history(
    run_plan: RunPlan, client: Client, task_queue: str, tmp_path: Path
) -> None:
    def eta_plan(nap: str) -> dict[str, Any]:
        return plan(ws("w", sh("nap", nap), sh("then", "true", needs=["nap"])), name="eta")

    await run_plan(eta_plan("sleep 0.2"))  # the history the ETA comes from
    gate = tmp_path / "gate"
    waiting = eta_plan(f"while [ ! -f {gate} ]; do sleep 0.05; done")
    rid = await api.start_run(client, check_data(waiting), plan_dir=tmp_path, task_queue=task_queue)
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=120)
    watch = asyncio.create_task(progress.follow(client, rid, console=console, live=True))
    try:
        deadline = time.monotonic() + 30
        while "ETA ~" not in screen.getvalue():
            assert time.monotonic() < deadline, f"no ETA shown: {screen.getvalue()!r}"
            await asyncio.sleep(0.1)
    finally:
        gate.touch()
    state = await watch
    assert state.status == "succeeded"
