"""How workflow state refers to a stored output, and how a tool gets its content back.

An output too large for workflow state is stored (:mod:`towline.activities.artifacts`),
and state keeps a stub in its place: ``{"$artifact": "<ref>", "bytes": <size>}``.
Workflow code passes stubs along untouched; a tool receiving one (whole, or interpolated
into a string as a placeholder) gets the stored content back (:mod:`towline.activities.base`).
"""

from __future__ import annotations

import re
from typing import Any

STORED_KEY = "$artifact"
_PLACEHOLDER = re.compile(r"\$\{\{ stored (artifact://[A-Za-z0-9._~%/-]+) \}\}")


def stored_ref(value: Any) -> str | None:
    """The reference of a stored output's stub, if ``value`` is one."""
    if isinstance(value, dict) and isinstance(value.get(STORED_KEY), str):
        return str(value[STORED_KEY])
    return None


def placeholder(ref: str) -> str:
    """How a stored output reads inside a longer string, until a tool expands it."""
    return "${{ stored " + ref + " }}"


def placeholders(text: str) -> list[tuple[str, str]]:
    """The placeholders in ``text``: (the placeholder, its reference)."""
    return [(m.group(0), m.group(1)) for m in _PLACEHOLDER.finditer(text)]
