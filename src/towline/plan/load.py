"""Reading plan files: YAML or JSON, ``--set`` overrides, and every problem at once.

Reading is bounded (:mod:`towline.plan.limits`): at most ``MAX_PLAN_BYTES`` are read, so
``/dev/zero`` is rejected as soon as it passes them; YAML aliases are checked before they
are expanded, so a recursive alias or an alias bomb ("billion laughs") is rejected
without being built; numbers too long to be read cheaply are rejected as written.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from towline.plan import limits
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
    if sets:
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
    checked = limits.check_values(data)
    if not checked.whole:
        raise PlanError([Problem(path, message) for path, message in checked.problems])
    out: dict[str, Any] = _copy(data)
    for item in sets:
        _apply_set(out, item)
    return out


def _copy(value: Any) -> Any:
    """A copy of plain data in which nothing is shared (an alias's target is copied at
    each use, so ``--set`` changes one place only). Within the limits, so recursion is
    bounded by ``MAX_DEPTH``."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _registered_tools() -> dict[str, type[BaseModel]]:
    from towline.activities.tools import TOOLS

    return {name: t.input_model for name, t in TOOLS.items()}


def _read(path: Path, source: str) -> dict[str, Any]:
    def fail(message: str) -> PlanError:
        return PlanError([Problem("", message)], source=source)

    try:
        with path.open("rb") as f:
            raw = f.read(limits.MAX_PLAN_BYTES + 1)
    except FileNotFoundError:
        raise fail("file not found") from None
    except IsADirectoryError:
        raise fail("is a directory, not a plan file") from None
    except OSError as e:
        raise fail(f"cannot read the file: {e.strerror or e}") from None
    if len(raw) > limits.MAX_PLAN_BYTES:
        raise fail(f"larger than {limits.size(limits.MAX_PLAN_BYTES)}, the limit for a plan file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise fail("not a text file (it is not UTF-8)") from None
    suffix = path.suffix.lower()
    as_json = suffix == ".json" or (
        suffix not in (".yaml", ".yml") and text.lstrip().startswith(("{", "["))
    )
    try:
        data = _parse_json(text) if as_json else parse_yaml(text)
    except _Unreadable as e:
        raise fail(str(e)) from None
    if data is None:
        raise fail("the plan is empty")
    if not isinstance(data, dict):
        raise fail(
            f"a plan must be a mapping of keys (version, name, workstreams...), not {_kind(data)}"
        )
    return data


class _Unreadable(ValueError):
    """A plan text that cannot be read as data, or only past the limits."""


def parse_yaml(text: str) -> Any:
    """YAML as plans use it: safe types, no duplicate keys, aliases within the limits.

    Raises ValueError (with the line and column) for anything else.
    """
    loader = _PlanLoader(text)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as e:
        raise _Unreadable(_yaml_message(e)) from None
    except _TooBig as e:
        raise _Unreadable(f"line {e.mark.line + 1}, column {e.mark.column + 1}: {e}") from None
    except RecursionError:  # only without libyaml, whose parser stops at 1,000 levels
        raise _Unreadable(f"nested more than {limits.MAX_DEPTH} levels deep") from None
    finally:
        loader.dispose()


def _parse_json(text: str) -> Any:
    try:
        return json.loads(
            text,
            object_pairs_hook=_json_object,
            parse_int=_json_int,
            parse_constant=_json_constant,
        )
    except json.JSONDecodeError as e:
        raise _Unreadable(f"invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
    except RecursionError:
        raise _Unreadable(f"nested more than {limits.MAX_DEPTH} levels deep") from None


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Unreadable(f"invalid JSON: duplicate key {_short(key)}")
        out[key] = value
    return out


def _json_int(text: str) -> int:
    if len(text) > limits.MAX_NUMBER_DIGITS:
        raise _Unreadable(f"invalid JSON: the number {text[:20]}... is too long")
    return int(text)


def _json_constant(text: str) -> Any:
    raise _Unreadable(f"invalid JSON: {text} is not a number JSON allows")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


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


_Base: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"


class _TooBig(Exception):
    """A YAML document past a limit, found before it is built."""

    def __init__(self, message: str, mark: Any) -> None:
        super().__init__(message)
        self.mark = mark


class _PlanLoader(_Base):  # type: ignore[valid-type,misc]
    """The safe YAML loader (libyaml's, when installed), with a plan's rules.

    The document's nodes are checked before any value is built: an alias that contains
    itself, more values or text than the limits once aliases are expanded, nesting past
    ``MAX_DEPTH``, or a number too long to read cheaply are errors. A key given twice,
    or a key that is a list or a mapping, is an error too.
    """

    def get_single_data(self) -> Any:
        node = self.get_single_node()
        if node is None:
            return None
        _check_nodes(node)
        return self.construct_document(node)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError, TypeError) as e:  # e.g. a date in year 0
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read this value: {e}", node.start_mark
            ) from None

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                hash(key)
            except TypeError:  # a list, a mapping, a !!set...
                raise yaml.constructor.ConstructorError(
                    None, None, f"a key must be a string, not {_kind(key)}", key_node.start_mark
                ) from None
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {_short(key)}", key_node.start_mark
                )
            seen.add(key)
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping


