"""``model: auto``: a model from the task's ladder, by how hard the task looks.

Difficulty is read from the failure a fix is for (or the instructions of a task that is
not a fix): the size of the failure (lines), the files it involves, the tests that fail.
Each of those past its threshold adds a step up the ladder, and so does each fix of the
same task that did not work (escalation). The ladder's top is the ceiling.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

LONG_FAILURE = 60  # lines
MANY_FILES = 3
MANY_TESTS = 3

_FILE = re.compile(
    r"(?<![\w/.-])((?:[\w.-]+/)*[\w.-]+\.(?:py|js|ts|tsx|go|rs|java|rb|c|h|cpp|cs|kt|swift|php|scala|sh))\b"
)
_TEST = re.compile(r"\b((?:[\w.-]+/)*[\w.-]+\.py::[\w\[\]:.,-]+)")


@dataclass(frozen=True)
class Difficulty:
    lines: int
    files: int
    tests: int

    @property
    def level(self) -> int:
        """0 (easy) to 3: one step for each of size, files and tests past its threshold."""
        return (
            int(self.lines > LONG_FAILURE)
            + int(self.files >= MANY_FILES)
            + int(self.tests >= MANY_TESTS)
        )


def files_in(text: str) -> set[str]:
    """Source files a failure names (``src/calc.py``, ``app.ts`` ...)."""
    return {m.group(1) for m in _FILE.finditer(text)}


def tests_in(text: str) -> set[str]:
    """pytest node ids a failure names (``tests/test_calc.py::test_add``)."""
    return {m.group(1).rstrip(".,:") for m in _TEST.finditer(text)}


def difficulty(text: str) -> Difficulty:
    return Difficulty(
        lines=len(text.splitlines()), files=len(files_in(text)), tests=len(tests_in(text))
    )


def choose_model(ladder: Sequence[str], text: str, *, prior_failures: int = 0) -> str:
    """The rung of ``ladder`` for a task of this ``text`` after ``prior_failures``."""
    if not ladder:
        raise ValueError("model: auto needs a ladder of at least one model")
    rung = difficulty(text).level + max(prior_failures, 0)
    return ladder[min(rung, len(ladder) - 1)]
