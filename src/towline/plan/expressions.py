"""``${{ ... }}`` expressions in task ``with`` values and ``if:`` conditions.

The language is a small, safe subset parsed with :mod:`ast` and walked by hand (never
``eval``): literals (``true``/``false``/``null`` too), dotted names and ``x['key']``,
comparisons, ``and``/``or``/``not`` (or ``&&``/``||``/``!``), parentheses and lists.
The names are ``tasks``, ``run``, ``workstream``, ``failure`` and ``secrets``.

Secrets are never resolved here: ``${{ secrets.NAME }}`` stays as text and is replaced
inside the worker, so a secret never reaches workflow history.

An expression is at most :data:`~towline.plan.limits.MAX_EXPRESSION` characters, nested
at most :data:`~towline.plan.limits.MAX_EXPRESSION_DEPTH` deep, so parsing and evaluating
one is always cheap and never recursion-bound.

This module runs inside Temporal's workflow sandbox: pure, stdlib and towline's limits.
"""

from __future__ import annotations

import ast
import difflib
import functools
import json
import keyword
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from towline.plan.limits import MAX_EXPRESSION, MAX_EXPRESSION_DEPTH
from towline.stored import placeholder, stored_ref


class ExpressionError(ValueError):
    """An expression that cannot be parsed or resolved; the message names it."""


@dataclass(frozen=True)
class Scope:
    """What expressions can see while a task of ``workstream`` starts.

    ``lookup`` takes ``"task"`` (this workstream) or ``"ws.task"`` and returns the
    finished task's ``(status, outputs)``, or None when it is unknown or not finished.
    ``failure`` (``category``, ``message``, ``output``) is set only while fixing a failure.
    """

    run_id: str
    workstream: str
    lookup: Callable[[str], tuple[str, dict[str, Any]] | None]
    failure: dict[str, Any] | None = None


_NAMES = ("tasks", "run", "workstream", "failure", "secrets")
_LITERALS: dict[str, Any] = {"true": True, "false": False, "null": None}
_FAILURE_KEYS = ("category", "message", "output")
_TASK_PARTS = ("outputs", "status")

_SECRET_ONLY = re.compile(r"\s*secrets\.[A-Za-z_][A-Za-z0-9_]*\s*")
_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")

_COMPARE: dict[type[ast.cmpop], tuple[str, Callable[[Any, Any], bool]]] = {
    ast.Eq: ("==", lambda a, b: a == b),
    ast.NotEq: ("!=", lambda a, b: a != b),
    ast.Lt: ("<", lambda a, b: a < b),
    ast.LtE: ("<=", lambda a, b: a <= b),
    ast.Gt: (">", lambda a, b: a > b),
    ast.GtE: (">=", lambda a, b: a >= b),
    ast.In: ("in", lambda a, b: a in b),
    ast.NotIn: ("not in", lambda a, b: a not in b),
}
_UNSUPPORTED: dict[type[ast.AST], str] = {
    ast.Call: "function calls are not supported",
    ast.BinOp: "arithmetic is not supported",
    ast.IfExp: "conditional expressions are not supported",
    ast.Lambda: "lambdas are not supported",
    ast.ListComp: "comprehensions are not supported",
    ast.SetComp: "comprehensions are not supported",
    ast.DictComp: "comprehensions are not supported",
    ast.GeneratorExp: "comprehensions are not supported",
    ast.Dict: "mapping literals are not supported",
    ast.Set: "set literals are not supported",
    ast.NamedExpr: "assignments are not supported",
    ast.JoinedStr: "f-strings are not supported",
}


def resolve(value: Any, scope: Scope) -> Any:
    """Resolve every expression in a ``with`` tree (dicts, lists, strings).

    A string that is exactly one ``${{ expr }}`` becomes the value itself, with its type;
    expressions inside a longer string are interpolated as text. ``${{ secrets.X }}``
    is left as it is.
    """
    if isinstance(value, str):
        return _resolve_text(value, scope)
    if isinstance(value, dict):
        return {k: resolve(v, scope) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, scope) for v in value]
    return value


