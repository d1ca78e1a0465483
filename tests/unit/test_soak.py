"""The soak's pure parts: its fault schedule and how it explains a task that ran twice."""

from __future__ import annotations

import itertools

from soak.faults import KINDS, Fault, schedule
from soak.harness import FaultRec
from soak.report import Line, cause_of, read_ledger


def test_a_seed_replays_the_same_schedule_and_another_seed_does_not() -> None:
    workers = ["w1", "w2", "w3"]
    assert schedule(42, 1200, workers) == schedule(42, 1200, workers)
    assert schedule(42, 1200, workers) != schedule(43, 1200, workers)


def test_every_kind_comes_once_before_any_comes_twice_and_none_at_the_end() -> None:
    plan = schedule(7, 1200, ["w1", "w2", "w3"])
    assert sorted(f.kind for f in plan[: len(KINDS)]) == sorted(KINDS)
    assert all(f.at < 1200 - 20 for f in plan)
    for seed in range(200):
        kinds = [f.kind for f in schedule(seed, 3600, ["w1"])]
        assert all(a != b for a, b in itertools.pairwise(kinds)), (seed, kinds)
    assert all(f.target in ("w1", "w2", "w3") for f in plan if f.kind.startswith("worker"))
    # A SIGSTOP lasts longer than every heartbeat timeout, so it is noticed.
    assert all(f.hold > 20 for f in plan if f.kind == "worker_stop")


def test_the_ledger_is_read_in_order_of_ends_skipping_torn_lines() -> None:
    text = "r w t2 w1 5.0 6.0\nr w t1 w2 1.0 2.5\nr w torn w1 1.0\n"
    assert [line.task for line in read_ledger(text)] == ["t1", "t2"]


def _fault(kind: str, at: float, target: str = "", undone: float | None = None) -> FaultRec:
    return FaultRec(Fault(at, kind, target, 0.0), at=at, target=target, undone_at=undone)


def test_a_second_run_is_at_least_once_only_when_a_fault_explains_it() -> None:
    first = Line("r", "w", "t", "w1", 10.0, 11.0)
    again = Line("r", "w", "t", "w2", 30.0, 31.0)
    killed = _fault("worker_kill", 11.5, "w1", 20.0)
    other = _fault("worker_kill", 11.5, "w3", 20.0)
    before = _fault("worker_kill", 2.0, "w1", 5.0)
    server = _fault("server_kill", 12.0, "", 14.0)
    assert cause_of(first, again, [killed], 0.0) is not None
    assert cause_of(first, again, [server], 0.0) is not None
    assert cause_of(first, again, [other, before], 0.0) is None
