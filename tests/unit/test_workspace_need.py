"""Which workstreams get a scratch folder: only those with a tool that uses one."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import echo, plan, sh, ws
from towline.plan.load import check_data
from towline.workflows.task import needs_workspace


def _needs(workstream: dict[str, Any], **plan_extra: Any) -> bool:
    spec = check_data({**plan(workstream), **plan_extra})
    return needs_workspace(spec.workstreams[0], spec.defaults)


def test_echo_wait_http_and_llm_need_no_folder() -> None:
    tasks = [
        echo("a"),
        {"id": "b", "tool": "wait", "with": {"for": "1s"}},
        {"id": "c", "tool": "http", "with": {"url": "http://localhost:1/"}},
    ]
    assert _needs(ws("w", *tasks)) is False


def test_a_shell_task_needs_one() -> None:
    assert _needs(ws("w", echo("a"), sh("b", "true"))) is True


def test_a_repo_always_has_one() -> None:
    assert _needs(ws("w", echo("a"), repo={"path": "."})) is True


@pytest.mark.parametrize(
    "where",
    ["rollback", "task fix", "workstream default fix", "plan default fix"],
)
def test_a_rollback_or_fix_that_uses_a_folder_counts(where: str) -> None:
    call = {"tool": "shell", "with": {"command": ["true"]}}
    fix = {"strategy": "fix", "fix": call}
    task = echo("a")
    workstream = ws("w", task)
    extra: dict[str, Any] = {}
    if where == "rollback":
        task["rollback"] = call
    elif where == "task fix":
        task["on_failure"] = fix
    elif where == "workstream default fix":
        workstream["defaults"] = {"on_failure": fix}
    else:
        extra["defaults"] = {"on_failure": fix}
    assert _needs(workstream, **extra) is True
