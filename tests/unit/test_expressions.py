from __future__ import annotations

from typing import Any

import pytest

from towline.plan.expressions import (
    ExpressionError,
    Scope,
    check,
    evaluate,
    names,
    resolve,
    task_refs,
)

FINISHED: dict[str, tuple[str, dict[str, Any]]] = {
    "build": ("succeeded", {"digest": "abc123", "size": 42, "meta": {"tags": ["a", "b"]}}),
    "lint": ("failed", {}),
    "my-task": ("succeeded", {"ok": True}),
    "web.deploy": ("succeeded", {"url": "https://example.test"}),
}


def scope(failure: dict[str, Any] | None = None) -> Scope:
    return Scope(run_id="run-1", workstream="api", lookup=FINISHED.get, failure=failure)


def error(value: Any, *, condition: bool = False) -> str:
    """The message of the ExpressionError that resolving (or evaluating) ``value`` raises."""
    run = evaluate if condition else resolve
    with pytest.raises(ExpressionError) as info:
        run(value, scope())
    return str(info.value)


# resolve


def test_a_whole_string_expression_keeps_the_value_type() -> None:
    assert resolve("${{ tasks.build.outputs.size }}", scope()) == 42
    assert resolve("${{ tasks.build.outputs.meta }}", scope()) == {"tags": ["a", "b"]}
    assert resolve("${{ tasks.my-task.outputs.ok }}", scope()) is True


def test_embedded_expressions_are_interpolated_as_text() -> None:
    text = "v=${{ tasks.build.outputs.size }} m=${{ tasks.build.outputs.meta }} n=${{ null }}"
    assert resolve(text, scope()) == 'v=42 m={"tags":["a","b"]} n='
    assert resolve("ok=${{ tasks.my-task.outputs.ok }}", scope()) == "ok=true"


def test_resolve_walks_dicts_and_lists() -> None:
    value = {
        "command": ["deploy", "${{ tasks.build.outputs.digest }}"],
        "env": {"RUN": "${{ run.id }}", "WS": "${{ workstream.id }}"},
        "count": 3,
    }
    assert resolve(value, scope()) == {
        "command": ["deploy", "abc123"],
        "env": {"RUN": "run-1", "WS": "api"},
        "count": 3,
    }


def test_secrets_are_left_for_the_worker() -> None:
    assert resolve("${{ secrets.TOKEN }}", scope()) == "${{ secrets.TOKEN }}"
    text = "Bearer ${{ secrets.TOKEN }} for ${{ run.id }}"
    assert resolve(text, scope()) == "Bearer ${{ secrets.TOKEN }} for run-1"


def test_task_of_another_workstream_is_looked_up_as_ws_dot_task() -> None:
    assert resolve("${{ tasks.web.deploy.outputs.url }}", scope()) == "https://example.test"


def test_own_workstream_prefix_is_looked_up_as_a_local_task() -> None:
    assert resolve("${{ tasks.api.build.outputs.size }}", scope()) == 42


def test_subscripts_and_nested_values() -> None:
    assert resolve("${{ tasks['build'].outputs['meta'].tags[1] }}", scope()) == "b"
    assert resolve("${{ tasks.build.outputs.meta.tags.0 }}", scope()) == "a"


def test_status_of_a_finished_task() -> None:
    assert resolve("${{ tasks.lint.status }}", scope()) == "failed"


def test_strings_without_expressions_are_untouched() -> None:
    assert resolve("plain $ {text}", scope()) == "plain $ {text}"
    assert resolve(None, scope()) is None


def test_failure_is_available_when_fixing() -> None:
    failure = {"category": "test_failed", "message": "2 failed", "output": "FAIL x"}
    assert resolve("${{ failure.category }}: ${{ failure.output }}", scope(failure)) == (
        "test_failed: FAIL x"
    )


# resolution errors


def test_missing_output_lists_the_outputs_the_task_has() -> None:
    assert error("${{ tasks.build.outputs.sha }}") == (
        "${{ tasks.build.outputs.sha }}: task 'build' has no output 'sha' "
        "(it has: digest, meta, size)"
    )


def test_missing_output_of_a_task_without_outputs() -> None:
    assert "task 'lint' has no output 'x' (it has no outputs)" in error(
        "${{ tasks.lint.outputs.x }}"
    )


def test_unfinished_task_is_an_error() -> None:
    assert error("${{ tasks.test.outputs.x }}") == (
        "${{ tasks.test.outputs.x }}: task 'test' has not finished"
    )


def test_unknown_name_suggests_the_closest() -> None:
    assert error("${{ taks.build.outputs.size }}") == (
        "${{ taks.build.outputs.size }}: unknown name 'taks' (did you mean 'tasks'?)"
    )


def test_missing_key_inside_an_output() -> None:
    assert "tasks.build.outputs.meta has no key 'nope'" in error(
        "${{ tasks.build.outputs.meta.nope }}"
    )


def test_failure_outside_a_fix_is_an_error() -> None:
    assert "only available while fixing" in error("${{ failure.message }}")


def test_incomparable_values_are_an_error() -> None:
    assert "cannot compare a string and a number with '<'" in error("${{ 'a' < 1 }}")


def test_unterminated_expression_is_an_error() -> None:
    assert "missing '}}'" in error("echo ${{ run.id")


