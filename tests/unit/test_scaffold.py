"""`towline new-tool` refuses names and folders it cannot use, and writes nothing then."""

from __future__ import annotations

from pathlib import Path

import pytest

from towline.starter.scaffold import REGISTRY, TESTS_DIR, TOOLS_DIR, ScaffoldError, new_tool


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    (tmp_path / TOOLS_DIR).mkdir(parents=True)
    (tmp_path / REGISTRY).write_text("")
    (tmp_path / TESTS_DIR).mkdir(parents=True)
    return tmp_path


@pytest.mark.parametrize("name", ["Slack", "2fa", "slack-notify", "with", "", "a.b"])
def test_bad_names_are_refused(checkout: Path, name: str) -> None:
    with pytest.raises(ScaffoldError, match="cannot name a tool module"):
        new_tool(name, checkout, registered=set())


def test_a_registered_name_or_an_existing_file_is_refused(checkout: Path) -> None:
    with pytest.raises(ScaffoldError, match="a tool named 'shell' is already registered"):
        new_tool("shell", checkout, registered={"shell"})
    (checkout / TESTS_DIR / "test_notify.py").write_text("# mine\n")
    with pytest.raises(ScaffoldError, match=r"test_notify\.py already exists"):
        new_tool("notify", checkout, registered=set())
    assert not (checkout / TOOLS_DIR / "notify.py").exists()  # nothing half-written


def test_a_folder_that_is_not_a_checkout_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ScaffoldError, match="is not a towline checkout"):
        new_tool("notify", tmp_path, registered=set())


def test_the_module_and_test_are_written(checkout: Path) -> None:
    module, test = new_tool("slack_notify", checkout, registered=set())

    assert module == checkout / TOOLS_DIR / "slack_notify.py"
    assert test == checkout / TESTS_DIR / "test_slack_notify.py"
    assert "class SlackNotifyInput(ToolInput):" in module.read_text()
    assert '@tool("slack_notify", SlackNotifyInput,' in module.read_text()
    assert "async def test_slack_notify_repeats_the_message(" in test.read_text()
