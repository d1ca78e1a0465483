"""The tool catalogue describes each tool's input in words a plan's author reads."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field

from towline.activities.base import ToolInput, tool
from towline.plan.spec import Duration
from towline.starter.tooldocs import REQUIRED, as_json, as_markdown, fields
from towline.toolcall import ToolContext


class _Inner(BaseModel):
    a: int
    b: str


class _Input(ToolInput):
    """What the example takes."""

    name: str = Field(description="who | what")
    mode: Literal["fast", "slow"] = "fast"
    tags: list[str] = Field(default_factory=list)
    env: dict[str, str] | None = None
    wait: Duration = timedelta(minutes=2)
    inner: _Inner | None = None
    anything: Any = None
    for_: int = Field(3, alias="for")


@tool("example.tool", _Input, "Do the example thing.")
async def _example(args: _Input, ctx: ToolContext) -> dict[str, Any]:
    """Outputs: ``done``."""
    return {"done": True}


def test_fields_give_types_defaults_and_aliases_in_words() -> None:
    rows = {f.key: (f.type, f.default, f.description) for f in fields(_Input)}

    assert rows == {
        "name": ("string", REQUIRED, "who | what"),
        "mode": ('"fast" | "slow"', '"fast"', ""),
        "tags": ("list of string", "[]", ""),
        "env": ("map of string", "null", ""),
        "wait": ("duration", "2m", ""),
        "inner": ("{a, b}", "null", ""),
        "anything": ("any", "null", ""),
        "for": ("integer", "3", ""),
    }


def test_markdown_has_an_index_a_table_per_tool_and_the_outputs() -> None:
    text = as_markdown({"example.tool": _example})

    assert "| [`example.tool`](#exampletool) | Do the example thing. |" in text
    assert "## example.tool\n\nDo the example thing.\n\nWhat the example takes.\n" in text
    assert "| `name` | string | required | who \\| what |" in text
    assert '| `mode` | "fast" \\| "slow" | "fast" |  |' in text
    assert text.endswith("Outputs: ``done``.\n")
    assert "\n\n\n" not in text


def test_json_gives_each_tool_its_input_schema_and_outputs() -> None:
    out = as_json({"example.tool": _example})

    assert out["example.tool"]["description"] == "Do the example thing."
    assert out["example.tool"]["input"]["required"] == ["name"]
    assert "for" in out["example.tool"]["input"]["properties"]
    assert out["example.tool"]["outputs"] == "Outputs: ``done``."
