"""The pr tool's input: each action takes its own keys; names it makes are valid."""

from __future__ import annotations

import base64

import pytest
from pydantic import ValidationError

from towline.activities.tools.pr import PrInput, default_branch, git_auth_env
from towline.toolcall import ToolContext


def _ctx(run_id: str) -> ToolContext:
    return ToolContext(run_id=run_id, workstream="api", task="pr", workspace="/w", plan_dir="/p")


def test_a_key_of_another_action_is_named_with_its_action() -> None:
    with pytest.raises(ValidationError, match="'wait' goes with action open, not close"):
        PrInput.model_validate({"repo": "a/b", "action": "close", "wait": "merged"})
    with pytest.raises(ValidationError, match="action issue needs a title"):
        PrInput.model_validate({"repo": "a/b", "action": "issue"})
    with pytest.raises(ValidationError, match="forge gitea needs api_url"):
        PrInput.model_validate({"repo": "a/b", "forge": "gitea"})
    with pytest.raises(ValidationError, match="not owner/name"):
        PrInput.model_validate({"repo": "just-a-name"})


def test_the_default_branch_is_a_valid_git_name_even_for_a_scheduled_runs_id() -> None:
    assert default_branch(_ctx("bump-7f3a2c")) == "towline/bump-7f3a2c/api"
    # Temporal names a scheduled run <schedule id>-<time>, with colons git refuses.
    assert default_branch(_ctx("nightly-2026-01-05T03:00:00Z")) == (
        "towline/nightly-2026-01-05T03-00-00Z/api"
    )


def test_the_token_reaches_git_in_its_environment_for_https_remotes_only() -> None:
    env = git_auth_env("https://github.com/acme/api.git", "github", "tok")
    assert env["GIT_CONFIG_KEY_0"] == "http.extraHeader"
    basic = env["GIT_CONFIG_VALUE_0"].removeprefix("Authorization: Basic ")
    assert base64.b64decode(basic).decode() == "x-access-token:tok"
    assert git_auth_env("/srv/git/api.git", "github", "tok") == {}
    assert git_auth_env("https://github.com/acme/api.git", "github", None) == {}
