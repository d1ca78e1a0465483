"""Reading plan files: YAML or JSON, ``--set`` overrides, and every problem at once."""

from __future__ import annotations

import copy
import difflib
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from towline.plan.spec import PlanSpec
from towline.plan.validate import Problem, check_plan


class PlanError(Exception):
    """A plan that cannot run. ``str()`` lists every problem, one per line."""

    def __init__(self, problems: Sequence[Problem], *, source: str = "") -> None:
        self.problems = list(problems)
        self.source = source
        prefix = f"{source}: " if source else ""
        super().__init__("\n".join(f"{prefix}{p}" for p in self.problems))


def load_plan(
    path: str | Path,
    *,
    sets: Sequence[str] = (),
    tools: Mapping[str, type[BaseModel]] | None = None,
) -> PlanSpec:
    """Read, override (``--set k=v``) and check a plan file; raise PlanError if it is wrong.

    ``.yaml``/``.yml`` files are YAML, ``.json`` files JSON; others are sniffed.
    ``tools`` maps tool names to input models; by default, every registered tool.
    """
    source = str(path)
    data = _read(Path(path), source)
    try:
        data = apply_sets(data, sets)
    except PlanError as e:
        raise PlanError(e.problems, source=source) from None
    return check_data(data, tools=tools, source=source)


def check_data(
    data: Any, *, tools: Mapping[str, type[BaseModel]] | None = None, source: str = ""
) -> PlanSpec:
    """Check a plan given as plain data; raise PlanError with every problem."""
    plan, problems = check_plan(data, _registered_tools() if tools is None else tools)
    if plan is None:
        raise PlanError(problems, source=source)
    return plan


def apply_sets(data: dict[str, Any], sets: Sequence[str]) -> dict[str, Any]:
    """A copy of ``data`` with Helm-style ``--set`` overrides applied, in order.

    ``settings.max_parallel=2`` sets a key (missing mappings are created);
    ``workstreams.api.tasks.test.with.command=[make, test]`` finds list items by ``id``
    (or by index). Values are YAML: ``2`` is a number, ``[a, b]`` a list, ``true`` a bool.
    Write ``\\.`` for a dot inside a key.
    """
    out = copy.deepcopy(data)
    for item in sets:
        _apply_set(out, item)
    return out


def _registered_tools() -> dict[str, type[BaseModel]]:
    from towline.activities.tools import TOOLS

    return {name: t.input_model for name, t in TOOLS.items()}


def _read(path: Path, source: str) -> dict[str, Any]:
    def fail(message: str) -> PlanError:
        return PlanError([Problem("", message)], source=source)

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise fail("file not found") from None
    except IsADirectoryError:
        raise fail("is a directory, not a plan file") from None
    except UnicodeDecodeError:
        raise fail("not a text file (it is not UTF-8)") from None
    except OSError as e:
        raise fail(f"cannot read the file: {e.strerror or e}") from None
    suffix = path.suffix.lower()
    as_json = suffix == ".json" or (
        suffix not in (".yaml", ".yml") and text.lstrip().startswith(("{", "["))
    )
    try:
        data = json.loads(text) if as_json else yaml.load(text, Loader=_StrictLoader)
    except json.JSONDecodeError as e:
        raise fail(f"invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
    except yaml.YAMLError as e:
        raise fail(_yaml_message(e)) from None
    if data is None:
        raise fail("the plan is empty")
    if not isinstance(data, dict):
        raise fail(
            f"a plan must be a mapping of keys (version, name, workstreams...), not {_kind(data)}"
        )
    return data


def _kind(value: Any) -> str:
    kinds = {list: "a list", dict: "a mapping", str: "a string", bool: "a boolean"}
    kinds |= {int: "a number", float: "a number", type(None): "null"}
    return kinds.get(type(value), type(value).__name__)


def _yaml_message(error: yaml.YAMLError) -> str:
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark = error.problem_mark
        what = error.problem or str(error)
        return f"invalid YAML at line {mark.line + 1}, column {mark.column + 1}: {what}"
    return f"invalid YAML: {error}"


class _StrictLoader(yaml.SafeLoader):
    """The safe YAML loader, except that a key given twice is an error, not a silent win."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_DOT = re.compile(r"(?<!\\)\.")


def _apply_set(data: dict[str, Any], item: str) -> None:
    def fail(message: str) -> PlanError:
        return PlanError([Problem("", f"--set {item}: {message}")])

    key, eq, raw = item.partition("=")
    if not eq or not key.strip():
        raise fail("expected KEY=VALUE, e.g. settings.max_parallel=2")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise fail(f"the value is not valid YAML ({_yaml_message(e)})") from None
    segments = [s.replace("\\.", ".") for s in _DOT.split(key.strip())]
    if any(not s for s in segments):
        raise fail(f"empty key in '{key}'")
    here: Any = data
    for depth, seg in enumerate(segments):
        last = depth == len(segments) - 1
        where = ".".join(segments[:depth]) or "the plan"
        if isinstance(here, dict):
            if last:
                here[seg] = value
            else:
                if here.get(seg) is None:
                    here[seg] = {}
                here = here[seg]
        elif isinstance(here, list):
            index = _find_item(here, seg)
            if index is None:
                ids = [str(x["id"]) for x in here if isinstance(x, dict) and "id" in x]
                close = difflib.get_close_matches(seg, ids, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise fail(f"{where} has no item with id or index '{seg}'{hint}")
            if last:
                here[index] = value
            else:
                here = here[index]
        else:
            raise fail(f"{where} is {_kind(here)}, so it has no '{seg}'")


def _find_item(items: list[Any], seg: str) -> int | None:
    """The position of the item whose ``id`` is ``seg``, else of index ``seg``."""
    for i, x in enumerate(items):
        if isinstance(x, dict) and "id" in x and str(x["id"]) == seg:
            return i
    if seg.isdigit() and int(seg) < len(items):
        return int(seg)
    return None
