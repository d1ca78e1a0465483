"""The limits: every input past one is rejected cheaply, with a message naming it.

Each case is one that crashed, hung or wedged towline before (issue 12): a recursive
alias, alias bombs, deep nesting, huge numbers and durations, endless files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import echo, plan, ws
from towline.durations import parse_duration
from towline.plan import expressions, limits
from towline.plan.load import PlanError, apply_sets, check_data, load_plan, parse_yaml
from towline.starter.api import BadInput, check_run_id, new_run_id

HEAD = (
    "version: 1\nname: x\nworkstreams:\n  - id: w\n    tasks:\n      - id: t\n        tool: echo\n"
)


def write(tmp_path: Path, text: str, name: str = "plan.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def rejected(path: Path | str, **kwargs: Any) -> str:
    with pytest.raises(PlanError) as info:
        load_plan(path, **kwargs)
    return str(info.value)


def json_with_priority(number: str) -> str:
    """A one-task JSON plan whose task's priority is ``number``, as written."""
    text = json.dumps(plan(ws("w", echo("t", priority=1))))
    return text.replace('"priority": 1', f'"priority": {number}')


def with_value(value: str) -> str:
    """A one-task plan whose ``with`` is ``value``, written as YAML flow text."""
    return f"{HEAD}        with: {value}\n"


# Aliases


def test_a_recursive_alias_is_rejected_where_it_is_anchored(tmp_path: Path) -> None:
    path = write(tmp_path, with_value("{a: &x [1, *x]}"))
    assert rejected(path) == (
        f"{path}: line 8, column 19: an alias to a value that contains it (a recursive alias)"
    )


def test_a_recursive_mapping_alias_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, with_value("&m {a: 1, b: *m}"))
    assert "a recursive alias" in rejected(path)


def billion_laughs(levels: int, width: int) -> str:
    lines = [f"          l0: &l0 [{', '.join(['lol'] * width)}]"]
    for i in range(1, levels):
        lines.append(f"          l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]")
    return f"{HEAD}        with:\n" + "\n".join(lines) + "\n"


def test_billion_laughs_is_rejected_before_it_is_expanded(tmp_path: Path) -> None:
    text = billion_laughs(levels=10, width=9)  # 9^10 values
    assert len(text) < 1000
    path = write(tmp_path, text)
    message = rejected(path)
    assert "more than 250,000 values once aliases are expanded" in message


def test_a_doubling_alias_bomb_is_rejected(tmp_path: Path) -> None:
    lines = [f"          b{i}: &b{i} [*b{i - 1}, *b{i - 1}]" for i in range(1, 21)]
    text = f"{HEAD}        with:\n          b0: &b0 [1, 1]\n" + "\n".join(lines) + "\n"
    assert "once aliases are expanded" in rejected(write(tmp_path, text))


def test_aliases_within_the_limits_are_fine_and_set_changes_one_place(tmp_path: Path) -> None:
    text = billion_laughs(levels=3, width=3) + "        retry: &r {max_attempts: 2}\n"
    path = write(tmp_path, text)
    spec = load_plan(path, sets=["workstreams.w.tasks.t.with.l1=changed"])
    got = spec.workstreams[0].tasks[0].with_
    assert got["l1"] == "changed"
    assert got["l2"] == [[["lol"] * 3] * 3] * 3  # its uses of *l1 are copies


def test_long_strings_through_aliases_count_as_text(tmp_path: Path) -> None:
    big = "x" * (limits.MAX_STRING - 1)
    refs = ", ".join(["*s"] * 20)
    text = f'{HEAD}        with: {{s: &s "{big}", many: [{refs}]}}\n'
    assert "of text once aliases are expanded" in rejected(write(tmp_path, text))


# Sizes of files, nesting, numbers


def test_an_endless_file_is_read_no_further_than_the_limit() -> None:
    assert rejected("/dev/zero") == "/dev/zero: larger than 4 MiB, the limit for a plan file"


def test_a_file_past_the_limit_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, with_value("{a: 1}") + "#" * limits.MAX_PLAN_BYTES)
    assert "larger than 4 MiB" in rejected(path)


