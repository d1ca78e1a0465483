"""``towline new-tool NAME``: a new tool's module and its integration test, ready to run.

The module is a working tool (an input model and a ``@tool`` function with an expected
failure) for the author to change; the test runs it through a whole towline run on the
real dev server, like every tool's tests. Registering it stays a deliberate edit of the
registry, whose two lines :func:`registry_lines` gives.
"""

from __future__ import annotations

import keyword
import re
from pathlib import Path

TOOLS_DIR = Path("src/towline/activities/tools")
TESTS_DIR = Path("tests/integration")
REGISTRY = TOOLS_DIR / "__init__.py"

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class ScaffoldError(ValueError):
    """A name or a folder that cannot take a new tool; the message says why."""


def new_tool(name: str, root: Path, *, registered: set[str]) -> list[Path]:
    """Write the tool ``name``'s module and test under the checkout ``root``.

    Nothing is written unless both files can be: a bad name, a name already registered
    or a file that exists is a :class:`ScaffoldError`.
    """
    check_name(name, registered)
    if not (root / REGISTRY).is_file() or not (root / TESTS_DIR).is_dir():
        raise ScaffoldError(
            f"{root} is not a towline checkout (no {REGISTRY} or {TESTS_DIR}/); "
            "run this at the checkout's top, or give --dir"
        )
    module = root / TOOLS_DIR / f"{name}.py"
    test = root / TESTS_DIR / f"test_{name}.py"
    for path in (module, test):
        if path.exists():
            raise ScaffoldError(f"{path} already exists; choose another name or remove it")
    module.write_text(_MODULE.format(name=name, model=_camel(name) + "Input"))
    test.write_text(_TEST.format(name=name))
    return [module, test]


def check_name(name: str, registered: set[str]) -> None:
    if not _NAME.match(name) or keyword.iskeyword(name):
        raise ScaffoldError(
            f"'{name}' cannot name a tool module: use lower-case letters, digits and _, "
            "starting with a letter (e.g. slack_notify)"
        )
    if name in registered:
        raise ScaffoldError(f"a tool named '{name}' is already registered")


def registry_lines(name: str) -> list[str]:
    """What to add to the registry so plans can use the tool."""
    return [
        f"from towline.activities.tools.{name} import {name}",
        f"... and add {name} to the tuple that builds TOOLS",
    ]


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_") if part)


_MODULE = '''"""``{name}``: repeat a message (a scaffolded example: make it do the tool's work).

A tool is a Temporal activity: it may touch the world. Its input is the task's ``with``,
checked against ``{model}`` before the run starts. Return the outputs as a dict;
raise ``ToolError`` with a category for an expected failure (``validation``: the plan
is wrong, not retried; ``tool``: the world is, retried by the task's retry policy).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from towline.activities.base import ToolInput, tool
from towline.errors import ToolError
from towline.toolcall import ToolContext


class {model}(ToolInput):
    """What to repeat, and how often."""

    message: str = Field(description="the message to repeat")
    times: int = Field(1, ge=1, le=100, description="how many times")


@tool("{name}", {model}, "Repeat a message (scaffolded example).")
async def {name}(args: {model}, ctx: ToolContext) -> dict[str, Any]:
    """Outputs: ``text`` (the message, repeated) and ``workstream``."""
    if not args.message.strip():
        raise ToolError("validation", "with.message: is blank", hint="give a message to repeat")
    return {{"text": " ".join([args.message] * args.times), "workstream": ctx.workstream}}
'''

_TEST = '''"""The ``{name}`` tool through whole towline runs, on a real Temporal dev server."""

from __future__ import annotations

from typing import Any

from tests.conftest import RunPlan
from tests.helpers import plan, ws


async def test_{name}_repeats_the_message(run_plan: RunPlan) -> None:
    task = {{"id": "t", "tool": "{name}", "with": {{"message": "hi", "times": 3}}}}
    state = await run_plan(plan(ws("w", task)))

    t = state.workstreams["w"].tasks["t"]
    assert t.status == "succeeded", t.error
    assert t.outputs == {{"text": "hi hi hi", "workstream": "w"}}


async def test_{name}_rejects_a_blank_message(run_plan: RunPlan) -> None:
    task: dict[str, Any] = {{"id": "t", "tool": "{name}", "with": {{"message": " "}}}}
    task["retry"] = {{"max_attempts": 3}}
    state = await run_plan(plan(ws("w", task)))

    t = state.workstreams["w"].tasks["t"]
    assert t.status == "failed"
    assert t.error is not None
    assert (t.error.category, t.error.message) == ("validation", "with.message: is blank")
    assert t.attempts == 1  # validation is not retried
'''
