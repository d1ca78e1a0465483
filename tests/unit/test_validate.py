from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from tests.helpers import echo, plan, ws
from towline.activities.tools import TOOLS
from towline.plan.spec import PlanSpec
from towline.plan.validate import Problem, check_plan


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ShellInput(_Input):
    command: list[str]
    env: dict[str, str] = {}
    timeout: int = 60


class PatchInput(_Input):
    patch: str


# The real registry, plus stand-ins for tools a plan in the contract names.
FAKE_TOOLS: dict[str, type[BaseModel]] = {
    "shell": ShellInput,
    "test_gate": ShellInput,
    "patch.apply": PatchInput,
    "patch.revert": PatchInput,
}
TOOL_MODELS: dict[str, type[BaseModel]] = {
    **{name: t.input_model for name, t in TOOLS.items()},
    **FAKE_TOOLS,
}


def problems(data: Any) -> list[str]:
    spec, found = check_plan(data, TOOL_MODELS)
    assert (spec is None) == bool(found)
    return [str(p) for p in found]


def valid(data: Any) -> PlanSpec:
    spec, found = check_plan(data, TOOL_MODELS)
    assert found == []
    assert spec is not None
    return spec


def sh(tid: str, **extra: Any) -> dict[str, Any]:
    return {"id": tid, "tool": "shell", "with": {"command": ["true"]}, **extra}


CONTRACT_PLAN: dict[str, Any] = {
    "version": 1,
    "name": "bump-deps",
    "workstreams": [
        {
            "id": "api",
            "repo": {"path": "./repos/api"},
            "tasks": [
                {
                    "id": "apply",
                    "tool": "patch.apply",
                    "with": {"patch": "patches/api.diff"},
                    "rollback": {"tool": "patch.revert", "with": {"patch": "patches/api.diff"}},
                },
                {
                    "id": "test",
                    "tool": "test_gate",
                    "needs": ["apply"],
                    "with": {"command": ["python", "-m", "pytest", "-q"]},
                },
            ],
        },
        {
            "id": "web",
            "needs": ["api"],
            "repo": {"path": "./repos/web"},
            "tasks": [{"id": "build", "tool": "shell", "with": {"command": ["make", "build"]}}],
        },
    ],
}


# Valid plans and short forms


def test_the_contract_example_plan_is_valid() -> None:
    spec = valid(CONTRACT_PLAN)
    assert [w.id for w in spec.workstreams] == ["api", "web"]


def test_on_failure_short_form_is_the_strategy() -> None:
    spec = valid(plan(ws("w", echo("a", on_failure="skip"))))
    on_failure = spec.workstreams[0].tasks[0].on_failure
    assert on_failure is not None
    assert on_failure.strategy == "skip"


def test_approval_false_is_allowed() -> None:
    spec = valid(plan(ws("w", echo("a", approval=False))))
    approval = spec.workstreams[0].tasks[0].approval
    assert approval is not None
    assert approval.required is False


def test_approval_short_form_true_means_required() -> None:
    spec = valid(plan(ws("w", echo("a", approval=True))))
    approval = spec.workstreams[0].tasks[0].approval
    assert approval is not None
    assert approval.required


def test_problem_without_a_path_is_just_its_message() -> None:
    assert str(Problem("", "dependency cycle: a")) == "dependency cycle: a"
    assert str(Problem("name", "must not be empty")) == "name: must not be empty"


# Structure (pydantic's errors, made readable)


def test_unknown_key_suggests_the_closest_key() -> None:
    assert problems(plan(ws("w", {"id": "a", "toll": "echo"}))) == [
        "workstreams[0].tasks[0]: unknown key 'toll' (did you mean 'tool'?)",
        "workstreams[0].tasks[0]: missing required key 'tool'",
    ]


def test_unknown_key_suggests_aliases_as_written_in_plans() -> None:
    found = problems(plan(ws("w", echo("a", wiht={}, iff="true"))))
    assert found == [
        "workstreams[0].tasks[0]: unknown key 'wiht' (did you mean 'with'?)",
        "workstreams[0].tasks[0]: unknown key 'iff' (did you mean 'if'?)",
    ]


def test_unknown_top_level_key() -> None:
    data = plan(ws("w", echo("a")))
    data["workstream"] = []
    assert problems(data) == ["unknown key 'workstream' (did you mean 'workstreams'?)"]


def test_unknown_key_in_nested_settings() -> None:
    data = plan(ws("w", echo("a")), max_paralel=2)
    assert problems(data) == ["settings: unknown key 'max_paralel' (did you mean 'max_parallel'?)"]


