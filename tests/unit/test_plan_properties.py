"""Property-based: whatever a plan file holds, loading it ends, and only in a plan error.

Generated and mutated plans (keys of the wrong type, deep nesting, aliases and alias
bombs, huge and non-finite numbers, odd unicode, malformed expressions and durations,
``--set`` overrides, arbitrary bytes) go through ``load_plan`` and ``towline
validate``. Each must load or raise PlanError, and validate must exit 0 or 2 with no
traceback, within the deadline of :mod:`tests.planguard` (a child process killed past
it: a hang fails the test, whatever it hangs in).

The number of examples is the hypothesis profile's (tests/conftest.py): modest by
default, ``TOWLINE_HYPOTHESIS=thorough`` for many more.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from tests.planguard import Outcome, PlanGuard

pytestmark = pytest.mark.timeout(600)  # hypothesis runs many examples in one test


@pytest.fixture(scope="module")
def guard() -> Iterator[PlanGuard]:
    g = PlanGuard()
    try:
        yield g
    finally:
        g.close()


def sane(outcome: Outcome) -> None:
    """Loaded, or a plan error; validate agrees, with its exit code and no traceback."""
    assert outcome.loaded in ("ok", "plan_error"), outcome.detail
    assert "Traceback" not in outcome.err, outcome.err
    assert "unexpected error" not in outcome.err, outcome.err
    expected = 0 if outcome.loaded == "ok" else 2
    assert outcome.code == expected, (outcome.code, outcome.out, outcome.err, outcome.detail)
    if outcome.loaded == "plan_error":
        assert outcome.err.strip(), "a plan error says what is wrong"


BASE: dict[str, Any] = {
    "version": 1,
    "name": "bump-deps",
    "labels": {"team": "platform"},
    "settings": {"max_parallel": 4, "timeout": "72h", "budget": {"max_cost_usd": 5}},
    "defaults": {"timeout": "10m", "retry": {"max_attempts": 3, "initial_interval": "1s"}},
    "workstreams": [
        {
            "id": "api",
            "tasks": [
                {"id": "apply", "tool": "echo", "with": {"v": "1.2"}},
                {
                    "id": "test",
                    "tool": "shell",
                    "needs": ["apply"],
                    "with": {"command": ["make", "${{ tasks.apply.outputs.v }}"]},
                    "on_failure": {"strategy": "pause", "timeout": "24h", "default": "abort"},
                    "if": "${{ tasks.apply.status == 'succeeded' }}",
                },
                {"id": "nap", "tool": "wait", "needs": ["test"], "with": {"for": "3d"}},
            ],
        },
        {
            "id": "web",
            "needs": ["api"],
            "tasks": [
                {
                    "id": "deploy",
                    "tool": "echo",
                    "needs": ["api.test"],
                    "approval": {"required": True, "timeout": "48h"},
                    "rollback": {"tool": "echo", "with": {"undo": True}},
                    "cache": {"ttl": "1h", "key": ["v1"]},
                    "with": {"who": "${{ run.id }}", "token": "${{ secrets.DEPLOY_TOKEN }}"},
                }
            ],
        },
    ],
}

ODD_STRINGS = [
    "${{",
    "}}",
    "${{ }}",
    "${{ tasks. }}",
    "${{ tasks.apply.outputs.v",
    "${{ " + "!" * 3000 + "x }}",
    "${{ " + "[" * 300 + "]" * 300 + " }}",
    "${{ (((((((( }}",
    "${{ __import__('os').system('x') }}",
    "${{ tasks.apply.outputs['a'][0][-1] }}",
    "${{ 1 if true else 2 }}",
    "${{ 'unterminated }}",
    "${{ secrets.X == 'a' }}",
    "${{ a.b.c.d.e.f.g.h }}",
    "${{" * 200,
    "99999999999999d",
    "1e309",
    "-5s",
    "3651d",
    "1" * 400 + "s",
    "auto",
    ".inf",
    "\u202e\u200b\ufeff",
    "\U0001f600" * 50,
    "\x00\x01\x7f",
    "a" * 5000,
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**60), max_value=10**60),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(ODD_STRINGS),
    st.builds(
        lambda body, tail: "${{ " + body + " }}" + tail,
        st.text(alphabet="!()[]'\".&|=<>~ -_tasksoutpuapplyv0123", max_size=60),
        st.text(max_size=5),
    ),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=25,
)


def paths(data: Any, here: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield here
    if isinstance(data, dict):
        for k, v in data.items():
            yield from paths(v, (*here, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from paths(v, (*here, i))


ALL_PATHS = [p for p in paths(BASE) if p]


def replace(data: Any, path: tuple[Any, ...], value: Any) -> None:
    parent = data
    for seg in path[:-1]:
        parent = parent[seg]
    if value is _DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value


_DELETE = object()
DEEP = "DEEP-NESTING-HERE"  # replaced in the text by brackets nested n deep


@st.composite
def mutated_plans(draw: st.DrawFn) -> tuple[str, str]:
    data = copy.deepcopy(BASE)
    deep = draw(st.sampled_from([0, 0, 10, 63, 65, 300, 2000]))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        path = draw(st.sampled_from(ALL_PATHS))
        try:
            value = draw(st.one_of(values, st.just(_DELETE), st.just(DEEP)))
            replace(data, path, value)
        except (KeyError, IndexError, TypeError):
            pass  # an earlier mutation removed or replaced where this path led
    if draw(st.booleans()):
        text = json.dumps(data, ensure_ascii=draw(st.booleans()))
        suffix = ".json"
    else:
        text = yaml.safe_dump(data, allow_unicode=draw(st.booleans()), sort_keys=False)
        suffix = draw(st.sampled_from([".yaml", ".yml", ""]))
    quoted = json.dumps(DEEP) if suffix == ".json" else DEEP
    return text.replace(quoted, "[" * deep + "]" * deep), suffix


@given(plan=mutated_plans())
def test_mutated_plans_load_or_fail_with_a_plan_error(
    guard: PlanGuard, plan: tuple[str, str]
) -> None:
    text, suffix = plan
    sane(guard.check(text, suffix=suffix))


YAML_BITS = [*"{}[]:,-&*!|>'\"#%@` \n\t?", "&a ", "*a", "<<: ", "!!binary ", "!!set "]


@given(
    edits=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=10_000),
            st.integers(min_value=0, max_value=8),
            st.one_of(st.sampled_from(YAML_BITS), st.text(max_size=6)),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_text_edits_of_a_plan_load_or_fail_with_a_plan_error(
    guard: PlanGuard, edits: list[tuple[int, int, str]]
) -> None:
    text = yaml.safe_dump(BASE, sort_keys=False)
    for at, cut, insert in edits:
        at %= len(text) + 1
        text = text[:at] + insert + text[at + cut :]
    sane(guard.check(text))


@st.composite
def alias_plans(draw: st.DrawFn) -> str:
    """Aliases in a task's ``with``: bombs of any width and depth, recursion, merges."""
    levels = draw(st.integers(min_value=1, max_value=25))
    width = draw(st.integers(min_value=1, max_value=12))
    kind = draw(st.sampled_from(["list", "map", "merge", "recursive", "unknown"]))
    lines = ["          l0: &l0 [lol, lol]"]
    for i in range(1, levels):
        refs = [f"*l{i - 1}"] * width
        if kind == "map":
            body = "{" + ", ".join(f"k{j}: {r}" for j, r in enumerate(refs)) + "}"
        elif kind == "merge":
            body = f"{{<<: *l{i - 1}, k{i}: [{', '.join(refs)}]}}" if i > 1 else "{k: 1}"
        else:
            body = "[" + ", ".join(refs) + "]"
        lines.append(f"          l{i}: &l{i} {body}")
    if kind == "recursive":
        lines.append(f"          r: &r [*l{levels - 1}, {{again: *r}}]")
    if kind == "unknown":
        lines.append("          u: *nowhere")
    head = yaml.safe_dump({k: v for k, v in BASE.items() if k != "workstreams"}, sort_keys=False)
    return (
        head + "workstreams:\n  - id: w\n    tasks:\n      - id: t\n        tool: echo\n"
        "        with:\n" + "\n".join(lines) + "\n"
    )


