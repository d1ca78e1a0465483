"""``echo``: returns its input as its outputs. The lightest tool: dry runs and benchmarks."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict

from towline.activities.base import ToolInput, tool
from towline.toolcall import ToolContext


class EchoInput(ToolInput):
    """Any keys; they come back as the task's outputs."""

    model_config = ConfigDict(extra="allow")


@tool("echo", EchoInput, "Return the input as the task's outputs (no side effects).")
async def echo(args: EchoInput, ctx: ToolContext) -> dict[str, Any]:
    return dict(args.model_extra or {})
