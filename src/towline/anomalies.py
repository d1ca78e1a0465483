"""When things look wrong: the rules behind the worker's anomaly metrics, as plain functions.

- A slow call: a tool call that has run longer than the p99 of its past successful
  calls (of the same task of the same plan when there are enough of them, else of the
  tool), and longer than :data:`SLOW_FLOOR`, is slow while it still runs
  (:func:`slow_after`).
- A failure-rate jump: a tool whose last :data:`RECENT_CALLS` calls on this worker fail
  far more often than its long-term rate in the history (:func:`failure_rate_jumped`).

The worker applies them as tool calls happen (:mod:`towline.worker.anomalies`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from towline.estimates import percentile

SLOW_PERCENTILE = 99.0
MIN_SAMPLES = 20  # fewer past calls say too little about what is slow
SLOW_WINDOW = 200  # the newest successful calls a p99 is taken from
SLOW_FLOOR = 1.0  # seconds: a call is never slow before this (p99s of milliseconds are noise)

RECENT_CALLS = 20  # the window of a tool's latest calls on this worker
MIN_RECENT = 10  # calls in the window before a jump can be told
BASELINE_CALLS = 500  # the newest calls of the tool in the history: its long-term rate
JUMP_FACTOR = 2.0  # the recent rate is at least twice the long-term one...
JUMP_MARGIN = 0.3  # ...and at least 30 points above it


@dataclass(frozen=True)
class SlowThreshold:
    """After how many seconds a call is slow, and what that figure comes from."""

    seconds: float
    p99_s: float
    samples: int
    scope: str  # "task" (this task's past calls) or "tool" (the tool's)


def slow_after(
    durations: Sequence[float], *, scope: str, min_samples: int = MIN_SAMPLES
) -> SlowThreshold | None:
    """The threshold past which a call is slow, from past successful call ``durations``
    (seconds); None with fewer than ``min_samples`` of them."""
    if len(durations) < min_samples:
        return None
    p99 = percentile(durations, SLOW_PERCENTILE)
    return SlowThreshold(
        seconds=max(p99, SLOW_FLOOR), p99_s=p99, samples=len(durations), scope=scope
    )


def pick_threshold(
    task: Sequence[float], tool: Sequence[float], *, min_samples: int = MIN_SAMPLES
) -> SlowThreshold | None:
    """The task's own threshold when its history suffices, else its tool's."""
    return slow_after(task, scope="task", min_samples=min_samples) or slow_after(
        tool, scope="tool", min_samples=min_samples
    )


@dataclass(frozen=True)
class FailureRate:
    failed: int
    calls: int  # succeeded or failed (cancellations and polls are nobody's failure)

    @property
    def ratio(self) -> float:
        return self.failed / self.calls if self.calls else 0.0


def failure_rate_jumped(
    recent: FailureRate,
    baseline: FailureRate,
    *,
    min_recent: int = MIN_RECENT,
    factor: float = JUMP_FACTOR,
    margin: float = JUMP_MARGIN,
) -> bool:
    """Whether the ``recent`` failure rate has jumped above the long-term ``baseline``:
    enough recent calls, a rate at least ``factor`` times the baseline's and ``margin``
    above it. A tool with no history has a baseline of 0."""
    if recent.calls < min_recent:
        return False
    return recent.ratio >= baseline.ratio * factor and recent.ratio - baseline.ratio >= margin


class RecentOutcomes:
    """The latest outcomes of each tool (True: failed), :data:`RECENT_CALLS` of them, and
    which tools are currently over their baseline (so a crossing is told once)."""

    def __init__(self, size: int = RECENT_CALLS) -> None:
        self._size = size
        self._calls: dict[str, deque[bool]] = {}
        self.jumped: set[str] = set()

    def add(self, tool: str, failed: bool) -> FailureRate:
        """Record one call; the tool's recent rate."""
        window = self._calls.setdefault(tool, deque(maxlen=self._size))
        window.append(failed)
        return FailureRate(sum(window), len(window))

    def crossing(self, tool: str, jumped: bool) -> bool | None:
        """Set the tool's state: True when it has just jumped, False when it has just come
        back, None when nothing changed."""
        if jumped == (tool in self.jumped):
            return None
        if jumped:
            self.jumped.add(tool)
        else:
            self.jumped.discard(tool)
        return jumped