def test_missing_required_key() -> None:
    assert problems({"version": 1, "workstreams": [ws("w", echo("a"))]}) == [
        "missing required key 'name'"
    ]


def test_bad_duration_keeps_the_duration_message() -> None:
    data = {"version": 1, "name": "x", "settings": {"timeout": "3 days"}}
    data["workstreams"] = [ws("w", echo("a", timeout="10x"))]
    assert problems(data) == [
        "settings.timeout: not a duration: '3 days' (use e.g. 90s, 10m, 48h, 3d)",
        "workstreams[0].tasks[0].timeout: not a duration: '10x' (use e.g. 90s, 10m, 48h, 3d); "
        "or auto, to take it from the run history",
    ]


def test_paths_use_with_and_if_as_written() -> None:
    assert problems(plan(ws("w", {"id": "a", "tool": "echo", "with": 3, "if": 3}))) == [
        "workstreams[0].tasks[0].with: expected a mapping, got 3",
        "workstreams[0].tasks[0].if: should be a valid string (got 3)",
    ]


def test_bad_short_form_is_reported_where_it_was_written() -> None:
    assert problems(plan(ws("w", echo("a", on_failure="retyr")))) == [
        "workstreams[0].tasks[0].on_failure: expected 'fail', 'skip', 'pause', 'fix' or "
        "'resolve', got 'retyr'"
    ]
    assert problems(plan(ws("w", echo("a", approval=5)))) == [
        "workstreams[0].tasks[0].approval: expected true, false or a mapping, got 5"
    ]


def test_union_errors_are_reported_once() -> None:
    assert problems(plan(ws("w", echo("a", cache={"ttl": "1h", "key": 5})))) == [
        "workstreams[0].tasks[0].cache.key: expected str or list[str], got 5"
    ]


def test_ranges_and_versions() -> None:
    data = plan(ws("w", echo("a")), max_parallel=0)
    data["version"] = 2
    assert problems(data) == [
        "version: expected 1, got 2",
        "settings.max_parallel: should be greater than or equal to 1 (got 0)",
    ]


def test_invalid_id_says_what_an_id_may_hold() -> None:
    assert problems(plan(ws("my ws", echo("a")))) == [
        "workstreams[0].id: not a valid id: 'my ws' (use letters, digits, '_' and '-', "
        "starting with a letter or a digit)"
    ]


def test_empty_lists_and_names() -> None:
    assert problems(plan(ws("w"), name="")) == [
        "name: must not be empty",
        "workstreams[0].tasks: must not be empty",
    ]


def test_repo_needs_exactly_one_source() -> None:
    assert problems(plan(ws("w", echo("a"), repo={"path": "x", "url": "y"}))) == [
        "workstreams[0].repo: give exactly one of 'path' or 'url'"
    ]


def test_a_plan_that_is_not_a_mapping() -> None:
    assert problems(["version", 1]) == ["expected a mapping, got a list"]


def test_structural_problems_come_in_document_order() -> None:
    data = {
        "name": "x",
        "version": 1,
        "workstreams": [{"tasks": [{"tool": "echo", "id": "a", "bogus": 1}], "id": "w", "x": 1}],
    }
    assert problems(data) == [
        "workstreams[0].tasks[0]: unknown key 'bogus'",
        "workstreams[0]: unknown key 'x'",
    ]


# Ids and needs


def test_duplicate_workstream_and_task_ids() -> None:
    data = plan(ws("api", echo("a"), echo("b"), echo("a")), ws("api", echo("c")))
    assert problems(data) == [
        "workstreams[0].tasks[2].id: duplicate task id 'a' (also tasks[0])",
        "workstreams[1].id: duplicate workstream id 'api' (also workstreams[0])",
    ]


def test_unknown_task_in_needs_suggests_closest_id() -> None:
    data = plan(ws("api", echo("apply"), echo("test", needs=["aply"])))
    assert problems(data) == [
        "workstreams[0].tasks[1].needs: unknown task 'aply' (did you mean 'apply'?)"
    ]


def test_needs_name_tasks_of_other_workstreams_as_ws_dot_task() -> None:
    valid(plan(ws("api", echo("a")), ws("web", echo("b", needs=["api.a", "web.c"]), echo("c"))))