@pytest.mark.parametrize("depth", [limits.MAX_DEPTH + 1, 600, 5000])
def test_deep_nesting_in_yaml_is_rejected(tmp_path: Path, depth: int) -> None:
    path = write(tmp_path, with_value("{a: " + "[" * depth + "]" * depth + "}"))
    message = rejected(path)
    assert "nested more than 64 levels deep" in message or "maximum nesting depth" in message


@pytest.mark.parametrize("depth", [limits.MAX_DEPTH + 1, 600, 100_000])
def test_deep_nesting_in_json_is_rejected(tmp_path: Path, depth: int) -> None:
    data = plan(ws("w", echo("t", **{"with": {"a": "HOLE"}})))
    text = json.dumps(data).replace('"HOLE"', "[" * depth + "]" * depth)
    assert "nested more than 64 levels deep" in rejected(write(tmp_path, text, "plan.json"))


def test_nesting_up_to_the_limit_is_fine(tmp_path: Path) -> None:
    depth = limits.MAX_DEPTH - 6  # the plan's own levels above `with`
    spec = load_plan(write(tmp_path, with_value("{a: " + "[" * depth + "]" * depth + "}")))
    assert spec.workstreams[0].tasks[0].with_["a"]


@pytest.mark.parametrize("digits", [41, 5000])
def test_a_huge_integer_is_rejected_as_written(tmp_path: Path, digits: int) -> None:
    path = write(tmp_path, HEAD + f"        priority: {'9' * digits}\n")
    assert "is longer than 40 characters" in rejected(path)
    text = json_with_priority(f"{'9' * digits}")
    assert "is too long" in rejected(write(tmp_path, text, "plan.json"))


def test_an_integer_past_64_bits_is_rejected() -> None:
    with pytest.raises(PlanError, match=r"tasks\[0\]\.priority: the number is too large"):
        check_data(plan(ws("w", echo("t", priority=2**70))))


@pytest.mark.parametrize(("value", "shown"), [(".inf", "inf"), ("-.inf", "-inf"), (".nan", "nan")])
def test_numbers_that_are_not_finite_are_rejected(tmp_path: Path, value: str, shown: str) -> None:
    message = rejected(write(tmp_path, with_value(f"{{a: {value}}}")))
    assert message.endswith(f"workstreams[0].tasks[0].with.a: numbers must be finite, not {shown}")


def test_an_infinite_duration_is_reported_once(tmp_path: Path) -> None:
    path = write(tmp_path, HEAD + "        timeout: .inf\n")
    where = "workstreams[0].tasks[0].timeout"
    assert rejected(path) == f"{path}: {where}: numbers must be finite, not inf"


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_json_constants_that_are_not_json_are_rejected(tmp_path: Path, constant: str) -> None:
    text = json_with_priority(constant)
    assert "is not a number JSON allows" in rejected(write(tmp_path, text, "plan.json"))


def test_a_string_past_the_limit_is_rejected(tmp_path: Path) -> None:
    data = plan(ws("w", echo("t", **{"with": {"a": "x" * (limits.MAX_STRING + 1)}})))
    with pytest.raises(PlanError, match=r"with\.a: a string of 1 MiB characters"):
        check_data(data)


def test_a_long_key_is_rejected() -> None:
    with pytest.raises(PlanError, match="a key longer than 256 characters"):
        check_data(plan(ws("w", echo("t", **{"with": {"k" * 300: 1}}))))


def test_values_of_unsupported_types_are_rejected(tmp_path: Path) -> None:
    message = rejected(write(tmp_path, with_value("{a: !!binary /w==, b: !!set {x}}")))
    assert "with.a: unsupported value of type bytes" in message
    assert "with.b: unsupported value of type set" in message


def test_a_date_that_cannot_be_is_an_error_not_a_crash(tmp_path: Path) -> None:
    assert "cannot read this value" in rejected(write(tmp_path, with_value("{d: 0000-01-01}")))


@pytest.mark.parametrize(
    ("key", "kind"), [("[a, b]", "a list"), ("{a: 1}", "a mapping"), ("!!set {a}", "set")]
)
def test_a_key_that_is_not_a_scalar_is_an_error_not_a_crash(
    tmp_path: Path, key: str, kind: str
) -> None:
    path = write(tmp_path, with_value(f"{{? {key}\n          : c}}"))
    assert f"a key must be a string, not {kind}" in rejected(path)


