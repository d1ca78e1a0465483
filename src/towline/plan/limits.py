"""The limits that make any plan cheap to check and safe to run, in one place.

A plan comes from people and scripts, careless or hostile ones too. Each limit is far
above what a real plan needs (a 10,000-task plan uses about a third of them) and low
enough that the starter, the workflows and the worker handle anything under it in a
small fraction of Temporal's limits (a 2 MB payload, a 2 s workflow task). They are
checked while loading (file size, and aliases before they are expanded: see
:mod:`towline.plan.load`), by :func:`check_values` over the loaded data, by expressions
(:mod:`towline.plan.expressions`), by durations (:mod:`towline.durations`) and by the
starter (run ids, the size of a run's input). docs/plan.md lists them.

Pure and stdlib-only: the workflows import it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

KiB = 1024
MiB = 1024 * KiB

MAX_PLAN_BYTES = 4 * MiB  # a plan file; a 10,000-task plan is about 1.7 MB of JSON
MAX_DEPTH = 64  # mappings and lists inside each other
MAX_VALUES = 250_000  # mappings, lists and scalars, once YAML aliases are expanded
MAX_TEXT = 16 * MiB  # characters of all strings (keys too), once aliases are expanded
MAX_STRING = 1 * MiB  # characters of one string
MAX_KEY = 256  # characters of one mapping key
MAX_INTEGER = 2**63 - 1  # the magnitude of a whole number (a signed 64-bit integer)
MAX_NUMBER_DIGITS = 40  # characters of a number as written, checked before reading it
MAX_EXPRESSION = 4 * KiB  # characters between ${{ and }}
MAX_EXPRESSION_DEPTH = 32  # operators and brackets inside each other in an expression
MAX_DURATION = timedelta(days=3650)  # any duration: 10 years
MAX_RUN_ID = 200  # characters of a run id (a workstream's workflow id adds its own)
# A run's input (its plan, and the outputs a retry reuses) as the starter sends it:
# JSON before compression, and the payload after; Temporal refuses payloads over 2 MB.
MAX_RUN_INPUT_JSON = 16 * MiB
MAX_RUN_INPUT_PAYLOAD = 1 * MiB

_SHOWN = 50  # problems reported at most by one check; the rest are counted


def size(n: int) -> str:
    """A byte or character count as people read it: ``4 MiB``, ``1.5 KiB``, ``200``."""
    for unit, scale in (("MiB", MiB), ("KiB", KiB)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return str(n)


@dataclass
class Checked:
    """What :func:`check_values` found: ``(path, message)`` pairs, in document order.

    ``whole`` is False when the data is past a limit that makes it unsafe to look at
    any further (a cycle, too many values or too much text, too deep): only these
    problems can be reported. Otherwise the problems are local (a string too long, a
    number too large) and the rest of the plan can still be checked.
    """

    problems: list[tuple[str, str]] = field(default_factory=list)
    whole: bool = True


def check_values(data: Any) -> Checked:
    """Every limit the plain data of a plan passes.

    Walks the data as it would be expanded (a value reachable twice counts twice) and
    stops early: at a cycle, or once the plan holds too many values or too much text.
    """
    problems: list[tuple[str, str]] = []
    values = text = 0
    too_deep = False
    above: set[int] = set()  # the containers around the value being looked at
    # (value, where, depth); a container's exit is (_EXIT, its id, 0)
    stack: list[tuple[Any, Any, int]] = [(data, None, 1)]
    while stack:
        value, where, depth = stack.pop()
        if value is _EXIT:
            above.discard(where)
            continue
        values += 1
        if values > MAX_VALUES:
            message = f"more than {MAX_VALUES:,} values (aliases expanded)"
            return Checked([*problems, ("", message)], whole=False)
        if isinstance(value, dict | list):
            if id(value) in above:
                return Checked([*problems, (_render(where), "contains itself (a cycle)")], False)
            if depth > MAX_DEPTH:
                if not too_deep:
                    problems.append((_render(where), f"nested more than {MAX_DEPTH} levels deep"))
                too_deep = True
                continue
            above.add(id(value))
            stack.append((_EXIT, id(value), 0))
            if isinstance(value, dict):
                for key in value:
                    if (wrong := _key_problem(key)) is not None:
                        problems.append((_render((where, key)), wrong))
                    if isinstance(key, str):
                        text += len(key)
                items: list[tuple[Any, Any]] = list(value.items())
            else:
                items = list(enumerate(value))
            stack.extend((child, (where, seg), depth + 1) for seg, child in reversed(items))
        else:
            if isinstance(value, str):
                text += len(value)
            if (wrong := _scalar_problem(value)) is not None:
                problems.append((_render(where), wrong))
        if text > MAX_TEXT:
            message = f"more than {size(MAX_TEXT)} of text (aliases expanded)"
            return Checked([*problems, ("", message)], whole=False)
        if len(problems) > _SHOWN:
            message = "more values past the limits (not listed)"
            return Checked([*problems[:_SHOWN], ("", message)], whole=False)
    return Checked(problems, whole=not too_deep)


_EXIT = object()


def _render(where: Any) -> str:
    """A path kept as nested ``(parent, key)`` pairs, written as ``a.b[0].c``."""
    segments: list[Any] = []
    while where is not None:
        where, seg = where
        segments.append(seg)
    out = ""
    for seg in reversed(segments):
        if isinstance(seg, int) and not isinstance(seg, bool):
            out += f"[{seg}]"
        else:
            text = str(seg) if len(str(seg)) <= 60 else str(seg)[:57] + "..."
            out += f".{text}" if out else text
    return out


def _scalar_problem(value: Any) -> str | None:
    if value is None or isinstance(value, bool | date):
        return None
    if isinstance(value, str):
        if len(value) > MAX_STRING:
            return (
                f"a string of {size(len(value))} characters, above the limit of {size(MAX_STRING)}"
            )
        return None
    if isinstance(value, int):
        if abs(value) > MAX_INTEGER:
            return f"the number is too large (at most {MAX_INTEGER:,} either way)"
        return None
    if isinstance(value, float):
        if not math.isfinite(value):
            return f"numbers must be finite, not {value}"
        return None
    return (
        f"unsupported value of type {type(value).__name__} (use a string, number, list or mapping)"
    )


def _key_problem(key: Any) -> str | None:
    if isinstance(key, str):
        return f"a key longer than {MAX_KEY} characters" if len(key) > MAX_KEY else None
    if isinstance(key, bool | int | float):
        return _scalar_problem(key)
    return f"unsupported key of type {type(key).__name__} (use a string)"
