"""The workstream's scheduler (towline.plan.dag): what is ready, in which order, and what
a failure blocks."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tests.helpers import echo, plan, ws
from towline.plan.dag import Node, Scheduler, cross_workstream_refs
from towline.plan.load import check_data


def _drain(s: Scheduler) -> list[str]:
    out = []
    while (tid := s.pop_ready()) is not None:
        out.append(tid)
    return out


def test_ready_tasks_come_by_priority_then_plan_order() -> None:
    s = Scheduler(
        [Node("a"), Node("b", priority=5), Node("c"), Node("d", priority=5), Node("e", priority=-1)]
    )

    assert s.ready_count() == 5
    assert _drain(s) == ["b", "d", "a", "c", "e"]
    assert not s.has_ready()
    assert s.pop_ready() is None


def test_a_task_is_ready_once_every_need_succeeded() -> None:
    s = Scheduler([Node("a"), Node("b"), Node("c", needs=("a", "b"), priority=9), Node("d")])
    assert _drain(s) == ["a", "b", "d"]

    assert s.finish("a", succeeded=True) == []
    assert not s.has_ready()
    assert s.finish("b", succeeded=True) == []
    assert _drain(s) == ["c"]


def test_a_newly_ready_task_goes_before_waiting_ones_of_lower_priority() -> None:
    s = Scheduler([Node("a"), Node("b"), Node("c"), Node("urgent", needs=("a",), priority=1)])
    assert s.pop_ready() == "a"

    s.finish("a", succeeded=True)

    assert _drain(s) == ["urgent", "b", "c"]


def test_a_failure_blocks_its_dependents_transitively_naming_the_need_that_blocks_each() -> None:
    s = Scheduler(
        [
            Node("a"),
            Node("b", needs=("a",)),
            Node("c", needs=("b",)),
            Node("d", needs=("a", "x")),
            Node("x"),
            Node("e", needs=("x",)),
        ]
    )
    assert _drain(s) == ["a", "x"]

    blocked = s.finish("a", succeeded=False)

    assert blocked == [("b", "a"), ("c", "b"), ("d", "a")]
    # d's other need succeeding later does not make it ready: it can never run.
    assert s.finish("x", succeeded=True) == []
    assert _drain(s) == ["e"]


def test_a_task_blocked_twice_is_reported_once() -> None:
    s = Scheduler([Node("a"), Node("b"), Node("c", needs=("a", "b"))])
    _drain(s)

    assert s.finish("a", succeeded=False) == [("c", "a")]
    assert s.finish("b", succeeded=False) == []


def test_finishing_the_same_task_again_changes_nothing() -> None:
    s = Scheduler([Node("a"), Node("b", needs=("a",))])
    _drain(s)
    assert s.finish("a", succeeded=True) == []

    assert s.finish("a", succeeded=False) == []
    assert _drain(s) == ["b"]


def test_needs_outside_the_workstream_are_refs_finished_like_local_ones() -> None:
    s = Scheduler([Node("deploy", needs=("api.build",)), Node("notify", needs=("api.test",))])
    assert not s.has_ready()

    assert s.finish("api.build", succeeded=True) == []
    assert s.finish("api.test", succeeded=False) == [("notify", "api.test")]
    assert _drain(s) == ["deploy"]


def test_restore_replays_outcomes_and_returns_the_tasks_they_block() -> None:
    s = Scheduler(
        [
            Node("a"),
            Node("b", needs=("a",)),
            Node("c", needs=("other.t",)),
            Node("d", needs=("b", "c")),
            Node("e"),
        ]
    )

    blocked = s.restore({"b": True, "a": True, "other.t": False})

    # Outside refs first, then local tasks in plan order.
    assert blocked == [("c", "other.t"), ("d", "c")]
    # Restored tasks are done: neither ready again nor blocked.
    assert _drain(s) == ["e"]


def test_restore_of_a_failure_blocks_what_has_not_finished() -> None:
    s = Scheduler([Node("a"), Node("b", needs=("a",)), Node("c", needs=("b",))])

    assert s.restore({"a": False}) == [("b", "a"), ("c", "b")]
    assert not s.has_ready()


def test_take_removes_a_running_task_from_the_ready_set() -> None:
    s = Scheduler([Node("a", priority=1), Node("b")])

    s.take("a")

    assert _drain(s) == ["b"]
    # A taken task that finishes releases its dependents as usual.
    s2 = Scheduler([Node("a"), Node("b", needs=("a",))])
    s2.take("a")
    assert not s2.has_ready()
    s2.finish("a", succeeded=True)
    assert _drain(s2) == ["b"]


def test_after_stop_nothing_is_ready_whatever_finishes() -> None:
    s = Scheduler([Node("a"), Node("b"), Node("c", needs=("a",))])
    assert s.pop_ready() == "a"

    s.stop()

    assert not s.has_ready()
    assert s.ready_count() == 0
    assert s.finish("a", succeeded=True) == []
    assert s.pop_ready() is None
    # Failures still say what they block (the workstream records those tasks as skipped).
    s2 = Scheduler([Node("a"), Node("b", needs=("a",))])
    s2.stop()
    assert s2.finish("a", succeeded=False) == [("b", "a")]


def test_cross_workstream_refs_are_needs_and_expression_reads_of_other_workstreams() -> None:
    spec = check_data(
        plan(
            ws("api", echo("build"), echo("test", needs=["build"])),
            ws(
                "web",
                echo(
                    "deploy",
                    needs=["api.test"],
                    **{"with": {"v": "${{ tasks.api.build.outputs.x }}"}},
                ),
                echo("after", needs=["deploy"], **{"if": "${{ tasks.web.deploy.outputs.ok }}"}),
                needs=["api"],
            ),
        )
    )

    refs = cross_workstream_refs(spec)

    assert refs["web"] == {"api.test", "api.build"}
    assert not refs["api"]


# A DAG: each task may need any earlier one (so there is no cycle).
_dags = st.integers(1, 12).flatmap(
    lambda n: st.tuples(
        st.just(n),
        st.lists(st.lists(st.integers(0, max(n - 1, 0)), max_size=3), min_size=n, max_size=n),
        st.lists(st.integers(-2, 2), min_size=n, max_size=n),
        st.lists(st.booleans(), min_size=n, max_size=n),
    )
)


@given(_dags)
def test_a_workstream_runs_each_task_once_after_its_needs_or_blocks_it(
    dag: tuple[int, list[list[int]], list[int], list[bool]],
) -> None:
    n, raw_needs, priorities, succeeds = dag
    needs = {f"t{i}": tuple(sorted({f"t{j}" for j in raw_needs[i] if j < i})) for i in range(n)}
    s = Scheduler([Node(f"t{i}", needs[f"t{i}"], priorities[i]) for i in range(n)])
    outcome: dict[str, bool] = {}
    blocked: dict[str, str] = {}

    while (tid := s.pop_ready()) is not None:
        assert tid not in outcome
        assert tid not in blocked
        assert all(outcome.get(need) for need in needs[tid]), (tid, needs[tid], outcome)
        outcome[tid] = succeeds[int(tid[1:])]
        for task, because in s.finish(tid, succeeded=outcome[tid]):
            assert task not in blocked
            assert task not in outcome
            blocked[task] = because

    # Every task ran or was blocked by a need that failed or was itself blocked.
    assert set(outcome) | set(blocked) == set(needs)
    for task, because in blocked.items():
        assert because in needs[task]
        assert outcome.get(because) is False or because in blocked
