"""Generated docs match what generates them: run `make docs` after changing a tool."""

from __future__ import annotations

from pathlib import Path

from towline.activities.tools import TOOLS
from towline.starter.tooldocs import as_markdown

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_tools_md_is_the_catalogue_of_the_registered_tools() -> None:
    written = (DOCS / "tools.md").read_text()

    assert written == as_markdown(TOOLS), "docs/tools.md is stale: run `make docs`"
