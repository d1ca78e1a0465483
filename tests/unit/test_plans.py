from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from tests.helpers import echo, plan, ws
from towline.plan.load import PlanError, apply_sets, check_data, load_plan
from towline.plan.validate import Problem


class CommandInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    command: list[str]


class AnyInput(BaseModel):
    model_config = ConfigDict(extra="allow")


TOOLS: dict[str, type[BaseModel]] = {"echo": AnyInput, "run": CommandInput}

YAML_PLAN = """\
version: 1
name: bump-deps
settings: {max_parallel: 4}
workstreams:
  - id: api
    tasks:
      - id: build
        tool: run
        with: {command: [make, build]}
      - id: test
        tool: run
        needs: [build]
        with: {command: [make, test]}
  - id: web
    needs: [api]
    tasks:
      - id: build
        tool: run
        with: {command: [make]}
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_error(path: Path | str, **kwargs: Any) -> PlanError:
    with pytest.raises(PlanError) as info:
        load_plan(path, tools=TOOLS, **kwargs)
    return info.value


# Reading files


def test_yaml_plan_loads(tmp_path: Path) -> None:
    spec = load_plan(write(tmp_path, "plan.yaml", YAML_PLAN), tools=TOOLS)
    assert spec.name == "bump-deps"
    assert [t.id for t in spec.workstreams[0].tasks] == ["build", "test"]


def test_json_plan_loads(tmp_path: Path) -> None:
    data = plan(ws("api", {"id": "a", "tool": "run", "with": {"command": ["true"]}}))
    spec = load_plan(write(tmp_path, "plan.json", json.dumps(data)), tools=TOOLS)
    assert spec.workstreams[0].tasks[0].with_ == {"command": ["true"]}


def test_format_is_sniffed_without_a_known_suffix(tmp_path: Path) -> None:
    data = plan(ws("api", {"id": "a", "tool": "run", "with": {"command": ["true"]}}))
    assert load_plan(write(tmp_path, "plan.txt", json.dumps(data)), tools=TOOLS).name == "test"
    assert load_plan(write(tmp_path, "plan", YAML_PLAN), tools=TOOLS).name == "bump-deps"


def test_registered_tools_are_the_default(tmp_path: Path) -> None:
    text = "version: 1\nname: x\nworkstreams: [{id: w, tasks: [{id: a, tool: echo}]}]\n"
    assert load_plan(write(tmp_path, "plan.yaml", text)).name == "x"


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    error = load_error(path)
    assert str(error) == f"{path}: file not found"
    assert error.source == str(path)
    assert error.problems == [Problem("", "file not found")]


def test_a_directory_is_not_a_plan(tmp_path: Path) -> None:
    assert str(load_error(tmp_path)) == f"{tmp_path}: is a directory, not a plan file"


def test_binary_file_is_not_a_plan(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_bytes(b"\xff\xfe\x00bad")
    assert "not a text file" in str(load_error(path))


def test_yaml_syntax_error_gives_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "plan.yaml", "version: 1\nname: x\nworkstreams: [\n  - id: a\n")
    message = str(load_error(path))
    assert message.startswith(f"{path}: invalid YAML at line ")
    assert ", column " in message


def test_yaml_syntax_error_points_at_the_problem(tmp_path: Path) -> None:
    path = write(tmp_path, "plan.yaml", "version: 1\nname: x: y\n")
    # libyaml says "... in this context", PyYAML's own parser "... here"
    assert str(load_error(path)).startswith(
        f"{path}: invalid YAML at line 2, column 8: mapping values are not allowed "
    )


def test_duplicate_yaml_key_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "plan.yaml", "version: 1\nname: a\nname: b\n")
    assert str(load_error(path)) == (
        f"{path}: invalid YAML at line 3, column 1: duplicate key 'name'"
    )


def test_json_syntax_error_gives_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "plan.json", '{"version": 1,\n "name": }')
    assert str(load_error(path)) == (f"{path}: invalid JSON at line 2, column 10: Expecting value")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the plan is empty"),
        ("- a\n- b\n", "not a list"),
        ("just text\n", "not a string"),
    ],
)
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, "plan.yaml", text)
    error = load_error(path)
    assert len(error.problems) == 1
    assert message in str(error)


def test_every_problem_is_listed_one_per_line_with_the_file_name(tmp_path: Path) -> None:
    text = YAML_PLAN.replace("needs: [build]", "needs: [biuld]").replace("tool: run", "tool: rn")
    path = write(tmp_path, "plan.yaml", text)
    lines = str(load_error(path)).splitlines()
    assert lines == [
        f"{path}: workstreams[0].tasks[0].tool: unknown tool 'rn' (did you mean 'run'?)",
        f"{path}: workstreams[0].tasks[1].tool: unknown tool 'rn' (did you mean 'run'?)",
        f"{path}: workstreams[0].tasks[1].needs: unknown task 'biuld' (did you mean 'build'?)",
        f"{path}: workstreams[1].tasks[0].tool: unknown tool 'rn' (did you mean 'run'?)",
    ]


def test_check_data_raises_with_every_problem() -> None:
    with pytest.raises(PlanError) as info:
        check_data(plan(ws("w", echo("a", needs=["b"]), echo("a"))), tools=TOOLS)
    assert [str(p) for p in info.value.problems] == [
        "workstreams[0].tasks[0].needs: unknown task 'b'",
        "workstreams[0].tasks[1].id: duplicate task id 'a' (also tasks[0])",
    ]


# --set


def test_set_overrides_are_parsed_as_yaml(tmp_path: Path) -> None:
    spec = load_plan(
        write(tmp_path, "plan.yaml", YAML_PLAN),
        sets=[
            "settings.max_parallel=2",
            "workstreams.api.tasks.test.with.command=[make, check]",
            "labels.team=infra",
        ],
        tools=TOOLS,
    )
    assert spec.settings.max_parallel == 2
    assert spec.workstreams[0].tasks[1].with_ == {"command": ["make", "check"]}
    assert spec.labels == {"team": "infra"}


def test_set_finds_list_items_by_id_or_index() -> None:
    data = plan(ws("api", echo("a"), echo("b")))
    out = apply_sets(data, ["workstreams.0.tasks.b.priority=5", "workstreams.api.tasks.1.if=true"])
    assert out["workstreams"][0]["tasks"][1] == {
        "id": "b",
        "tool": "echo",
        "priority": 5,
        "if": True,
    }


def test_set_creates_missing_mappings_and_leaves_the_input_alone() -> None:
    data = plan(ws("api", echo("a")))
    out = apply_sets(data, ["settings.failure_policy=continue", "workstreams.api.tasks.a.with.x="])
    assert out["settings"] == {"failure_policy": "continue"}
    assert out["workstreams"][0]["tasks"][0]["with"] == {"x": ""}
    assert "settings" not in data
    assert "with" not in data["workstreams"][0]["tasks"][0]


def test_set_accepts_escaped_dots_in_keys() -> None:
    out = apply_sets({"labels": {}}, [r"labels.example\.com/team=infra"])
    assert out["labels"] == {"example.com/team": "infra"}


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("max_parallel", "--set max_parallel: expected KEY=VALUE, e.g. settings.max_parallel=2"),
        ("=3", "--set =3: expected KEY=VALUE"),
        ("settings..x=1", "--set settings..x=1: empty key in 'settings..x'"),
        (
            "workstreams.apx.tasks.a.priority=1",
            "--set workstreams.apx.tasks.a.priority=1: workstreams has no item with id or "
            "index 'apx' (did you mean 'api'?)",
        ),
        ("workstreams.7.id=x", "workstreams has no item with id or index '7'"),
        ("name.first=x", "--set name.first=x: name is a string, so it has no 'first'"),
        ("settings.max_parallel=[1", "the value is not valid YAML"),
    ],
)
def test_bad_set_is_a_plan_error_naming_it(item: str, message: str) -> None:
    data = plan(ws("api", echo("a")))
    with pytest.raises(PlanError) as info:
        apply_sets(data, [item])
    assert len(info.value.problems) == 1
    assert message in str(info.value)


def test_bad_set_in_load_plan_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "plan.yaml", YAML_PLAN)
    error = load_error(path, sets=["workstreams.nope.id=x"])
    assert str(error).startswith(f"{path}: --set workstreams.nope.id=x: workstreams has no item")


def test_set_values_are_validated_like_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "plan.yaml", YAML_PLAN)
    error = load_error(path, sets=["settings.max_parallel=0"])
    assert str(error) == (
        f"{path}: settings.max_parallel: should be greater than or equal to 1 (got 0)"
    )
