"""The tool catalogue holds a fact sheet for every registered tool, and only for those."""

from __future__ import annotations

from towline.activities.tools import TOOLS
from towline.catalogue import CATALOGUE, STEPS, facts, own_queue_tools


def test_every_registered_tool_has_its_facts_and_no_facts_are_orphaned() -> None:
    assert set(CATALOGUE) == set(TOOLS)


def test_tools_run_in_a_workflow_exactly_when_they_have_no_activity() -> None:
    for name, tool in TOOLS.items():
        f = facts(name)
        assert (f.in_workflow or f.child_workflow) == (tool.activity is None), name
        assert not (f.in_workflow and f.child_workflow), name


def test_the_agents_steps_have_facts_and_only_its_model_calls_need_no_workspace() -> None:
    from towline.activities.agent import AGENT_ACTIVITIES, HELD
    from towline.catalogue import STEPS

    assert set(STEPS) == {t.name for t in AGENT_ACTIVITIES}
    assert sorted(n for n in STEPS if facts(n).workspace) == sorted(HELD)
    assert not set(STEPS) & set(TOOLS)


def test_a_tool_missing_from_the_catalogue_is_assumed_to_need_and_change_the_workspace() -> None:
    new = facts("my.new-tool")
    assert new.workspace
    assert new.changes_workspace
    assert [new.in_workflow, new.own_queue, new.usage, new.polls] == [False] * 4


def test_own_queue_tools_get_a_queue_named_after_the_tool() -> None:
    assert own_queue_tools() == ["llm"]
    assert facts("llm").queue("towline") == "towline-llm"
    assert facts("shell").queue("towline") is None


def test_a_tool_that_changes_the_workspace_needs_one() -> None:
    for f in [*CATALOGUE.values(), *STEPS.values()]:
        assert f.workspace or not f.changes_workspace, f.name


def test_only_the_pr_tool_waits_by_polling() -> None:
    assert [f.name for f in CATALOGUE.values() if f.polls] == ["pr"]