def evaluate(expr: str, scope: Scope) -> bool:
    """Evaluate an ``if:`` condition, written with or without the ``${{ }}``."""
    text = _condition(expr)
    parsed = _parse(text)
    if "secrets" in parsed.names:
        raise _error(text, "secrets cannot be used in a condition")
    return bool(_Eval(text, scope).value(parsed.tree))


def task_refs(value: Any) -> set[str]:
    """Every task referenced, as ``"task"`` or ``"ws.task"``, without evaluating.

    ``value`` is a ``with`` tree, or a string given on its own, which is read as an
    ``if:`` condition (so it may omit the ``${{ }}``). Unparsable expressions are
    skipped: :func:`check` reports them.
    """
    refs: set[str] = set()
    for parsed in _parsed_all(value):
        refs.update(parsed.tasks)
    return refs


def names(value: Any) -> set[str]:
    """The top-level names (``tasks``, ``secrets``, ``failure``...) used, like :func:`task_refs`."""
    found: set[str] = set()
    for parsed in _parsed_all(value):
        found.update(parsed.names)
    return found


def check(value: Any) -> list[str]:
    """Syntax problems of every expression in ``value`` (read like :func:`task_refs`)."""
    problems: list[str] = []
    for text in _texts(value, problems):
        try:
            _parse(text)
        except ExpressionError as e:
            problems.append(str(e))
    return problems


@dataclass(frozen=True)
class _Parsed:
    tree: ast.expr
    names: frozenset[str]
    tasks: frozenset[str]


def _error(expr: str, reason: str) -> ExpressionError:
    return ExpressionError(f"${{{{ {expr.strip()} }}}}: {reason}")


@dataclass(frozen=True)
class _Expr:
    """The text between ``${{`` and ``}}``."""

    text: str


def _pieces(text: str) -> list[str | _Expr]:
    """``text`` split into literal text and expressions, in one pass over it."""
    out: list[str | _Expr] = []
    pos = 0
    while (start := text.find("${{", pos)) >= 0:
        end = text.find("}}", start + 3)
        if end < 0:
            shown = text if len(text) <= 60 else text[:57] + "..."
            raise ExpressionError(f"unterminated expression in {shown!r} (missing '}}}}')")
        if start > pos:
            out.append(text[pos:start])
        out.append(_Expr(text[start + 3 : end]))
        pos = end + 2
    if pos < len(text):
        out.append(text[pos:])
    return out


def _condition(expr: str) -> str:
    pieces = _pieces(expr.strip())
    if len(pieces) == 1 and isinstance(pieces[0], _Expr):
        return pieces[0].text
    if any(isinstance(p, _Expr) for p in pieces):
        raise ExpressionError(f"a condition must be one expression: {expr!r}")
    return expr


def _texts(value: Any, problems: list[str] | None = None) -> Iterator[str]:
    """The expression texts in ``value``; a string on its own is a condition."""
    if isinstance(value, str):
        try:
            condition = _condition(value)
        except ExpressionError as e:
            if problems is not None:
                problems.append(str(e))
            return
        yield condition
        return
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                pieces = _pieces(item)
            except ExpressionError as e:
                if problems is not None:
                    problems.append(str(e))
                continue
            yield from (p.text for p in pieces if isinstance(p, _Expr))
        elif isinstance(item, dict):
            stack.extend(reversed(list(item.values())))
        elif isinstance(item, list):
            stack.extend(reversed(item))


def _parsed_all(value: Any) -> Iterator[_Parsed]:
    for text in _texts(value):
        try:
            yield _parse(text)
        except ExpressionError:
            continue


def _resolve_text(text: str, scope: Scope) -> Any:
    if "${{" not in text:
        return text
    pieces = _pieces(text)
    if len(pieces) == 1 and isinstance(pieces[0], _Expr):
        return _resolve_one(pieces[0].text, scope)
    out = []
    for piece in pieces:
        if isinstance(piece, str):
            out.append(piece)
        else:
            value = _resolve_one(piece.text, scope)
            out.append(value if _is_secret(piece.text) else _as_text(value))
    return "".join(out)