def _check_nodes(root: yaml.Node) -> None:
    """Size up a YAML node graph as it would be expanded, without expanding it.

    Aliases make the graph share nodes, so each node's expanded size (values, text,
    depth below it) is computed once, children first (iteratively: no recursion).
    """
    done: dict[int, tuple[int, int, int]] = {}  # id -> values, text, depth
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if key in done:
            continue
        if isinstance(node, yaml.ScalarNode):
            if node.tag in (_INT_TAG, _FLOAT_TAG) and len(node.value) > limits.MAX_NUMBER_DIGITS:
                raise _TooBig(
                    f"the number {node.value[:20]}... is longer than "
                    f"{limits.MAX_NUMBER_DIGITS} characters",
                    node.start_mark,
                )
            done[key] = (1, len(node.value), 0)
            continue
        kids = _kids(node)
        if not children_done:
            on_path.add(key)
            stack.append((node, True))
            for kid in kids:
                if id(kid) in on_path:
                    raise _TooBig(
                        "an alias to a value that contains it (a recursive alias)",
                        kid.start_mark,
                    )
                if id(kid) not in done:
                    stack.append((kid, False))
            continue
        on_path.discard(key)
        values, text, depth = 1, 0, 0
        for kid in kids:
            v, t, d = done[id(kid)]
            values, text, depth = values + v, text + t, max(depth, d)
        depth += 1
        if values > limits.MAX_VALUES:
            raise _TooBig(
                f"more than {limits.MAX_VALUES:,} values once aliases are expanded "
                "(an alias used too often?)",
                node.start_mark,
            )
        if text > limits.MAX_TEXT:
            raise _TooBig(
                f"more than {limits.size(limits.MAX_TEXT)} of text once aliases are expanded",
                node.start_mark,
            )
        if depth > limits.MAX_DEPTH:
            raise _TooBig(f"nested more than {limits.MAX_DEPTH} levels deep", node.start_mark)
        done[key] = (values, text, depth)


def _kids(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


_DOT = re.compile(r"(?<!\\)\.")


def _apply_set(data: dict[str, Any], item: str) -> None:
    def fail(message: str) -> PlanError:
        return PlanError([Problem("", f"--set {item}: {message}")])

    key, eq, raw = item.partition("=")
    if not eq or not key.strip():
        raise fail("expected KEY=VALUE, e.g. settings.max_parallel=2")
    try:
        value = parse_yaml(raw) if raw.strip() else ""
    except _Unreadable as e:
        raise fail(f"the value is not valid YAML ({e})") from None
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