def test_unknown_workstream_or_task_in_a_dotted_need() -> None:
    data = plan(
        ws("api", echo("apply")),
        ws("web", echo("b", needs=["apx.apply", "api.aply", "x.y.z"])),
    )
    assert problems(data) == [
        "workstreams[1].tasks[0].needs: unknown workstream 'apx' in 'apx.apply' "
        "(did you mean 'api'?)",
        "workstreams[1].tasks[0].needs: unknown task 'api.aply' (did you mean 'api.apply'?)",
        "workstreams[1].tasks[0].needs: not a task: 'x.y.z' (write 'task' or 'workstream.task')",
    ]


def test_a_workstream_named_in_task_needs_points_to_workstream_needs() -> None:
    data = plan(ws("api", echo("a")), ws("web", echo("b", needs=["api"])))
    assert problems(data) == [
        "workstreams[1].tasks[0].needs: unknown task 'api' (to wait for workstream 'api', "
        "list it in the workstream's needs)"
    ]


def test_unknown_workstream_in_workstream_needs() -> None:
    data = plan(ws("api", echo("a")), ws("web", echo("b"), needs=["apj", "web"]))
    assert problems(data) == [
        "workstreams[1].needs: unknown workstream 'apj' (did you mean 'api'?)",
        "workstreams[1].needs: a workstream cannot need itself",
    ]


def test_a_task_cannot_need_itself() -> None:
    assert problems(plan(ws("w", echo("a", needs=["a"])))) == [
        "workstreams[0].tasks[0].needs: a task cannot need itself"
    ]


# Cycles


def test_cycle_within_a_workstream_is_named() -> None:
    data = plan(ws("api", echo("a", needs=["b"]), echo("b", needs=["a"])))
    assert problems(data) == ["dependency cycle: api.a -> api.b -> api.a"]


def test_longer_cycle_lists_every_step() -> None:
    data = plan(ws("w", echo("a", needs=["c"]), echo("b", needs=["a"]), echo("c", needs=["b"])))
    assert problems(data) == ["dependency cycle: w.a -> w.c -> w.b -> w.a"]


def test_cycle_across_workstreams_through_task_needs() -> None:
    data = plan(ws("api", echo("a", needs=["web.b"])), ws("web", echo("b", needs=["api.a"])))
    assert problems(data) == ["dependency cycle: api.a -> web.b -> api.a"]


def test_cycle_through_a_workstream_need() -> None:
    data = plan(ws("api", echo("a", needs=["web.b"])), ws("web", echo("b"), needs=["api"]))
    assert problems(data) == [
        "dependency cycle: api.a -> web.b -> (workstream web needs api) -> api.a"
    ]


def test_workstream_only_cycle_is_reported_once() -> None:
    data = plan(
        ws("api", echo("a"), needs=["web"]),
        ws("web", echo("b"), needs=["api"]),
    )
    assert problems(data) == ["workstream dependency cycle: api -> web -> api"]


def test_every_independent_cycle_is_reported() -> None:
    data = plan(
        ws("x", echo("a", needs=["b"]), echo("b", needs=["a"]), echo("c")),
        ws("y", echo("a", needs=["b"]), echo("b", needs=["a"])),
        ws("p", echo("a"), needs=["q"]),
        ws("q", echo("a"), needs=["p"]),
    )
    assert problems(data) == [
        "workstream dependency cycle: p -> q -> p",
        "dependency cycle: x.a -> x.b -> x.a",
        "dependency cycle: y.a -> y.b -> y.a",
    ]


def test_a_very_long_cycle_is_shortened() -> None:
    count = 50
    tasks = [echo(f"t{i}", needs=[f"t{(i + 1) % count}"]) for i in range(count)]
    (found,) = problems(plan(ws("w", *tasks)))
    assert found.startswith("dependency cycle: w.t0 -> w.t1 -> ")
    assert "(39 more)" in found
    assert found.endswith(" -> w.t49 -> w.t0")


# Tools and their inputs


def test_unknown_tool_suggests_the_closest() -> None:
    data = plan(
        ws(
            "w",
            {"id": "a", "tool": "shel"},
            echo(
                "b",
                rollback={"tool": "patch.revrt"},
                on_failure={"strategy": "fix", "fix": {"tool": "ech"}},
            ),
        )
    )
    assert problems(data) == [
        "workstreams[0].tasks[0].tool: unknown tool 'shel' (did you mean 'shell'?)",
        "workstreams[0].tasks[1].on_failure.fix.tool: unknown tool 'ech' (did you mean 'echo'?)",
        "workstreams[0].tasks[1].rollback.tool: unknown tool 'patch.revrt' "
        "(did you mean 'patch.revert'?)",
    ]


