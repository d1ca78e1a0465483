"""`cache:` on a real dev server: a repeated call reuses the result, its tool does not run."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import RunPlan
from tests.e2e.test_cli import towline
from tests.helpers import plan, sh, ws
from towline import history
from towline.state import RunState

pytestmark = pytest.mark.timeout(90)


def counted(
    counter: Path, *, tid: str = "count", word: str = "ran", **extra: Any
) -> dict[str, Any]:
    """A shell task that appends ``word`` to ``counter``: one line per execution."""
    extra.setdefault("cache", {"ttl": "1h"})
    return sh(tid, f"echo {word} >> {counter}; echo {word}", **extra)


def executions(counter: Path) -> list[str]:
    return counter.read_text().splitlines() if counter.exists() else []


def task(state: RunState, tid: str = "count") -> Any:
    return state.workstreams["w"].tasks[tid]


async def test_a_repeated_call_is_a_hit_and_its_tool_does_not_run(
    run_plan: RunPlan, tmp_path: Path
) -> None:
    counter = tmp_path / "counter"
    first = await run_plan(plan(ws("w", counted(counter))))
    second = await run_plan(plan(ws("w", counted(counter))))
    assert first.status == second.status == "succeeded"
    assert executions(counter) == ["ran"]
    assert not task(first).cached
    assert task(second).cached
    assert task(second).status == "succeeded"
    assert task(second).outputs["stdout"] == "ran\n"
    assert task(second).outputs["exit_code"] == 0
    hits = history.open_store().calls(run_id=second.run_id)
    assert [(r.outcome, r.cached) for r in hits] == [("succeeded", True)]


async def test_a_different_input_or_key_runs_the_tool(run_plan: RunPlan, tmp_path: Path) -> None:
    counter = tmp_path / "counter"
    await run_plan(plan(ws("w", counted(counter, word="a"))))
    other_input = await run_plan(plan(ws("w", counted(counter, word="b"))))
    other_key = await run_plan(
        plan(ws("w", counted(counter, word="a", cache={"ttl": "1h", "key": "v2"})))
    )
    same_again = await run_plan(plan(ws("w", counted(counter, word="a"))))
    assert executions(counter) == ["a", "b", "a"]
    assert not task(other_input).cached
    assert not task(other_key).cached
    assert task(same_again).cached


async def test_failures_are_never_cached(run_plan: RunPlan, tmp_path: Path) -> None:
    counter = tmp_path / "counter"
    failing = sh("count", f"echo ran >> {counter}; exit 1", cache={"ttl": "1h"})
    first = await run_plan(plan(ws("w", failing)))
    second = await run_plan(plan(ws("w", failing)))
    assert first.status == second.status == "failed"
    assert executions(counter) == ["ran", "ran"]
    assert not task(second).cached
    assert task(second).error.category == "tool"


async def test_a_result_older_than_the_ttl_is_not_reused(run_plan: RunPlan, tmp_path: Path) -> None:
    counter = tmp_path / "counter"
    short = counted(counter, cache={"ttl": "1s"})
    await run_plan(plan(ws("w", short)))
    store = history.open_store()
    key = history.cache_key("shell", short["with"], None)
    assert store.cache_get(key, ttl_s=3600, now=time.time()) is not None
    deadline = time.monotonic() + 10
    while store.cache_get(key, ttl_s=1, now=time.time()) is not None:
        assert time.monotonic() < deadline, "the cache entry never passed its TTL"
        await asyncio.sleep(0.05)
    again = await run_plan(plan(ws("w", short)))
    assert not task(again).cached
    assert executions(counter) == ["ran", "ran"]


async def test_cli_reports_a_cached_task(conn_env: list[str], tmp_path: Path) -> None:
    counter = tmp_path / "counter"
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan(ws("w", counted(counter)), name="cached-cli")))
    runs = [await towline("run", str(path), "--wait", "--json", *conn_env) for _ in range(2)]
    assert [r.code for r in runs] == [0, 0], runs[-1].err
    first, second = (json.loads(r.out)["workstreams"]["w"]["tasks"]["count"] for r in runs)
    assert "cached" not in first
    assert second["cached"] is True
    assert second["status"] == "succeeded"
    plain = await towline("run", str(path), "--wait", *conn_env)
    assert plain.code == 0, plain.err
    assert "task w.count: succeeded (cached: an earlier identical result" in plain.out
    assert executions(counter) == ["ran"]


@pytest.fixture
def conn_env(dev_server: str, task_queue: str) -> list[str]:
    return ["--address", dev_server, "--task-queue", task_queue]