def _resolve_one(text: str, scope: Scope) -> Any:
    parsed = _parse(text)
    if _is_secret(text):
        return f"${{{{{text}}}}}"
    return _Eval(text, scope).value(parsed.tree)


def _is_secret(text: str) -> bool:
    return _SECRET_ONLY.fullmatch(text) is not None


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if (ref := stored_ref(value)) is not None:
        return placeholder(ref)  # the tool that gets this string gets the content
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _normalise(expr: str) -> str:
    """Rewrite GitHub-style syntax into Python's.

    ``&&``/``||`` become ``and``/``or``; a doubled quote in a string is a quote; ``!``
    becomes ``~`` (read back as *not*: it binds tighter than comparisons, as ``!`` does);
    a name segment that is not a Python identifier (``tasks.my-task``, ``tasks.1st``)
    becomes a subscript.
    """
    out: list[str] = []
    i, n = 0, len(expr)
    prev = ""  # "name" or "close" when a following "." is a member access
    while i < n:
        c = expr[i]
        if c in "'\"":
            # A quote inside is escaped with a backslash, or doubled as in GitHub Actions.
            j = i + 1
            while j < n and (expr[j] != c or expr.startswith(c + c, j)):
                j += 2 if expr[j] == "\\" or expr[j] == c else 1
            if j >= n:
                raise _error(expr, "unterminated string")
            out.append(c + expr[i + 1 : j].replace(c + c, "\\" + c) + c)
            i, prev = j + 1, "close"
        elif expr.startswith(("&&", "||"), i):
            out.append(" and " if c == "&" else " or ")
            i, prev = i + 2, ""
        elif expr.startswith("!=", i):
            out.append("!=")
            i, prev = i + 2, ""
        elif c in "!~":
            if c == "~":
                raise _error(expr, "'~' is not supported")
            out.append(" ~")
            i, prev = i + 1, ""
        elif c == "." and prev in ("name", "close") and (m := _SEGMENT.match(expr, i + 1)):
            seg = m.group()
            plain = seg.isidentifier() and not keyword.iskeyword(seg)
            out.append(f".{seg}" if plain else f"[{seg!r}]")
            i, prev = m.end(), "name"
        elif c.isascii() and (c.isalpha() or c == "_") and (m := _NAME.match(expr, i)):
            out.append(m.group())
            i, prev = m.end(), "" if keyword.iskeyword(m.group()) else "name"
        elif c.isdigit() and (m := _NUMBER.match(expr, i)):
            out.append(m.group())
            i, prev = m.end(), ""
        else:
            out.append(c)
            if not c.isspace():
                prev = "close" if c in ")]" else ""
            i += 1
    return "".join(out)


@functools.lru_cache(maxsize=4096)
def _parse(text: str) -> _Parsed:
    if not text.strip():
        raise _error(text, "empty expression")
    if len(text) > MAX_EXPRESSION:
        raise _error(
            text[:40] + "...", f"longer than {MAX_EXPRESSION:,} characters ({len(text):,})"
        )
    try:
        tree = ast.parse(_normalise(text).strip(), mode="eval").body
    except SyntaxError as e:
        detail = f" ({e.msg})" if e.msg and e.msg != "invalid syntax" else ""
        raise _error(text, f"not a valid expression{detail}") from None
    except (RecursionError, MemoryError):  # Python's parser gives up on deep nesting
        raise _error(text, _TOO_DEEP) from None
    found_names: set[str] = set()
    found_tasks: set[str] = set()
    stack: list[tuple[ast.AST, int]] = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_EXPRESSION_DEPTH:
            raise _error(text, _TOO_DEEP)
        inner = depth + 1
        if isinstance(node, ast.Name | ast.Attribute | ast.Subscript):
            root, path = _flatten(text, node)
            if root in _LITERALS:
                if path:
                    raise _error(text, f"'{root}' has no properties")
                continue
            _check_ref(text, root, path)
            found_names.add(root)
            if root == "tasks":
                found_tasks.add(_task_ref(text, path)[0])
        elif isinstance(node, ast.Constant):
            if not isinstance(node.value, str | int | float | bool | type(None)):
                raise _error(text, f"unsupported literal {node.value!r}")
        elif isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.USub | ast.UAdd):
                if not (
                    isinstance(node.operand, ast.Constant)
                    and isinstance(node.operand.value, int | float)
                    and not isinstance(node.operand.value, bool)
                ):
                    raise _error(text, "arithmetic is not supported")
            elif not isinstance(node.op, ast.Not | ast.Invert):
                raise _error(text, "arithmetic is not supported")
            stack.append((node.operand, inner))
        elif isinstance(node, ast.BoolOp):
            stack.extend((v, inner) for v in node.values)
        elif isinstance(node, ast.Compare):
            for op in node.ops:
                if type(op) not in _COMPARE:
                    raise _error(text, f"operator '{_op_text(op)}' is not supported")
            stack.append((node.left, inner))
            stack.extend((c, inner) for c in node.comparators)
        elif isinstance(node, ast.List | ast.Tuple):
            stack.extend((e, inner) for e in node.elts)
        else:
            raise _error(text, _UNSUPPORTED.get(type(node), "unsupported syntax"))
    if "secrets" in found_names and not _is_secret(text):
        raise _error(text, "secrets can only be used on their own, as ${{ secrets.NAME }}")
    return _Parsed(tree, frozenset(found_names), frozenset(found_tasks))