def test_with_is_validated_against_the_tool_input() -> None:
    task = {"id": "a", "tool": "shell", "with": {"comand": ["x"], "timeout": "soon"}}
    assert problems(plan(ws("w", task))) == [
        "workstreams[0].tasks[0].with: unknown key 'comand' (did you mean 'command'?)",
        "workstreams[0].tasks[0].with.timeout: should be a valid integer, unable to parse "
        "string as an integer (got 'soon')",
        "workstreams[0].tasks[0].with: missing required key 'command'",
    ]


def test_with_nested_errors_have_their_own_path() -> None:
    task = {"id": "a", "tool": "shell", "with": {"command": ["ok", 5], "env": {"A": []}}}
    assert problems(plan(ws("w", task))) == [
        "workstreams[0].tasks[0].with.command[1]: should be a valid string (got 5)",
        "workstreams[0].tasks[0].with.env.A: should be a valid string",
    ]


def test_wait_duration_is_checked() -> None:
    task = {"id": "a", "tool": "wait", "with": {"for": "3 days"}}
    assert problems(plan(ws("w", task))) == [
        "workstreams[0].tasks[0].with.for: not a duration: '3 days' (use e.g. 90s, 10m, 48h, 3d)"
    ]


def test_values_with_expressions_are_checked_at_run_time() -> None:
    task = {
        "id": "b",
        "tool": "shell",
        "needs": ["a"],
        "with": {
            "command": "${{ tasks.a.outputs.command }}",
            "timeout": "${{ tasks.a.outputs.timeout }}",
            "env": {"X": "${{ tasks.a.outputs.x }}"},
        },
    }
    valid(plan(ws("w", echo("a"), task)))


def test_missing_and_unknown_keys_are_reported_even_next_to_expressions() -> None:
    task = {"id": "b", "tool": "shell", "needs": ["a"], "with": {"cmd": "${{ tasks.a.status }}"}}
    assert problems(plan(ws("w", echo("a"), task))) == [
        "workstreams[0].tasks[1].with: unknown key 'cmd' (did you mean 'command'?)",
        "workstreams[0].tasks[1].with: missing required key 'command'",
    ]


# Expressions


def test_expression_syntax_is_checked_at_its_path() -> None:
    task = echo("a", **{"with": {"x": ["ok", "${{ foo( }}"], "y": {"z": "${{ taks.b.status }}"}}})
    found = problems(plan(ws("w", task)))
    assert len(found) == 2
    assert found[0].startswith("workstreams[0].tasks[0].with.x[1]: ${{ foo( }}: not a valid")
    assert found[1] == (
        "workstreams[0].tasks[0].with.y.z: ${{ taks.b.status }}: unknown name 'taks' "
        "(did you mean 'tasks'?)"
    )


def test_expression_must_refer_to_a_task_among_the_needs() -> None:
    data = plan(
        ws(
            "api",
            echo("build"),
            echo("other"),
            echo("deploy", needs=["other"], **{"with": {"sha": "${{ tasks.build.outputs.sha }}"}}),
        )
    )
    assert problems(data) == [
        "workstreams[0].tasks[2].with.sha: refers to task 'build', which is not among this "
        "task's needs"
    ]


def test_expression_to_an_unknown_task_suggests_the_closest() -> None:
    data = plan(
        ws("api", echo("build"), echo("deploy", **{"with": {"x": "${{ tasks.biuld.status }}"}}))
    )
    assert problems(data) == [
        "workstreams[0].tasks[1].with.x: refers to unknown task 'biuld' (did you mean 'build'?)"
    ]


def test_expression_may_use_transitive_needs() -> None:
    data = plan(
        ws(
            "w",
            echo("a"),
            echo("b", needs=["a"]),
            echo("c", needs=["b"], **{"with": {"x": "${{ tasks.a.outputs.x }}"}}),
        )
    )
    valid(data)


def test_expression_may_use_tasks_of_needed_workstreams() -> None:
    data = plan(
        ws("api", echo("a")),
        ws("lib", echo("l"), needs=["api"]),
        ws("web", echo("b", **{"with": {"x": "${{ tasks.api.a.outputs.x }}"}}), needs=["lib"]),
    )
    valid(data)


def test_expression_to_another_workstream_needs_a_dependency() -> None:
    data = plan(
        ws("api", echo("a")),
        ws("web", echo("b", **{"with": {"x": "${{ tasks.api.a.outputs.x }}"}})),
    )
    assert problems(data) == [
        "workstreams[1].tasks[0].with.x: refers to task 'api.a', which is not among this "
        "task's needs"
    ]


