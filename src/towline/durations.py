"""Durations as people write them in plans: ``90s``, ``10m``, ``48h``, ``3d``, ``1h30m``."""

from __future__ import annotations

import math
import re
from datetime import timedelta

from towline.plan.limits import MAX_DURATION

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse_duration(text: str | int | float | timedelta) -> timedelta:
    """Parse ``90s``/``10m``/``48h``/``3d`` (or a sum such as ``1h30m``; bare numbers are seconds).

    At most :data:`~towline.plan.limits.MAX_DURATION`. Raises ValueError with a message
    a person can act on.
    """
    if isinstance(text, timedelta):
        return _bounded(text.total_seconds(), text)
    if isinstance(text, bool):
        raise ValueError(f"not a duration: {text!r}")
    if isinstance(text, int | float):
        if text < 0:
            raise ValueError(f"duration must not be negative: {text!r}")
        return _bounded(float(text), text)
    s = str(text).strip().lower()
    pos, total = 0, 0.0
    for m in _PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not s or pos != len(s):
        raise ValueError(f"not a duration: {_show(text)} (use e.g. 90s, 10m, 48h, 3d)")
    return _bounded(total, text)


def _bounded(seconds: float, text: object) -> timedelta:
    if math.isnan(seconds):
        raise ValueError(f"not a duration: {_show(text)}")
    if seconds > MAX_DURATION.total_seconds():
        limit = format_duration(MAX_DURATION)
        raise ValueError(f"duration too long: {_show(text)} (at most {limit})")
    return timedelta(seconds=seconds)


def _show(text: object) -> str:
    shown = repr(text)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def format_duration(value: timedelta) -> str:
    """The shortest plan-style spelling of a duration: ``timedelta(hours=48)`` -> ``2d``."""
    ms = round(value.total_seconds() * 1000)
    if ms == 0:
        return "0s"
    out = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        n, ms = divmod(ms, size)
        if n:
            out.append(f"{n}{unit}")
    if ms:
        out.append(f"{ms}ms")
    return "".join(out)
