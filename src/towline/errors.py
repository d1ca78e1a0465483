"""Error categories: decided here, once, and mapped to Temporal retryability.

Every failed task carries a category from :data:`CATEGORIES`. Categories that say the
same attempt would fail the same way again (``validation``, ``conflict``, ``test_failed``,
``budget``) are never retried blindly, nor is a call that was cancelled; the rest follow
the task's retry policy.
"""

from __future__ import annotations

from typing import Literal, get_args

Category = Literal[
    "validation", "tool", "timeout", "test_failed", "conflict", "budget", "system", "cancelled"
]
CATEGORIES: tuple[str, ...] = get_args(Category)

NON_RETRYABLE: tuple[str, ...] = ("validation", "conflict", "test_failed", "budget", "cancelled")

# Not a failure: the error type of a polling tool's answer that what it waits for has
# not happened yet (a pull request not merged yet). Temporal calls it again by the
# polling retry policy (towline.workflows.polling); it is never a task's category.
NOT_YET = "not_yet"

_HINTS: dict[str, str] = {
    "validation": "fix the task's input in the plan and run it again",
    "tool": "read the tool's output (towline logs RUN TASK); the task's retry policy applies",
    "timeout": "raise the task's timeout, or find out why it is slow",
    "test_failed": "the test gate failed: fix the code or the tests, then retry the run",
    "conflict": "the change does not apply cleanly: rebase the patch or resolve by hand",
    "budget": "raise the budget (settings.budget) or lower the cost of the run",
    "system": "an unexpected error inside towline or the worker; check the worker's log",
    "cancelled": "the run or the task was cancelled",
}


def is_retryable(category: str) -> bool:
    return category not in NON_RETRYABLE


def hint_for(category: str) -> str:
    return _HINTS.get(category, "")


class ToolError(Exception):
    """Raised by tool code for an expected failure, with its category.

    ``output`` is the tail of what the tool printed, kept so a person (or a fix task)
    can see why it failed.
    """

    def __init__(
        self,
        category: Category,
        message: str,
        *,
        hint: str | None = None,
        output: str | None = None,
        outputs: dict[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        self.category: Category = category
        self.message = message
        self.hint = hint or hint_for(category)
        self.output = output
        self.outputs = outputs or {}