@given(text=alias_plans())
def test_aliases_load_within_the_limits_or_fail_with_a_plan_error(
    guard: PlanGuard, text: str
) -> None:
    sane(guard.check(text))


SET_KEYS = [
    "name",
    "version",
    "settings.max_parallel",
    "settings.timeout",
    "workstreams.api.tasks.test.with.command",
    "workstreams.api.tasks.apply.with",
    "workstreams.0.tasks.9.id",
    "workstreams.web.needs",
    "workstreams.nope.tasks",
    "labels.a\\.b",
    "",
    "..",
    "a" * 300,
]
SET_VALUES = [
    "2",
    ".inf",
    "-.inf",
    ".nan",
    "99999999999999d",
    "[make, test]",
    "{a: 1}",
    "&x [*x]",
    "[&a [1, 1], *a, *a]",
    "9" * 500,
    "'unterminated",
    "${{ !!!! }}",
    "",
    "null",
]


@given(
    sets=st.lists(
        st.builds(
            lambda k, v: f"{k}={v}" if k is not None else v,
            st.one_of(st.none(), st.sampled_from(SET_KEYS)),
            st.one_of(st.sampled_from(SET_VALUES), st.text(max_size=20)),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_set_overrides_load_or_fail_with_a_plan_error(guard: PlanGuard, sets: list[str]) -> None:
    sane(guard.check(yaml.safe_dump(BASE, sort_keys=False), sets=sets))


@given(data=st.binary(max_size=2000), suffix=st.sampled_from([".yaml", ".json", ""]))
def test_any_bytes_load_or_fail_with_a_plan_error(
    guard: PlanGuard, data: bytes, suffix: str
) -> None:
    sane(guard.check(data, suffix=suffix))


def test_the_guard_fails_a_hang_and_starts_afresh(guard: PlanGuard) -> None:
    """The harness itself: a child that does not answer is killed at the deadline."""
    short = PlanGuard(deadline=1.0)
    try:
        short.check("version: 1")  # started and answering
        with pytest.raises(AssertionError, match=r"no answer within 1s \(a hang\) for a stall"):
            short.stall()
        sane(short.check(yaml.safe_dump(BASE)))  # a new child
    finally:
        short.close()


def _many(n: int, task: Any, **plan: Any) -> str:
    tasks = [task(i) for i in range(n)]
    return json.dumps(
        {"version": 1, "name": "x", "workstreams": [{"id": "w", "tasks": tasks}]} | plan
    )


LARGE = {
    "misspelt needs": _many(10_000, lambda i: {"id": f"t{i}", "tool": "echo", "needs": [f"x{i}"]}),
    "unknown tools": _many(10_000, lambda i: {"id": f"t{i}", "tool": f"tool{i}"}),
    "bad ids and tools": _many(10_000, lambda i: {"id": f"t {i}", "tool": 5, "needs": [f"u{i}"]}),
    "duplicate ids": _many(20_000, lambda i: {"id": "t", "tool": "echo"}),
    "bad labels": _many(
        1, lambda i: {"id": "t", "tool": "echo"}, labels={f"k{i}": i for i in range(100_000)}
    ),
    "bad expressions": _many(
        2_000,
        lambda i: {"id": f"t{i}", "tool": "echo", "with": {"a": "${{ " + "!" * 100 + f"x{i} }}}}"}},
    ),
}


@pytest.mark.parametrize("name", list(LARGE))
def test_large_plans_full_of_problems_end_with_a_plan_error(guard: PlanGuard, name: str) -> None:
    """Thousands of problems of one kind: each found in linear time (suggestions such as
    "did you mean" are bounded), a bounded list of them reported."""
    outcome = guard.check(LARGE[name], suffix=".json")
    sane(outcome)
    assert outcome.loaded == "plan_error"
    assert outcome.err.rstrip().endswith("more problems")
