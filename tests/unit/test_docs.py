"""Generated docs match what generates them: run `make docs` after changing a tool."""

from __future__ import annotations

import re
from pathlib import Path

from towline.activities.tools import TOOLS
from towline.starter.tooldocs import as_markdown

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_tools_md_is_the_catalogue_of_the_registered_tools() -> None:
    written = (DOCS / "tools.md").read_text()

    assert written == as_markdown(TOOLS), "docs/tools.md is stale: run `make docs`"


ROOT = DOCS.parent


def _blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


def test_readme_python_snippets_run_as_written() -> None:
    """A snippet pasted into a file runs: no top-level ``await`` outside a coroutine."""
    blocks = _blocks((ROOT / "README.md").read_text(), "python")
    assert blocks
    for code in blocks:
        compile(code, "README.md", "exec")  # a SyntaxError names the line


def test_example_commands_name_the_towline_the_checkout_installs() -> None:
    """`make install` puts towline in .venv/bin only: a bare `towline` in a command a
    reader copies must follow a PATH that holds it."""
    for readme in sorted((ROOT / "examples").glob("*/README.md")):
        for block in _blocks(readme.read_text(), "sh"):
            on_path = False
            for line in block.splitlines():
                on_path = on_path or ".venv/bin:$PATH" in line
                assert on_path or not line.lstrip().startswith("towline "), (readme, line)
    for plan in sorted((ROOT / "examples").glob("*/*.yaml")):
        for line in plan.read_text().splitlines():
            comment = line.lstrip("# ").strip()
            assert not comment.startswith("towline "), (plan, line)
