"""The rules behind the anomaly metrics: slow calls past a p99, failure-rate jumps; and
the history queries and store probes they and /readyz rely on."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.unit.test_history_store import record
from towline import anomalies
from towline.anomalies import FailureRate, RecentOutcomes, failure_rate_jumped, slow_after
from towline.history import open_store
from towline.store import FolderStore, StoreError


def test_a_call_is_slow_past_the_p99_of_enough_past_calls() -> None:
    durations = [float(i) for i in range(1, 101)]  # 1..100 s
    threshold = slow_after(durations, scope="tool")
    assert threshold is not None
    assert threshold.p99_s == pytest.approx(99.01)
    assert threshold.seconds == pytest.approx(99.01)
    assert (threshold.samples, threshold.scope) == (100, "tool")


def test_too_few_past_calls_say_nothing_about_what_is_slow() -> None:
    assert slow_after([5.0] * (anomalies.MIN_SAMPLES - 1), scope="tool") is None
    assert slow_after([5.0] * anomalies.MIN_SAMPLES, scope="tool") is not None


def test_a_p99_of_milliseconds_is_raised_to_the_floor() -> None:
    threshold = slow_after([0.002] * 50, scope="tool")
    assert threshold is not None
    assert threshold.p99_s == pytest.approx(0.002)
    assert threshold.seconds == anomalies.SLOW_FLOOR


def test_the_tasks_own_history_wins_when_it_suffices_else_the_tools() -> None:
    own, tool = [2.0] * 30, [50.0] * 30
    picked = anomalies.pick_threshold(own, tool)
    assert picked is not None
    assert (picked.scope, picked.p99_s) == ("task", 2.0)
    picked = anomalies.pick_threshold(own[:3], tool)
    assert picked is not None
    assert (picked.scope, picked.p99_s) == ("tool", 50.0)
    assert anomalies.pick_threshold(own[:3], tool[:3]) is None


@pytest.mark.parametrize(
    ("recent", "baseline", "jumped"),
    [
        (FailureRate(5, 10), FailureRate(10, 500), True),  # 50% against 2%
        (FailureRate(2, 10), FailureRate(10, 500), False),  # 20%: not 30 points above
        (FailureRate(4, 10), FailureRate(0, 0), True),  # no history: 40% is a jump
        (FailureRate(9, 9), FailureRate(0, 0), False),  # too few recent calls to tell
        (FailureRate(10, 20), FailureRate(150, 500), False),  # 50% against 30%: under 2x
        (FailureRate(14, 20), FailureRate(150, 500), True),  # 70% against 30%
        (FailureRate(20, 20), FailureRate(500, 500), False),  # it always fails: no jump
    ],
)
def test_a_failure_rate_jumps_when_far_above_the_long_term_rate(
    recent: FailureRate, baseline: FailureRate, jumped: bool
) -> None:
    assert failure_rate_jumped(recent, baseline) is jumped


def test_the_recent_window_keeps_the_latest_calls_and_tells_each_crossing_once() -> None:
    recent = RecentOutcomes(size=4)
    for failed in (True, True, False, False, False):
        rate = recent.add("shell", failed)
    assert rate == FailureRate(1, 4)  # the oldest failure has left the window
    assert recent.add("http", True) == FailureRate(1, 1)  # per tool
    assert recent.crossing("shell", True) is True
    assert recent.crossing("shell", True) is None
    assert recent.crossing("shell", False) is False
    assert recent.crossing("shell", False) is None


def test_the_latest_calls_of_a_tool_or_a_task_come_newest_first(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "h.db"))
    assert store.latest_calls(tool="shell") == []  # nothing written yet: nothing created
    for i in range(5):
        store.record(record("a", started_at=1000.0 + i, duration_s=float(i)))
    store.record(record("b", started_at=2000.0, duration_s=9.0))
    store.record(record("a", started_at=2001.0, outcome="failed"))
    store.record(record("a", started_at=2002.0, cached=True))
    store.record(record("a", started_at=2003.0, tool="echo"))

    newest = store.latest_calls(tool="shell", limit=3)
    assert [(r.task, r.outcome, r.started_at) for r in newest] == [
        ("a", "failed", 2001.0),
        ("b", "succeeded", 2000.0),
        ("a", "succeeded", 1004.0),
    ]
    own = store.latest_calls(tool="shell", plan="p", workstream="w", task="a", succeeded_only=True)
    assert [r.duration_s for r in own] == [4.0, 3.0, 2.0, 1.0, 0.0]


def test_the_history_probe_fails_once_its_file_is_removed(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "h.db"))
    store.probe()  # creates it
    (tmp_path / "h.db").unlink()
    with pytest.raises(FileNotFoundError, match=r"history database .* was removed"):
        store.probe()


def test_the_history_probe_fails_where_no_database_can_be(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(FileExistsError, match="File exists"):
        open_store(str(tmp_path / "file" / "h.db")).probe()


def test_a_folder_store_probe_names_what_is_wrong(tmp_path: Path) -> None:
    store = FolderStore(tmp_path / "store")
    with pytest.raises(StoreError, match=r"store folder .*/store does not exist"):
        store.probe()
    (tmp_path / "store").write_text("")
    with pytest.raises(StoreError, match="is not a folder"):
        store.probe()
    os.remove(tmp_path / "store")
    (tmp_path / "store").mkdir()
    store.probe()
    store.min_free = 1 << 62  # more than any disk here has free: as good as full
    with pytest.raises(StoreError, match=r"store folder .*/store is full \(\d+ bytes free\)"):
        store.probe()


def test_a_stores_size_is_counted_by_the_first_part_of_the_keys(tmp_path: Path) -> None:
    store = FolderStore(tmp_path / "store")
    assert store.size() == {}
    store.put("artifacts/r1/log.txt", b"12345")
    store.put("artifacts/r2/out.json", b"123")
    store.put("snapshots/r1/w.tar", b"1234567890")
    assert store.size() == {"artifacts": (2, 8), "snapshots": (1, 10)}
