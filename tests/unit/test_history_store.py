"""The history store on an SQLite file: records, the cache, and its keys."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from tests.helpers import echo, plan, ws
from towline import estimates, history
from towline.history import ToolCallRecord, cache_key, open_store
from towline.plan.load import check_data


def record(task: str, *, outcome: history.Outcome = "succeeded", **extra: object) -> ToolCallRecord:
    values: dict[str, object] = {
        "run_id": "r1",
        "plan": "p",
        "workstream": "w",
        "task": task,
        "tool": "shell",
        "attempt": 1,
        "outcome": outcome,
        "category": None if outcome == "succeeded" else "tool",
        "started_at": 1000.0,
        "duration_s": 2.5,
    }
    values.update(extra)
    return ToolCallRecord(**values)  # type: ignore[arg-type]


def test_records_come_back_as_written_and_filtered(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "h.db"))
    written = [
        record("a", tokens=10, cost_usd=0.1),
        record("b", outcome="failed", started_at=1001.0),
        record("c", tool="echo", run_id="r2", plan="q", started_at=1002.0, cached=True),
    ]
    for r in written:
        store.record(r)
    assert store.calls() == written
    assert store.calls(tool="echo") == [written[2]]
    assert store.calls(plan="p", succeeded_only=True) == [written[0]]
    assert store.calls(run_id="r2") == [written[2]]


def test_a_store_never_written_reads_empty_and_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "h.db"
    assert open_store(str(path)).calls() == []
    assert not path.exists()


def test_the_location_follows_towline_history_or_the_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TOWLINE_HISTORY", raising=False)
    monkeypatch.setenv("TOWLINE_HOME", str(tmp_path / "home"))
    assert history.location() == str(tmp_path / "home" / "history.db")
    monkeypatch.setenv("TOWLINE_HISTORY", "postgresql://me:secret@db/towline")
    assert history.location() == "postgresql://me:secret@db/towline"
    assert open_store().location == "postgresql://me:***@db/towline"  # printable


def test_cached_results_live_for_their_ttl(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "h.db"))
    store.cache_put("k", tool="shell", result={"outputs": {"x": 1}}, ttl_s=60, now=1000.0)
    hit = store.cache_get("k", ttl_s=60, now=1059.0)
    assert hit is not None
    assert hit.result == {"outputs": {"x": 1}}
    assert store.cache_get("k", ttl_s=60, now=1060.0) is None
    assert store.cache_get("k", ttl_s=10, now=1011.0) is None  # the caller's TTL counts
    assert store.cache_get("other", ttl_s=60, now=1000.0) is None


def test_a_newer_result_replaces_the_old_and_expired_entries_are_dropped(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "h.db"))
    store.cache_put("old", tool="shell", result={"outputs": {}}, ttl_s=1, now=1000.0)
    store.cache_put("k", tool="shell", result={"outputs": {"v": 1}}, ttl_s=60, now=1000.0)
    store.cache_put("k", tool="shell", result={"outputs": {"v": 2}}, ttl_s=60, now=1030.0)
    hit = store.cache_get("k", ttl_s=60, now=1080.0)
    assert hit is not None
    assert hit.result["outputs"] == {"v": 2}
    assert store.cache_get("old", ttl_s=10**9, now=1030.0) is None  # pruned at its own TTL


def test_the_cache_key_is_the_tool_the_input_and_the_extras() -> None:
    base = cache_key("shell", {"command": ["make"], "env": {"A": "1", "B": "2"}}, None)
    assert base == cache_key("shell", {"env": {"B": "2", "A": "1"}, "command": ["make"]}, None)
    assert base == cache_key("shell", {"command": ["make"], "env": {"A": "1", "B": "2"}}, [])
    assert base != cache_key("echo", {"command": ["make"], "env": {"A": "1", "B": "2"}}, None)
    assert base != cache_key(
        "shell", {"command": ["make", "-j2"], "env": {"A": "1", "B": "2"}}, None
    )
    assert base != cache_key("shell", {"command": ["make"], "env": {"A": "1", "B": "2"}}, "v2")
    assert cache_key("t", {}, "v2") == cache_key("t", {}, ["v2"])


def test_timeout_auto_reads_the_tasks_successful_calls(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "h.db"))
    store.record(record("t", duration_s=40.0))
    store.record(record("t", duration_s=9999.0, outcome="failed"))
    store.record(record("t", duration_s=0.0, cached=True))
    store.record(record("t", duration_s=9999.0, plan="another"))
    spec = check_data(plan(ws("w", echo("t", timeout="auto"), echo("u", timeout="auto")), name="p"))
    # The records are shell calls: the echo task "t" has no history of its own tool.
    assert estimates.resolve_from_history(spec, store) == estimates.resolve_auto_timeouts(
        spec, lambda wid, t: []
    )
    shell = check_data(
        plan(
            ws("w", {"id": "t", "tool": "shell", "with": {"command": ["x"]}, "timeout": "auto"}),
            name="p",
        )
    )
    resolved = estimates.resolve_from_history(shell, store)
    assert resolved.workstreams[0].tasks[0].timeout == timedelta(seconds=120)  # 40s x 3


def test_an_unreadable_history_leaves_auto_to_its_default(tmp_path: Path) -> None:
    broken = tmp_path / "h.db"
    broken.write_text("this is not a database")
    spec = check_data(plan(ws("w", echo("t", timeout="auto"))))
    resolved = estimates.resolve_from_history(spec, open_store(str(broken)))
    assert resolved.workstreams[0].tasks[0].timeout == timedelta(hours=1)