def test_a_task_cannot_use_its_own_outputs_but_its_rollback_can() -> None:
    task = echo(
        "a",
        **{"with": {"x": "${{ tasks.a.outputs.x }}"}},
        rollback={"tool": "echo", "with": {"x": "${{ tasks.a.outputs.x }}"}},
    )
    assert problems(plan(ws("w", task))) == [
        "workstreams[0].tasks[0].with.x: refers to its own task 'a'"
    ]


def test_if_refers_only_to_needs_and_not_to_secrets() -> None:
    data = plan(
        ws(
            "w",
            echo("a"),
            echo("b", needs=["a"], **{"if": "tasks.a.status == 'succeeded'"}),
            echo("c", **{"if": "${{ tasks.a.outputs.ok }}"}),
            echo("d", **{"if": "${{ secrets.TOKEN }}"}),
            echo("e", **{"if": "tasks.a.status = 'x'"}),
        )
    )
    found = problems(data)
    assert found[:2] == [
        "workstreams[0].tasks[2].if: refers to task 'a', which is not among this task's needs",
        "workstreams[0].tasks[3].if: secrets cannot be used in 'if'",
    ]
    assert len(found) == 3
    assert found[2].startswith("workstreams[0].tasks[4].if: ${{ tasks.a.status = 'x' }}: ")


def test_secrets_in_with_are_fine() -> None:
    valid(plan(ws("w", echo("a", **{"with": {"token": "Bearer ${{ secrets.TOKEN }}"}}))))


def test_failure_is_only_available_in_a_fix() -> None:
    fix = {"tool": "echo", "with": {"why": "${{ failure.message }}"}}
    data = plan(
        ws(
            "w",
            echo("a", **{"with": {"x": "${{ failure.output }}"}}),
            echo("b", on_failure={"strategy": "fix", "fix": fix}),
        )
    )
    assert problems(data) == [
        "workstreams[0].tasks[0].with.x: 'failure' is only available in on_failure.fix"
    ]


# Recovery and budgets


def test_a_budget_is_accepted() -> None:
    spec = valid(plan(ws("w", echo("a")), budget={"max_cost_usd": 5, "on_exceed": "fail"}))
    assert spec.settings.budget is not None
    assert spec.settings.budget.on_exceed == "fail"


def test_recovery_strategies_need_their_own_options() -> None:
    data = plan(
        ws(
            "w",
            echo("a", on_failure={"strategy": "fix"}),
            echo("b", on_failure={"strategy": "skip", "fix": {"tool": "echo"}}),
            echo("c", on_failure={"strategy": "fail", "timeout": "1h"}),
            echo("d", on_failure={"strategy": "pause", "timeout": "1h", "default": "skip"}),
        )
    )
    assert problems(data) == [
        "workstreams[0].tasks[0].on_failure: strategy fix needs a fix call: fix: {tool, with}",
        "workstreams[0].tasks[1].on_failure.fix: fix is used only by the fix and resolve "
        "strategies",
        "workstreams[0].tasks[2].on_failure: timeout and default are used only by the pause "
        "strategy",
    ]


def test_cache_takes_plain_keys_but_no_expressions() -> None:
    valid(plan(ws("w", echo("a", cache={"ttl": "1h", "key": ["v2", "linux"]}))))
    data = plan(
        ws("w", echo("a"), echo("b", needs=["a"], cache={"ttl": "1h", "key": "${{ run.id }}"}))
    )
    assert problems(data) == [
        "workstreams[0].tasks[1].cache.key: expressions are not supported in cache.key; give "
        "plain strings naming what else the result depends on (e.g. a version), or pass the "
        "value in 'with'"
    ]


def test_plan_defaults_are_checked_too() -> None:
    data = plan(ws("w", echo("a")))
    data["defaults"] = {"on_failure": {"strategy": "fix", "fix": {"tool": "nope"}}}
    assert problems(data) == ["defaults.on_failure.fix.tool: unknown tool 'nope'"]


# Everything at once, and at scale


