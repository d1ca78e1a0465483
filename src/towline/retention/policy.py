"""How long a finished run's things are kept, and the decision of what may be removed.

Pure: the facts come in (what Temporal says of a run, when its things were last
touched), the decision goes out. :mod:`towline.retention.collect` gathers the facts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from pydantic import BaseModel

from towline.config import ConfigError
from towline.durations import format_duration, parse_duration

Kind = Literal["workspaces", "snapshots", "artifacts", "history", "cache"]
KINDS: tuple[Kind, ...] = ("workspaces", "snapshots", "artifacts", "history", "cache")

DEFAULTS: Mapping[Kind, timedelta] = {
    # A failed run's workspace is what a person inspects, and what `towline retry` and
    # `towline rollback` carry on in: a week.
    "workspaces": timedelta(days=7),
    # Snapshots in the store are the workspaces a retry or a rollback on another machine
    # starts from: as long as the workspaces.
    "snapshots": timedelta(days=7),
    # Logs and large outputs, read by `towline logs`: a month.
    "artifacts": timedelta(days=30),
    # Tool-call rows feed `towline stats`, ETAs and `timeout: auto`: a quarter.
    "history": timedelta(days=90),
    "cache": timedelta(days=7),
}


def variable(kind: Kind) -> str:
    return f"TOWLINE_RETENTION_{kind.upper()}"


@dataclass(frozen=True)
class Retention:
    """How long each kind of thing is kept after its run finished."""

    keep: Mapping[Kind, timedelta]

    def of(self, kind: Kind) -> timedelta:
        return self.keep[kind]

    def describe(self) -> dict[str, str]:
        return {kind: format_duration(self.keep[kind]) for kind in KINDS}


def from_environment(
    env: Mapping[str, str] = os.environ, *, older_than: timedelta | None = None
) -> Retention:
    """The retention the ``TOWLINE_RETENTION_*`` variables (or a profile) set.

    ``older_than`` (``towline gc --older-than``) replaces every kind's period.
    """
    keep: dict[Kind, timedelta] = {}
    for kind in KINDS:
        if older_than is not None:
            keep[kind] = older_than
            continue
        text = env.get(variable(kind))
        if not text:
            keep[kind] = DEFAULTS[kind]
            continue
        try:
            keep[kind] = parse_duration(text)
        except ValueError as e:
            raise ConfigError(f"{variable(kind)}: {e}") from None
    return Retention(keep)


RunState = Literal["running", "closed", "unknown"]


@dataclass(frozen=True)
class RunFacts:
    """What is known of one run whose things are on disk.

    ``state``: what Temporal says: running (or otherwise open), closed, or unknown (it
    has no record: deleted after the namespace's retention, or never a run there).
    ``closed_at``: when it closed (seconds since the epoch), if Temporal says.
    ``touched_at``: when its things last changed, the fallback for an unknown run.
    ``in_use``: a running run still needs them (a retry or rollback working in them).
    """

    run_id: str
    state: RunState
    touched_at: float
    closed_at: float | None = None
    in_use: bool = False


def removable(facts: RunFacts, keep: timedelta, *, now: float) -> bool:
    """Whether a run's things of one kind, kept for ``keep``, may be removed at ``now``.

    Never while the run, or a run using its things, is open; otherwise once ``keep`` has
    passed since it closed or its things last changed, whichever is later (only the
    latter when Temporal has forgotten the run).
    """
    if facts.state == "running" or facts.in_use:
        return False
    since = facts.touched_at
    if facts.state == "closed" and facts.closed_at is not None:
        # Whichever is later: a rollback after the run closed still worked in its things.
        since = max(facts.closed_at, facts.touched_at)
    return now - since >= keep.total_seconds()


class GcInput(BaseModel):
    """What the daily ``towline gc`` (a Temporal Schedule) is started with."""

    older_than: str | None = None  # one retention for every kind; None: the worker's settings
    dry_run: bool = False