_TOO_DEEP = f"nested too deeply (at most {MAX_EXPRESSION_DEPTH} levels of operators and brackets)"


def _op_text(op: ast.cmpop) -> str:
    return {ast.Is: "is", ast.IsNot: "is not"}.get(type(op), type(op).__name__)


def _flatten(text: str, node: ast.expr) -> tuple[str, tuple[str | int, ...]]:
    """``tasks.a.outputs['x']`` -> ``("tasks", ("a", "outputs", "x"))``."""
    path: list[str | int] = []
    while not isinstance(node, ast.Name):
        if isinstance(node, ast.Attribute):
            if node.attr.startswith("__"):
                raise _error(text, f"'{node.attr}' is not allowed")
            path.append(node.attr)
            node = node.value
        elif isinstance(node, ast.Subscript):
            path.append(_key(text, node.slice))
            node = node.value
        else:
            raise _error(text, "only names can be indexed, e.g. tasks.build.outputs['key']")
    path.reverse()
    return node.id, tuple(path)


def _key(text: str, node: ast.expr) -> str | int:
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, str | int) and not isinstance(value, bool):
            return value
    if (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, ast.USub)
        and isinstance(node.operand, ast.Constant)
        and type(node.operand.value) is int
    ):
        return -node.operand.value
    raise _error(text, "an index must be a string or a whole number, e.g. ['key'] or [0]")