# evaluate


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("tasks.build.status == 'succeeded'", True),
        ("${{ tasks.build.status == 'succeeded' }}", True),
        ("  ${{ tasks.lint.status != 'failed' }}  ", False),
        ("tasks.build.outputs.size > 40 and tasks.build.outputs.size <= 42", True),
        ("tasks.build.status == 'succeeded' && tasks.lint.status == 'succeeded'", False),
        ("tasks.lint.status == 'succeeded' || tasks.build.outputs.size >= 42", True),
        ("!(tasks.lint.status == 'succeeded')", True),
        ("not tasks.my-task.outputs.ok", False),
        ("!tasks.my-task.outputs.ok == false", True),
        ("'a' in tasks.build.outputs.meta.tags", True),
        ("'z' not in tasks.build.outputs.meta.tags", True),
        ("tasks.build.outputs.size in [1, 42]", True),
        ('tasks.build.outputs.digest == "abc123"', True),
        ("true", True),
        ("False", False),
        ("null", False),
        ("1 < 2 < 3", True),
        ("-1 < 0", True),
        ("tasks.web.deploy.status == 'succeeded'", True),
        ("workstream.id == 'api' && run.id == 'run-1'", True),
        ("'a != b' == 'a != b'", True),
        ("'&&' == '&&'", True),
        ("'it''s' == \"it's\"", True),
        ("'say \\'hi\\'' == \"say 'hi'\"", True),
    ],
)
def test_conditions(condition: str, expected: bool) -> None:
    assert evaluate(condition, scope()) is expected


def test_and_or_short_circuit_before_a_failing_lookup() -> None:
    assert evaluate("tasks.lint.status == 'succeeded' && tasks.test.outputs.x", scope()) is False
    assert evaluate("tasks.build.status == 'succeeded' || tasks.test.outputs.x", scope()) is True


def test_secrets_in_a_condition_are_an_error() -> None:
    assert "secrets cannot be used in a condition" in error("secrets.TOKEN", condition=True)


def test_a_condition_must_be_one_expression() -> None:
    assert "must be one expression" in error("${{ true }} == ${{ true }}", condition=True)


@pytest.mark.parametrize(
    ("expr", "reason"),
    [
        ("len(tasks.build.outputs.meta)", "function calls are not supported"),
        ("(lambda: 1)()", "function calls are not supported"),
        ("tasks.build.outputs.size + 1", "arithmetic is not supported"),
        ("[x for x in [1]]", "comprehensions are not supported"),
        ("{'a': 1}", "mapping literals are not supported"),
        ("tasks.build.outputs.__class__", "'__class__' is not allowed"),
        ("tasks.build.outputs.size if true else 0", "conditional expressions"),
        ("tasks.build.status is None", "operator 'is' is not supported"),
        ("~true", "'~' is not supported"),
        ("tasks.build", "a task reference reads tasks.<id>.outputs.<key>"),
        ("tasks.build.status.x", "nothing can follow it"),
        ("run.name", "'run' has only 'id'"),
        ("failure.stack", "use failure.category, failure.message or failure.output"),
        ("'unterminated", "unterminated string"),
        ("foo(", "not a valid expression"),
        ("", "empty expression"),
        ("'abc'.upper", "only names can be indexed"),
        ("tasks.build.outputs[tasks.build.outputs.size]", "an index must be"),
    ],
)
def test_unsupported_syntax_is_rejected_without_evaluating(expr: str, reason: str) -> None:
    message = error(f"${{{{ {expr} }}}}")
    assert message.startswith(f"${{{{ {expr} }}}}: ")
    assert reason in message


def test_secrets_mixed_into_an_expression_are_rejected() -> None:
    assert "secrets can only be used on their own" in error("${{ secrets.A == 'x' }}")


# task_refs, names, check


def test_task_refs_in_a_with_tree() -> None:
    value = {
        "a": "${{ tasks.build.outputs.x }} and ${{ tasks.web.deploy.status }}",
        "b": ["${{ tasks.my-task.outputs['y'] }}", {"c": "${{ run.id }}"}],
        "d": "tasks.not_an_expression.outputs.x",
    }
    assert task_refs(value) == {"build", "web.deploy", "my-task"}


def test_task_refs_in_a_condition_without_braces() -> None:
    assert task_refs("tasks.a.status == 'succeeded' && tasks.web.b.outputs.ok") == {"a", "web.b"}


def test_task_refs_skip_unparsable_expressions() -> None:
    assert task_refs({"a": "${{ foo( }}", "b": "${{ tasks.x.status }}"}) == {"x"}


def test_names_lists_the_top_level_names_used() -> None:
    assert names({"a": "${{ secrets.T }}", "b": "${{ failure.message }}"}) == {
        "secrets",
        "failure",
    }
    assert names("tasks.a.status == 'x'") == {"tasks"}


def test_check_reports_every_bad_expression() -> None:
    problems = check(
        {"a": "${{ foo( }}", "b": ["ok ${{ run.id }}", "${{ taks.x.status }}"], "c": "${{ x"}
    )
    assert len(problems) == 3
    assert problems[0].startswith("${{ foo( }}: not a valid expression")
    assert problems[1:] == [
        "${{ taks.x.status }}: unknown name 'taks' (did you mean 'tasks'?)",
        "unterminated expression in '${{ x' (missing '}}')",
    ]


def test_check_accepts_valid_expressions() -> None:
    assert check({"a": "${{ tasks.x.outputs.y }}", "b": "${{ secrets.T }}", "c": 1}) == []
    assert check("tasks.x.status == 'succeeded'") == []
