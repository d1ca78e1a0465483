"""The tool registry: every ``tool:`` name a plan may use, in one place."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from towline.activities.base import Tool
from towline.activities.tools.agent import AGENT
from towline.activities.tools.echo import echo
from towline.activities.tools.git import git
from towline.activities.tools.http import http
from towline.activities.tools.llm import llm
from towline.activities.tools.mcp import mcp
from towline.activities.tools.patch import apply_patch, revert_patch
from towline.activities.tools.pr import pr
from towline.activities.tools.shell import shell
from towline.activities.tools.test_gate import gate
from towline.activities.tools.wait import WAIT

TOOLS: dict[str, Tool] = {
    t.name: t
    for t in (echo, shell, WAIT, http, llm, mcp, apply_patch, revert_patch, gate, git, pr, AGENT)
}


def activities() -> list[Callable[..., Any]]:
    """The activity callables a worker registers."""
    return [t.activity for t in TOOLS.values() if t.activity is not None]