def _check_ref(text: str, root: str, path: tuple[str | int, ...]) -> None:
    if root == "tasks":
        _task_ref(text, path)
    elif root in ("run", "workstream"):
        if path != ("id",):
            raise _error(text, f"'{root}' has only 'id' (write {root}.id)")
    elif root == "failure":
        if not path or path[0] not in _FAILURE_KEYS:
            raise _error(text, "use failure.category, failure.message or failure.output")
    elif root == "secrets":
        if len(path) != 1:
            raise _error(text, "write a secret as secrets.NAME")
    else:
        close = difflib.get_close_matches(root, _NAMES, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else f" (use one of: {', '.join(_NAMES)})"
        raise _error(text, f"unknown name '{root}'{hint}")


def _task_ref(text: str, path: tuple[str | int, ...]) -> tuple[str, tuple[str | int, ...]]:
    """Split a ``tasks.`` path into the task (``"id"`` or ``"ws.id"``) and the rest."""
    if len(path) >= 2 and path[1] in _TASK_PARTS:
        key, rest = str(path[0]), path[1:]
    elif len(path) >= 3 and path[2] in _TASK_PARTS:
        key, rest = f"{path[0]}.{path[1]}", path[2:]
    else:
        raise _error(
            text,
            "a task reference reads tasks.<id>.outputs.<key>, tasks.<id>.status, "
            "or tasks.<workstream>.<id>.outputs.<key>",
        )
    if rest[0] == "status" and len(rest) > 1:
        raise _error(text, "a task's status is a string; nothing can follow it")
    return key, rest


def _label(root: str, path: tuple[str | int, ...]) -> str:
    parts = [root]
    for seg in path:
        plain = isinstance(seg, str) and seg.isidentifier()
        parts.append(f".{seg}" if plain else f"[{seg!r}]")
    return "".join(parts)


class _Eval:
    """Walks a checked tree; every failure is an ExpressionError naming the expression."""

    def __init__(self, text: str, scope: Scope) -> None:
        self.text = text
        self.scope = scope

    def value(self, node: ast.expr) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name | ast.Attribute | ast.Subscript):
            return self._ref(*_flatten(self.text, node))
        if isinstance(node, ast.BoolOp):
            result: Any = None
            for item in node.values:
                result = self.value(item)
                if bool(result) == isinstance(node.op, ast.Or):
                    return result
            return result
        if isinstance(node, ast.UnaryOp):
            operand = self.value(node.operand)
            if isinstance(node.op, ast.USub):
                return -operand
            if isinstance(node.op, ast.UAdd):
                return operand
            return not operand
        if isinstance(node, ast.Compare):
            return self._compare(node)
        if isinstance(node, ast.List | ast.Tuple):
            return [self.value(e) for e in node.elts]
        raise _error(self.text, "unsupported expression")

    def _compare(self, node: ast.Compare) -> bool:
        left = self.value(node.left)
        for op, item in zip(node.ops, node.comparators, strict=True):
            right = self.value(item)
            symbol, fn = _COMPARE[type(op)]
            try:
                ok = fn(left, right)
            except TypeError:
                raise _error(
                    self.text,
                    f"cannot compare {_type(left)} and {_type(right)} with '{symbol}'",
                ) from None
            if not ok:
                return False
            left = right
        return True

    def _ref(self, root: str, path: tuple[str | int, ...]) -> Any:
        if root in _LITERALS:
            return _LITERALS[root]
        if root == "tasks":
            return self._task(path)
        if root == "run":
            return self.scope.run_id
        if root == "workstream":
            return self.scope.workstream
        if root == "failure":
            if self.scope.failure is None:
                raise _error(self.text, "'failure' is only available while fixing a failed task")
            value = self.scope.failure.get(str(path[0]))
            return self._index(value, path[1:], _label(root, path[:1]))
        raise _error(self.text, "secrets can only be used on their own, as ${{ secrets.NAME }}")

    def _task(self, path: tuple[str | int, ...]) -> Any:
        key, rest = _task_ref(self.text, path)
        ws, _, task = key.rpartition(".")
        if ws == self.scope.workstream:
            key = task
        found = self.scope.lookup(key)
        if found is None:
            raise _error(self.text, f"task '{key}' has not finished")
        status, outputs = found
        if rest[0] == "status":
            return status
        if len(rest) == 1:
            return outputs
        name = str(rest[1])
        if name not in outputs:
            have = f"it has: {', '.join(sorted(outputs))}" if outputs else "it has no outputs"
            raise _error(self.text, f"task '{key}' has no output '{name}' ({have})")
        label = _label("tasks", path[: len(path) - len(rest) + 2])
        return self._index(outputs[name], rest[2:], label)

    def _index(self, value: Any, path: tuple[str | int, ...], label: str) -> Any:
        for seg in path:
            if isinstance(value, dict):
                if seg not in value:
                    raise _error(self.text, f"{label} has no key {seg!r}")
                value = value[seg]
            elif isinstance(value, list):
                pos = int(seg) if isinstance(seg, str) and seg.isdigit() else seg
                if not isinstance(pos, int) or not -len(value) <= pos < len(value):
                    raise _error(self.text, f"{label} has no item {seg!r}")
                value = value[pos]
            else:
                raise _error(self.text, f"{label} is {_type(value)}, so it has no {seg!r}")
            label = _label(label, (seg,))
        return value


def _type(value: Any) -> str:
    names = {type(None): "null", bool: "a boolean", str: "a string", dict: "a mapping"}
    names |= {int: "a number", float: "a number", list: "a list"}
    return names.get(type(value), type(value).__name__)
