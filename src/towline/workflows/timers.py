"""What a durable wait's timer says in the Web UI: what it waits for, and for how long.

A timer's summary is user metadata shown on the workflow's timeline (e.g. "deploy:
waiting for approval (2d)"), not part of its commands: changing it changes no replay.
"""

from __future__ import annotations

from datetime import timedelta

from towline.durations import format_duration


def span(value: timedelta) -> str:
    """A timer's length as plans spell durations, to the second (``1d23h59m59s``).

    A wait resumed after a restart or continue-as-new waits for what is left, which is
    rarely whole; milliseconds only show when it is shorter than a second.
    """
    if value < timedelta(seconds=1):
        return format_duration(max(value, timedelta(0)))
    return format_duration(timedelta(seconds=round(value.total_seconds())))


def wait_summary(subject: str, what: str, length: timedelta) -> str:
    """``deploy: waiting for approval (2d)``."""
    return f"{subject}: waiting for {what} ({span(length)})"
