"""The run's bookkeeping (towline.workflows.coordination) on its own."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from towline.workflows.coordination import SHOWN, ExportRoutes, Progress, SlotPool


def test_a_pool_shares_its_slots_evenly_and_never_gives_more_than_is_free() -> None:
    pool = SlotPool(size=10)
    assert pool.take("a", limit=4, unfinished=5) == 2  # 10 slots among 5 workstreams
    assert pool.take("b", limit=1, unfinished=4) == 1  # its own limit is lower
    assert pool.take("c", limit=100, unfinished=1) == 7  # the last one gets what is free
    assert pool.free == 0
    assert pool.take("d", limit=4, unfinished=1) is None
    pool.give_back("c")
    assert pool.free == 7
    pool.give_back("c")  # twice is harmless
    assert pool.free == 7


def test_every_workstream_gets_at_least_one_slot_however_many_there_are() -> None:
    pool = SlotPool(size=3)
    got = [pool.take(f"w{i}", limit=4, unfinished=1000) for i in range(3)]
    assert got == [1, 1, 1]
    assert pool.take("w3", limit=4, unfinished=997) is None


@given(
    size=st.integers(1, 50),
    steps=st.lists(st.tuples(st.booleans(), st.integers(1, 20), st.integers(1, 200)), max_size=60),
)
def test_a_pool_never_hands_out_more_than_its_size(
    size: int, steps: list[tuple[bool, int, int]]
) -> None:
    pool = SlotPool(size=size)
    for i, (take, limit, unfinished) in enumerate(steps):
        if take or not pool.held:
            got = pool.take(f"w{i}", limit=limit, unfinished=unfinished)
            assert got is None or 1 <= got <= limit
        else:
            pool.give_back(sorted(pool.held)[0])
        assert 0 <= pool.free <= size


def test_export_routes_go_both_ways_in_a_fixed_order() -> None:
    routes = ExportRoutes({"web": ["api.build", "api.test"], "docs": ["api.build"], "api": []})
    assert routes.exports("api") == ["build", "test"]
    assert routes.exports("web") == []
    assert routes.waiters("api.build") == ["docs", "web"]
    assert routes.waiters("api.nothing") == []
    assert routes.wanted_by("web") == ["api.build", "api.test"]
    assert routes.wanted_by("unknown") == []


def test_progress_counts_moves_and_keeps_short_lists() -> None:
    p = Progress({f"w{i}": "pending" for i in range(100)})
    assert p.summary() == "100 pending"
    p.moved("w0", "pending", "running")
    p.moved("w0", "running", "succeeded")
    p.moved("w1", "pending", "running")
    p.moved("w1", "running", "failed", "test gate failed")
    p.moved("w1", "failed", "failed")  # no move: nothing counted twice
    assert p.summary() == "98 pending, 1 succeeded, 1 failed"
    details = p.details("run-1", "running", paused_by=None)
    assert details.startswith("**Run running**: 100 workstream(s): 98 pending, 1 succeeded")
    assert "- w1: test gate failed" in details
    assert "**Latest**: w1 failed, w0 succeeded" in details


def test_the_details_stay_bounded_and_say_how_to_answer() -> None:
    p = Progress({f"w{i}": "running" for i in range(1000)})
    for i in range(500):
        p.waits(f"w{i}", ["deploy: approval", "check: operator"])
    for i in range(500, 1000):
        p.moved(f"w{i}", "running", "failed", f"reason {i}")
    details = p.details("run-1", "waiting", paused_by="ana")
    assert details.startswith("**Run waiting**: 1000 workstream(s): 500 running, 500 failed")
    assert "Paused by ana" in details
    assert "towline resume run-1" in details
    assert details.count("waits for") == SHOWN
    assert (
        "- w0.deploy waits for an approval: send the update `approve` or `reject` "
        """with `"w0.deploy"` (or `towline approve|reject run-1 w0.deploy`)""" in details
    )
    assert "w0.check waits for an operator: send the update `retry` or `skip` or `abort`" in details
    assert f"- ... and {1000 - SHOWN} more" in details
    assert f"- ... and {500 - SHOWN} more" in details
    assert len(details) < 4000


def test_a_wait_answered_or_ended_leaves_the_list() -> None:
    p = Progress({"a": "running", "b": "running"})
    p.waits("a", ["deploy: approval"])
    p.waits("b", ["x: answer", "y: answer"])
    assert p.waiting_total == 3
    p.waits("b", ["y: answer"])
    assert p.waiting_total == 2
    p.moved("a", "running", "succeeded")
    assert p.waiting_total == 1
    assert "a" not in p.waiting
    p.waits("b", [])
    assert p.waiting_total == 0
    assert "Waiting for a person" not in p.details("r", "running", paused_by=None)
