"""The tool catalogue holds a fact sheet for every registered tool, and only for those."""

from __future__ import annotations

from towline.activities.tools import TOOLS
from towline.catalogue import CATALOGUE, facts, own_queue_tools


def test_every_registered_tool_has_its_facts_and_no_facts_are_orphaned() -> None:
    assert set(CATALOGUE) == set(TOOLS)


def test_tools_run_in_the_workflow_exactly_when_they_have_no_activity() -> None:
    for name, tool in TOOLS.items():
        assert facts(name).in_workflow == (tool.activity is None), name


def test_a_tool_missing_from_the_catalogue_is_assumed_to_need_and_change_the_workspace() -> None:
    new = facts("my.new-tool")
    assert new.workspace
    assert new.changes_workspace
    assert not new.in_workflow
    assert not new.own_queue
    assert not new.usage


def test_own_queue_tools_get_a_queue_named_after_the_tool() -> None:
    assert own_queue_tools() == ["llm"]
    assert facts("llm").queue("towline") == "towline-llm"
    assert facts("shell").queue("towline") is None


def test_a_tool_that_changes_the_workspace_needs_one() -> None:
    for f in CATALOGUE.values():
        assert f.workspace or not f.changes_workspace, f.name