def test_every_problem_is_reported_in_document_order() -> None:
    data = plan(
        ws(
            "api",
            echo("apply"),
            {"id": "test", "tool": "shel", "needs": ["aply"]},
            echo("x", needs=["y"]),
            echo("y", needs=["x"]),
        ),
        ws("web", echo("build", **{"with": {"v": "${{ tasks.api.apply.outputs.v }}"}})),
    )
    assert problems(data) == [
        "workstreams[0].tasks[1].tool: unknown tool 'shel' (did you mean 'shell'?)",
        "workstreams[0].tasks[1].needs: unknown task 'aply' (did you mean 'apply'?)",
        "workstreams[1].tasks[0].with.v: refers to task 'api.apply', which is not among "
        "this task's needs",
        "dependency cycle: api.x -> api.y -> api.x",
    ]


def test_ten_thousand_task_plan_validates() -> None:
    count = 10_000
    tasks = [
        echo(
            f"t{i}",
            needs=[f"t{i - 1}"] if i else [],
            **({"with": {"first": "${{ tasks.t0.outputs.x }}"}} if i > 1 else {}),
        )
        for i in range(count)
    ]
    downstream = ws("report", echo("r", **{"with": {"x": "${{ tasks.big.t0.status }}"}}))
    downstream["needs"] = ["big"]
    spec = valid(plan(ws("big", *tasks), downstream))
    assert len(spec.workstreams[0].tasks) == count


def test_ten_thousand_task_cycle_is_found() -> None:
    count = 10_000
    tasks = [echo(f"t{i}", needs=[f"t{(i + 1) % count}"]) for i in range(count)]
    (found,) = problems(plan(ws("w", *tasks)))
    assert found.startswith("dependency cycle: w.t0 -> w.t1 -> ")


def test_every_problem_comes_at_once_whatever_its_kind() -> None:
    data = plan(
        ws(
            "api",
            {"id": "apply", "tool": "shel", "timeout": "bogus"},
            sh("test", needs=["aply"], **{"with": {"command": ["make"], "bogus": 1}}),
            {"id": "bad id", "tool": "echo"},
            echo("x", needs=["y"], retry={"max_attempts": 0}),
            echo("y", needs=["x", "bad id"]),
        ),
        ws("web", echo("t", needs=["api.test"], approval="maybe"), needs=["apii"]),
    )
    assert problems(data) == [
        "workstreams[0].tasks[0].tool: unknown tool 'shel' (did you mean 'shell'?)",
        "workstreams[0].tasks[0].timeout: not a duration: 'bogus' (use e.g. 90s, 10m, 48h, "
        "3d); or auto, to take it from the run history",
        "workstreams[0].tasks[1].with: unknown key 'bogus'",  # `with` comes first in sh()
        "workstreams[0].tasks[1].needs: unknown task 'aply' (did you mean 'apply'?)",
        "workstreams[0].tasks[2].id: not a valid id: 'bad id' (use letters, digits, '_' and "
        "'-', starting with a letter or a digit)",
        "workstreams[0].tasks[3].retry.max_attempts: should be greater than or equal to 1 (got 0)",
        "workstreams[1].tasks[0].approval: expected true, false or a mapping, got 'maybe'",
        "workstreams[1].needs: unknown workstream 'apii' (did you mean 'api'?)",
        "dependency cycle: api.x -> api.y -> api.x",
    ]


def test_a_task_left_out_for_its_shape_is_not_reported_unknown_where_needed() -> None:
    data = plan(
        ws("w", {"id": "a", "tool": 5}, echo("b", needs=["a"])), ws("v", echo("c"), needs=["w"])
    )
    assert problems(data) == ["workstreams[0].tasks[0].tool: should be a valid string (got 5)"]


def test_a_with_of_the_wrong_shape_is_not_checked_against_the_tool() -> None:
    data = plan(ws("w", {"id": "a", "tool": "shell", "with": ["make"]}))
    assert problems(data) == ["workstreams[0].tasks[0].with: expected a mapping, got a list"]


def test_problems_are_capped_with_a_count_of_the_rest() -> None:
    data = plan(ws("w", *({"id": f"t{i}", "tool": "nope"} for i in range(300))))
    found = problems(data)
    assert len(found) == 201
    assert found[-1] == "... and 100 more problems"


def test_suggestions_go_to_the_first_problems_and_then_stop() -> None:
    tasks = [echo(f"build{i}") for i in range(150)]
    tasks += [echo(f"use{i}", needs=[f"biuld{i}"]) for i in range(150)]
    found = problems(plan(ws("w", *tasks)))
    assert (
        found[0]
        == "workstreams[0].tasks[150].needs: unknown task 'biuld0' (did you mean 'build0'?)"
    )
    assert sum("did you mean" in p for p in found) == 100
    assert found[100] == "workstreams[0].tasks[250].needs: unknown task 'biuld100'"
