"""Waiting for days by polling, with Temporal's retry policy as the loop.

A tool that polls (``pr`` with ``wait: merged``) answers "not yet" with a retryable
``not_yet`` error; this module gives its activity a retry policy that calls it again
after ``poll_interval``, doubling up to ``max_poll_interval``, with no limit on attempts,
and a ``schedule_to_close_timeout`` of ``wait_timeout`` that ends the wait.

Why retries, not a loop of activity + timer in the workflow: Temporal records an
activity's retries in no event (only its final attempt's start and its outcome are
written), so a week of polls costs the workstream's history three events, as one call
does; a workflow loop would write about ten events per poll (activity scheduled,
started, completed, timer started, fired, and the workflow tasks between), some
thousands over a week at a 15-minute cap. Real failures keep their meaning: a
``validation``, ``conflict`` or ``test_failed`` error ends the wait at once; a forge
that is down (``tool``) is polled again like "not yet", until the wait's deadline.

Pure and deterministic: the workflow calls it with the call's resolved arguments.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio.common import RetryPolicy

from towline.catalogue import facts
from towline.durations import parse_duration
from towline.errors import NON_RETRYABLE

BACKOFF = 2.0
DEFAULT_POLL_INTERVAL = timedelta(minutes=1)
DEFAULT_MAX_POLL_INTERVAL = timedelta(minutes=15)
DEFAULT_WAIT_TIMEOUT = timedelta(days=7)


def options(tool: str, args: dict[str, Any]) -> dict[str, Any] | None:
    """The activity options of a call that waits by polling; None for any other call."""
    if not facts(tool).polls or not args.get("wait"):
        return None
    first = _duration(args.get("poll_interval"), DEFAULT_POLL_INTERVAL)
    cap = max(_duration(args.get("max_poll_interval"), DEFAULT_MAX_POLL_INTERVAL), first)
    return {
        "retry_policy": RetryPolicy(
            initial_interval=first,
            backoff_coefficient=BACKOFF,
            maximum_interval=cap,
            maximum_attempts=0,  # unlimited: the deadline below ends the wait
            non_retryable_error_types=list(NON_RETRYABLE),
        ),
        "schedule_to_close_timeout": _duration(args.get("wait_timeout"), DEFAULT_WAIT_TIMEOUT),
    }


def _duration(value: Any, default: timedelta) -> timedelta:
    """A duration from the plan; a bad one is left to the tool's input check to report."""
    if value is None:
        return default
    try:
        found = parse_duration(value)
    except ValueError:
        return default
    return found if found > timedelta(0) else default