def test_too_many_values_are_rejected_without_aliases() -> None:
    data = plan(ws("w", echo("t", **{"with": {"a": [1] * limits.MAX_VALUES}})))
    with pytest.raises(PlanError, match="more than 250,000 values"):
        check_data(data)


def test_a_cycle_in_python_data_is_rejected() -> None:
    data = plan(ws("w", echo("t", **{"with": {"a": []}})))
    data["workstreams"][0]["tasks"][0]["with"]["a"].append(data["workstreams"])
    with pytest.raises(PlanError, match="contains itself"):
        check_data(data)
    with pytest.raises(PlanError, match="contains itself"):
        apply_sets(data, ["name=y"])


def test_a_ten_thousand_task_plan_is_within_the_limits(tmp_path: Path) -> None:
    tasks = [
        echo(f"t{i}", needs=[f"t{i - 1}"] if i else [], **{"with": {"n": i}}) for i in range(10_000)
    ]
    text = json.dumps(plan(ws("w", *tasks)))
    assert len(text) < limits.MAX_PLAN_BYTES / 2
    assert len(load_plan(write(tmp_path, text, "plan.json")).workstreams[0].tasks) == 10_000


# Durations and expressions


@pytest.mark.parametrize("value", ["99999999999999d", "3651d", 1e309, float("inf"), 10**20])
def test_durations_past_the_limit_are_rejected(value: Any) -> None:
    with pytest.raises(ValueError, match=r"duration too long: .* \(at most 3650d\)"):
        parse_duration(value)


def test_nan_is_not_a_duration() -> None:
    with pytest.raises(ValueError, match="not a duration: nan"):
        parse_duration(float("nan"))


def test_a_duration_past_the_limit_in_a_plan_is_a_problem(tmp_path: Path) -> None:
    message = rejected(write(tmp_path, HEAD + "        timeout: 99999999999999d\n"))
    assert message.endswith(
        "tasks[0].timeout: duration too long: '99999999999999d' (at most 3650d)"
        "; or auto, to take it from the run history"
    )


def test_a_long_expression_is_rejected() -> None:
    text = "${{ " + "run.id == 'a' && " * 300 + "true }}"
    (message,) = expressions.check([text])
    assert "longer than 4,096 characters" in message


@pytest.mark.parametrize("prefix", ["!" * 4000, "!" * 40, "[" * 40, "[" * 200])
def test_deeply_nested_expressions_are_rejected(prefix: str) -> None:
    closing = "]" * len(prefix) if prefix[0] == "[" else ""
    (message,) = expressions.check([f"${{{{ {prefix}true{closing} }}}}"])
    assert "nested too deeply" in message or "too many nested parentheses" in message


def test_many_unterminated_expressions_are_found_in_one_pass() -> None:
    (message,) = expressions.check(["${{" * 300_000])
    assert "missing '}}'" in message


def test_parse_yaml_is_the_loader_set_values_use() -> None:
    with pytest.raises(PlanError, match="recursive alias"):
        apply_sets(plan(ws("w", echo("t"))), ["workstreams.w.tasks.t.with.a=&x [*x]"])
    assert parse_yaml("{a: 1}") == {"a": 1}


def test_the_limits_are_documented_with_their_values() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "plan.md").read_text()
    for name in (
        "MAX_PLAN_BYTES",
        "MAX_DEPTH",
        "MAX_VALUES",
        "MAX_TEXT",
        "MAX_STRING",
        "MAX_KEY",
        "MAX_EXPRESSION",
        "MAX_DURATION",
        "MAX_RUN_ID",
        "MAX_RUN_INPUT_JSON",
        "MAX_RUN_INPUT_PAYLOAD",
    ):
        assert name in docs, name


@pytest.mark.parametrize("run_id", ["bump-deps-7f3a2c", "a", "v1.2_3", "x" * limits.MAX_RUN_ID])
def test_run_ids_of_the_contract_are_accepted(run_id: str) -> None:
    check_run_id(run_id)
    check_run_id(new_run_id("A plan named like a sentence, with 'quotes' & more " * 5))


@pytest.mark.parametrize(
    "run_id", ["", ".", "..", "a/b", "a b", "é", "x" * (limits.MAX_RUN_ID + 1)]
)
def test_other_run_ids_are_rejected(run_id: str) -> None:
    with pytest.raises(BadInput, match=r"not a valid run id: .* \(use letters, digits"):
        check_run_id(run_id)
