"""The tool-call contract: what a task sends a tool and what the tool sends back.

Workflows build a :class:`ToolCall`; the tool's activity (:mod:`towline.activities`)
answers with a :class:`ToolResult` or a categorised failure. Both sides import this
module, and it imports neither of them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from towline.holding import Snapshot, SnapshotRequest
from towline.plan.spec import CacheSpec
from towline.state import Usage


class ToolContext(BaseModel):
    """Where and for whom a tool runs."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    workstream: str
    task: str
    workspace: str = Field(
        description="absolute path of the workstream's workspace; empty when the "
        "workstream has no repo and only tools that need no folder (echo, wait, http, llm)"
    )
    plan_dir: str = Field(description="absolute path of the folder holding the plan file")
    plan: str = Field("", description="the plan's name (recorded in the run history)")


class ToolCall(BaseModel):
    context: ToolContext
    args: dict[str, Any] = Field(default_factory=dict)
    cache: CacheSpec | None = Field(None, description="the task's cache: setting, if any")
    snapshot: SnapshotRequest | None = Field(
        None, description="save the workspace to the store once the call has succeeded"
    )


class ToolResult(BaseModel):
    outputs: dict[str, Any] = Field(default_factory=dict)
    usage: Usage = Field(default_factory=Usage)
    attempt: int = 1
    cached: bool = Field(False, description="reused from an earlier identical call")
    snapshot: Snapshot | None = Field(None, description="the workspace as the call left it")
