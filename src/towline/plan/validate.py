"""Everything wrong with a plan, found before anything starts, each problem at its path.

:func:`check_plan` parses a plan with the models of :mod:`towline.plan.spec`, turns
pydantic's errors into problems a person can act on, then checks what needs the whole
plan: ids, needs, dependency cycles, tools and their inputs, expressions, and the options
each recovery strategy needs. Pure: no file I/O.
"""

from __future__ import annotations

import difflib
import re
import sys
import types
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from towline.plan import expressions, limits
from towline.plan.spec import (
    Defaults,
    OnFailureSpec,
    PlanSpec,
    TaskSpec,
    ToolCallSpec,
    WorkstreamSpec,
)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a plan, and where: ``workstreams[0].tasks[1].needs``."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


_CYCLE_SHOWN = 12  # steps of a long dependency cycle that a message shows
_KEY_ERRORS = ("missing", "extra_forbidden")
_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]*$"
_SHORT_FORMS = {
    "OnFailureSpec": "a strategy (fail, skip, pause, fix, resolve) or a mapping",
    "ApprovalSpec": "true, false or a mapping",
    "BreakerSpec": "true, false or a mapping",
}


def check_plan(
    data: Any, tools: Mapping[str, type[BaseModel]]
) -> tuple[PlanSpec | None, list[Problem]]:
    """Parse and check a plan given as plain data (what YAML or JSON loading returns).

    Returns the plan and no problems, or None and every problem in document order.
    ``tools`` maps each tool name a plan may use to its input model.

    Every problem comes at once: when some keys have the wrong shape, the rest of the
    plan (tools, their inputs, expressions, ids, needs, cycles) is still checked, with
    the broken parts left out. Data past the limits that make it unsafe to look at
    (:mod:`towline.plan.limits`) is rejected with those problems alone.
    """
    checked = limits.check_values(data)
    found = [Problem(path, message) for path, message in checked.problems]
    if not checked.whole:
        return None, found
    try:
        plan = PlanSpec.model_validate(data)
    except ValidationError as e:
        errors = e.errors()
        structural = _located_problems(errors[:_MAX_PROBLEMS], PlanSpec, data)
        partial = _partial(data, errors)
        semantic = _Checker(partial, tools).run() if partial is not None else []
        unlisted = max(0, len(errors) - _MAX_PROBLEMS)
        return None, _capped(_merge(data, found, structural, semantic), unlisted=unlisted)
    semantic = _Checker(_Partial(plan), tools).run()
    if found:
        return None, _capped(_merge(data, found, [], semantic))
    return (None if semantic else plan), _capped(semantic)


_MAX_PROBLEMS = 200  # listed at most; a plan with more has a bigger problem


def _capped(problems: list[Problem], *, unlisted: int = 0) -> list[Problem]:
    """The first :data:`_MAX_PROBLEMS` problems, and how many more there are."""
    more = max(0, len(problems) - _MAX_PROBLEMS) + unlisted
    if not more:
        return problems
    return [*problems[:_MAX_PROBLEMS], Problem("", f"... and {more:,} more problems")]


def _merge(
    data: Any,
    found: list[Problem],
    structural: list[tuple[tuple[int, ...], Problem]],
    semantic: list[Problem],
) -> list[Problem]:
    """Problems of all kinds in document order; at one place, the limits' first, then
    the shapes', then the rest. Dependency cycles, which have no one place, come last.

    A value past a limit is reported once: not again for its shape or its content.
    """
    over = [p.path for p in found if p.path]

    def inside(path: str) -> bool:
        return any(path == o or path.startswith((f"{o}.", f"{o}[")) for o in over)

    positions: dict[int, dict[Any, int]] = {}
    located = [(_order(data, p.path, positions), p) for p in found]
    located += [(order, p) for order, p in structural if not inside(p.path)]
    located += [
        (_order(data, p.path, positions), p) for p in semantic if p.path and not inside(p.path)
    ]
    located.sort(key=lambda item: item[0])
    return [p for _, p in located] + [p for p in semantic if not p.path]


_SEGMENT = re.compile(r"\[(\d+)\]|([^.\[\]]+)")


def _order(data: Any, path: str, positions: dict[int, dict[Any, int]]) -> tuple[int, ...]:
    """Where ``path`` is in the document: the positions of its keys and items."""
    out: list[int] = []
    here = data
    for m in _SEGMENT.finditer(path):
        seg: int | str = int(m.group(1)) if m.group(1) is not None else m.group(2)
        if isinstance(here, dict) and seg in here:
            out.append(_position(positions, here, seg))
            here = here[seg]
        elif isinstance(here, list) and isinstance(seg, int) and seg < len(here):
            out.append(seg)
            here = here[seg]
        else:
            out.append(sys.maxsize)
            break
    return tuple(out)


def _position(positions: dict[int, dict[Any, int]], mapping: dict[Any, Any], key: Any) -> int:
    """The position of ``key`` in ``mapping``, from a cache of each mapping's keys."""
    found = positions.get(id(mapping))
    if found is None:
        found = positions[id(mapping)] = {k: i for i, k in enumerate(mapping)}
    return found[key]


@dataclass
class _Partial:
    """The parts of a plan whose shape is right, to check what else is wrong with it.

    ``ws_pos`` and ``task_pos`` give each kept workstream's and task's position in the
    plan as written; ``dropped`` names the workstreams (``ws``) and tasks (``ws.task``)
    left out, so references to them are not reported as unknown; ``no_input`` holds
    the tasks (by kept position) whose ``with`` was left out.
    """

    plan: PlanSpec
    ws_pos: list[int] | None = None
    task_pos: list[list[int]] | None = None
    dropped: frozenset[str] = frozenset()
    no_input: frozenset[tuple[int, int]] = frozenset()

    @property
    def whole(self) -> bool:
        return self.ws_pos is None


def _partial(data: Any, errors: list[ErrorDetails]) -> _Partial | None:
    """``data`` without the parts pydantic found wrong, validated; None if nothing is left.

    A wrong key of a task or a workstream is left out (its default applies); a task or
    workstream without a usable id (or a task without its tool) is left out whole.
    """
    if not isinstance(data, dict) or not isinstance(data.get("workstreams"), list):
        return None
    top: dict[str, Any] = dict(data)
    drop_ws: set[int] = set()
    drop_task: set[tuple[int, int]] = set()
    ws_keys: dict[int, set[str]] = {}
    task_keys: dict[tuple[int, int], set[str]] = {}
    for e in errors:
        loc = tuple(e["loc"])
        if not loc:
            return None
        head = loc[0]
        if head != "workstreams":
            if head == "version":
                top["version"] = 1
            elif head == "name":
                top["name"] = "plan"
            else:
                top.pop(str(head), None)
            continue
        if len(loc) < 3 or not isinstance(loc[1], int):
            if len(loc) == 2 and isinstance(loc[1], int):
                drop_ws.add(loc[1])
                continue
            return None
        i, key, rest = loc[1], loc[2], loc[3:]
        if key == "tasks" and rest and isinstance(rest[0], int):
            if len(rest) > 1 and isinstance(rest[1], str) and rest[1] not in ("id", "tool"):
                task_keys.setdefault((i, rest[0]), set()).add(rest[1])
            else:
                drop_task.add((i, rest[0]))
        elif key in ("id", "tasks") or not isinstance(key, str):
            drop_ws.add(i)
        else:
            ws_keys.setdefault(i, set()).add(key)
    dropped: set[str] = set()
    workstreams: list[Any] = []
    ws_pos: list[int] = []
    task_pos: list[list[int]] = []
    no_input: set[tuple[int, int]] = set()
    for i, ws in enumerate(data["workstreams"]):
        ws_id = ws.get("id") if isinstance(ws, dict) else None
        if i in drop_ws or not isinstance(ws, dict) or not isinstance(ws.get("tasks"), list):
            if isinstance(ws_id, str):
                dropped.add(ws_id)
            continue
        kept_ws = {k: v for k, v in ws.items() if k not in ws_keys.get(i, ())}
        tasks: list[Any] = []
        positions: list[int] = []
        for j, task in enumerate(ws["tasks"]):
            if (i, j) in drop_task or not isinstance(task, dict):
                task_id = task.get("id") if isinstance(task, dict) else None
                if isinstance(ws_id, str) and isinstance(task_id, str):
                    dropped.add(f"{ws_id}.{task_id}")
                continue
            pruned = task_keys.get((i, j), set())
            if "with" in pruned:
                no_input.add((len(ws_pos), len(tasks)))
            tasks.append({k: v for k, v in task.items() if k not in pruned})
            positions.append(j)
        if not tasks:
            if isinstance(ws_id, str):
                dropped.add(ws_id)
            continue
        kept_ws["tasks"] = tasks
        workstreams.append(kept_ws)
        ws_pos.append(i)
        task_pos.append(positions)
    if not workstreams:
        return None
    top["workstreams"] = workstreams
    try:
        plan = PlanSpec.model_validate(top)
    except ValidationError:
        return None  # what is left still has the wrong shape: its problems are listed
    return _Partial(plan, ws_pos, task_pos, frozenset(dropped), frozenset(no_input))


def _pydantic_problems(
    errors: list[ErrorDetails], model: type[BaseModel], data: Any, *, prefix: str = ""
) -> list[Problem]:
    """pydantic's ``errors`` from validating ``data`` with ``model``, as problems.

    Paths use the keys as written (``with``, not ``with_``) and problems come in document
    order. ``prefix`` is the path of ``data`` inside the plan.
    """
    return [problem for _, problem in _located_problems(errors, model, data, prefix=prefix)]


def _located_problems(
    errors: list[ErrorDetails], model: type[BaseModel], data: Any, *, prefix: str = ""
) -> list[tuple[tuple[int, ...], Problem]]:
    """:func:`_pydantic_problems`, each with its position in the document."""
    found: list[tuple[tuple[int, ...], Problem]] = []
    unions: dict[str, list[tuple[tuple[int, ...], str, ErrorDetails, list[int | str]]]] = {}
    for e in errors:
        kind, loc = e["type"], tuple(e["loc"])
        where, order, tag = _locate(model, data, loc, keep_last=kind in _KEY_ERRORS)
        if kind in _KEY_ERRORS:
            key = str(loc[-1])
            path = _join(prefix, where[:-1])
            if kind == "missing":
                message = f"missing required key '{key}'"
            else:
                allowed = _keys(_model_at(model, loc[:-1]))
                message = f"unknown key '{key}'{_did_you_mean(key, allowed)}"
            found.append((order, Problem(path, message)))
        elif tag is not None:
            name, depth = tag
            unions.setdefault(_join(prefix, where[:depth]), []).append((order, name, e, where))
        else:
            found.append((order, _problem(prefix, where, e)))
    # pydantic reports a value that fits no member of a union once per member. If the
    # value had the shape of some members (a list, for list[str]), their errors inside it
    # say what is wrong; otherwise, say which shapes would do.
    for path, items in unions.items():
        inside = [item for item in items if _join(prefix, item[3]) != path]
        if inside:
            found.extend((order, _problem(prefix, where, e)) for order, _, e, where in inside)
        else:
            names = list(dict.fromkeys(name for _, name, _, _ in items))
            value = _show(items[0][2].get("input"))
            found.append(
                (items[0][0], Problem(path, f"expected {' or '.join(names)}, got {value}"))
            )
    found.sort(key=lambda item: item[0])
    return found


def _problem(prefix: str, where: list[int | str], e: ErrorDetails) -> Problem:
    message = _message(e["type"], e["msg"], e.get("input"), e.get("ctx") or {})
    return Problem(_join(prefix, where), message)


def _locate(
    model: type[BaseModel], data: Any, loc: tuple[int | str, ...], *, keep_last: bool
) -> tuple[list[int | str], tuple[int, ...], tuple[str, int] | None]:
    """Follow ``loc`` through the model and the input.

    Returns the path as written, its position in the document (for sorting) and, when
    ``loc`` goes through a union, the member's name and how deep the union sits in the
    path. A short form (``on_failure: skip``) ends the path where the input does, not at
    the key the model filled in (``strategy``).
    """
    where: list[int | str] = []
    order: list[int] = []
    tag: tuple[str, int] | None = None
    here, shape = data, model
    for i, seg in enumerate(loc):
        last = i == len(loc) - 1
        step = _step(shape, seg)
        if step is _MEMBER and not (keep_last and last):
            if tag is None:
                tag = (str(seg), len(where))
            continue
        shape = step
        if isinstance(here, dict) and seg in here:
            order.append(list(here).index(seg))
            where.append(seg)
            here = here[seg]
        elif isinstance(here, list) and isinstance(seg, int) and 0 <= seg < len(here):
            order.append(seg)
            where.append(seg)
            here = here[seg]
        elif keep_last and last:
            order.append(len(here) if isinstance(here, dict) else 0)
            where.append(seg)
        else:
            break
    return where, tuple(order), tag


def _join(prefix: str, where: list[int | str]) -> str:
    out = prefix
    for seg in where:
        out += f"[{seg}]" if isinstance(seg, int) else (f".{seg}" if out else str(seg))
    return out


def _message(kind: str, msg: str, value: Any, ctx: dict[str, Any]) -> str:
    if kind == "value_error":
        return str(ctx.get("error", msg.removeprefix("Value error, ")))
    if kind == "literal_error":
        return f"expected {ctx.get('expected')}, got {_show(value)}"
    if kind == "string_pattern_mismatch" and ctx.get("pattern") == _ID_PATTERN:
        return (
            f"not a valid id: {_show(value)} (use letters, digits, '_' and '-', "
            "starting with a letter or a digit)"
        )
    if kind in ("too_short", "string_too_short") and ctx.get("min_length") == 1:
        return "must not be empty"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        what = _SHORT_FORMS.get(str(ctx.get("class_name")), "a mapping")
        return f"expected {what}, got {_show(value)}"
    if msg.startswith("Input should be"):
        text = msg.replace("Input should be", "should be", 1)
        return f"{text} (got {_show(value)})" if _is_scalar(value) else text
    return msg


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _model_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model class that validates the value at ``loc``, if it is a model."""
    shape: Any = model
    for seg in loc:
        step = _step(shape, seg)
        shape = shape if step is _MEMBER else step
    found = [t for t in _options(shape) if isinstance(t, type) and issubclass(t, BaseModel)]
    return found[0] if found else None


_MEMBER = object()  # what _step returns for a union member's name in a location


def _step(shape: Any, seg: int | str) -> Any:
    """The type one step into ``shape``: a field of a model, an item of a list or dict."""
    for option in _options(shape):
        if isinstance(option, type) and issubclass(option, BaseModel) and isinstance(seg, str):
            for name, field in option.model_fields.items():
                if seg in (name, field.alias):
                    return field.annotation
        origin = get_origin(option)
        if origin is list and isinstance(seg, int):
            return get_args(option)[0]
        if origin is dict and seg != "[key]":
            return get_args(option)[1]
    return _MEMBER


def _options(t: Any) -> list[Any]:
    origin = get_origin(t)
    if origin is Annotated:
        return _options(get_args(t)[0])
    if origin in (Union, types.UnionType):
        return [o for arg in get_args(t) for o in _options(arg)]
    return [t]


def _keys(model: type[BaseModel] | None) -> list[str]:
    if model is None:
        return []
    return [field.alias or name for name, field in model.model_fields.items()]


# Suggestions cost a comparison with each candidate: a plan of thousands of ids, each
# misspelt, would take minutes. Past these, problems come without a suggestion.
_HINT_CANDIDATES = 1000
_HINTS = 100


def _closest(word: str, candidates: Any) -> str | None:
    names = list(candidates)
    if len(names) > _HINT_CANDIDATES:
        return None
    close = difflib.get_close_matches(word, names, n=1)
    return close[0] if close else None


def _did_you_mean(word: str, candidates: Any) -> str:
    close = _closest(word, candidates)
    return f" (did you mean '{close}'?)" if close else ""


def _contains_expression(value: Any) -> bool:
    if isinstance(value, str):
        return "${{" in value
    if isinstance(value, dict):
        return any(_contains_expression(v) for v in value.values())
    if isinstance(value, list):
        return any(_contains_expression(v) for v in value)
    return False


def _leaves(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """``(path, string)`` for every string in a ``with`` tree that holds an expression."""
    stack = [(path, value)]
    while stack:
        here, item = stack.pop()
        if isinstance(item, str):
            if "${{" in item:
                yield here, item
        elif isinstance(item, dict):
            stack.extend(reversed([(f"{here}.{k}", v) for k, v in item.items()]))
        elif isinstance(item, list):
            stack.extend(reversed([(f"{here}[{i}]", v) for i, v in enumerate(item)]))


def _components(adj: list[list[int]]) -> list[list[int]]:
    """Strongly connected components (Tarjan, iterative), dependencies before dependents."""
    count = len(adj)
    index = [-1] * count
    low = [0] * count
    on_stack = [False] * count
    stack: list[int] = []
    out: list[list[int]] = []
    counter = 0
    for root in range(count):
        if index[root] != -1:
            continue
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack[root] = True
        work = [(root, 0)]
        while work:
            v, i = work[-1]
            if i < len(adj[v]):
                work[-1] = (v, i + 1)
                w = adj[v][i]
                if index[w] == -1:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack[w] = True
                    work.append((w, 0))
                elif on_stack[w]:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[v])
            if low[v] == index[v]:
                component = []
                while True:
                    w = stack.pop()
                    on_stack[w] = False
                    component.append(w)
                    if w == v:
                        break
                out.append(component)
    return out


def _cycle(adj: list[list[int]], members: set[int], start: int) -> list[int]:
    """A shortest cycle through ``start`` inside its component, ``start`` at both ends."""
    parent = {start: start}
    queue = deque([start])
    while queue:
        v = queue.popleft()
        for w in adj[v]:
            if w == start:
                path = [v]
                while path[-1] != start:
                    path.append(parent[path[-1]])
                return [*reversed(path), start]
            if w in members and w not in parent:
                parent[w] = v
                queue.append(w)
    raise AssertionError("a component with more than one node has a cycle")


class _Checker:
    """The checks that need the whole plan, reported in document order.

    The dependency graph has a node per task plus two per workstream: its *start*, which
    each of its tasks needs, and its *end*, which needs each of its tasks. "Workstream B
    needs A" is then one edge, start(B) -> end(A), instead of one per pair of tasks.
    Edges point from a node to what it needs.
    """

    def __init__(self, partial: _Partial, tools: Mapping[str, type[BaseModel]]) -> None:
        plan = self.plan = partial.plan
        self.partial = partial
        self.tools = tools
        # Positions as written (parts of a plan with the wrong shape are left out).
        self.ws_pos = partial.ws_pos or list(range(len(plan.workstreams)))
        self.task_pos = partial.task_pos or [list(range(len(ws.tasks))) for ws in plan.workstreams]
        self.problems: list[Problem] = []
        self.ws_index: dict[str, int] = {}
        self.task_ids: dict[str, dict[str, int]] = {}  # ws id -> task id -> node
        self.label: list[str] = []
        for i, ws in enumerate(plan.workstreams):
            self.ws_index.setdefault(ws.id, i)
            ids = self.task_ids.setdefault(ws.id, {})
            for task in ws.tasks:
                ids.setdefault(task.id, len(self.label))
                self.label.append(f"{ws.id}.{task.id}")
        self.n_tasks = len(self.label)
        self.ws_component: list[int] = []  # per workstream: its cycle's number, or -1
        self.adj: list[list[int]] = []
        self._up: list[int] | None = None
        self._hints_left = _HINTS

    def run(self) -> list[Problem]:
        cycles = self._workstream_cycles()
        self.adj = self._graph(with_workstream_cycles=True)
        # A workstream cycle is reported once, above; the task cycles are found without it.
        if any(c >= 0 for c in self.ws_component):
            cycles += self._task_cycles(self._graph(with_workstream_cycles=False))
        else:
            cycles += self._task_cycles(self.adj)
        self._check_plan_level()
        node = 0
        for i, ws in enumerate(self.plan.workstreams):
            self._check_workstream(i, ws)
            seen: dict[str, int] = {}
            for j, task in enumerate(ws.tasks):
                at = self.task_pos[i][j]
                path = f"workstreams[{self.ws_pos[i]}].tasks[{at}]"
                first = seen.setdefault(task.id, at)
                if first != at:
                    self._add(f"{path}.id", f"duplicate task id '{task.id}' (also tasks[{first}])")
                self._check_task(
                    path, ws, task, node, with_input=(i, j) not in self.partial.no_input
                )
                node += 1
        return self.problems + cycles

    # The graph

    def _start(self, ws: int) -> int:
        return self.n_tasks + 2 * ws

    def _end(self, ws: int) -> int:
        return self.n_tasks + 2 * ws + 1

    def _ws_needs(self, ws: WorkstreamSpec) -> list[int]:
        return [self.ws_index[v] for v in ws.needs if v in self.ws_index and v != ws.id]

    def _workstream_cycles(self) -> list[Problem]:
        adj = [self._ws_needs(ws) for ws in self.plan.workstreams]
        self.ws_component = [-1] * len(adj)
        problems = []
        for c, component in enumerate(_components(adj)):
            if len(component) > 1:
                for w in component:
                    self.ws_component[w] = c
                path = _cycle(adj, set(component), min(component))
                ids = " -> ".join(self.plan.workstreams[w].id for w in path)
                problems.append(Problem("", f"workstream dependency cycle: {ids}"))
        return problems

    def _graph(self, *, with_workstream_cycles: bool) -> list[list[int]]:
        workstreams = self.plan.workstreams
        adj: list[list[int]] = [[] for _ in range(self.n_tasks + 2 * len(workstreams))]
        node = 0
        for i, ws in enumerate(workstreams):
            needs = [
                v
                for v in self._ws_needs(ws)
                if with_workstream_cycles
                or self.ws_component[v] < 0
                or self.ws_component[v] != self.ws_component[i]
            ]
            adj[self._start(i)] = [self._end(v) for v in needs]
            first = node
            for task in ws.tasks:
                for need in task.needs:
                    target = self._find(ws.id, need, hints=False)
                    if isinstance(target, int) and target != node:
                        adj[node].append(target)
                if needs:
                    adj[node].append(self._start(i))
                node += 1
            adj[self._end(i)] = list(range(first, node))
        return adj

    def _task_cycles(self, adj: list[list[int]]) -> list[Problem]:
        problems = []
        for component in _components(adj):
            if len(component) > 1:
                path = _cycle(adj, set(component), min(component))
                problems.append(Problem("", f"dependency cycle: {self._render(path)}"))
        return problems

    def _render(self, path: list[int]) -> str:
        parts = []
        for k, v in enumerate(path):
            if v < self.n_tasks:
                parts.append(self.label[v])
            elif (v - self.n_tasks) % 2 == 0:  # a start, always followed by an end
                ws = self.plan.workstreams[(v - self.n_tasks) // 2].id
                needed = self.plan.workstreams[(path[k + 1] - self.n_tasks) // 2].id
                parts.append(f"(workstream {ws} needs {needed})")
        if len(parts) > _CYCLE_SHOWN:
            hidden = len(parts) - _CYCLE_SHOWN
            parts[_CYCLE_SHOWN - 3 : -3] = [f"({hidden} more)"]
        return " -> ".join(parts)

    def _is_upstream(self, node: int, target: int) -> bool:
        if target in self.adj[node]:
            return True
        if self._up is None:
            self._up = self._upstream_sets()
        return bool(self._up[node] >> target & 1)

    def _upstream_sets(self) -> list[int]:
        """Per node, every task it needs directly or not, as a bit set: one linear pass.

        Components come dependencies first, so each one's set is the union of what it
        needs; inside a cycle, every member is upstream of every other.
        """
        components = _components(self.adj)
        component_of = [0] * len(self.adj)
        up = [0] * len(components)
        for c, component in enumerate(components):
            bits = 0
            for v in component:
                component_of[v] = c
            for v in component:
                if len(component) > 1 and v < self.n_tasks:
                    bits |= 1 << v
                for w in self.adj[v]:
                    if component_of[w] != c:
                        bits |= up[component_of[w]]
                        if w < self.n_tasks:
                            bits |= 1 << w
            up[c] = bits
        return [up[component_of[v]] for v in range(len(self.adj))]

    def _find(self, ws_id: str, ref: str, *, hints: bool = True) -> int | str | None:
        """The node of ``task`` or ``ws.task`` seen from ``ws_id``, or why there is none
        (with a suggestion, unless ``hints`` is False).

        None: it is one of the parts left out for having the wrong shape (already listed).
        """
        other, dot, task = ref.rpartition(".")
        dropped = self.partial.dropped
        if not dot or other == ws_id:
            ids = self.task_ids[ws_id]
            if task in ids:
                return ids[task]
            if f"{ws_id}.{task}" in dropped:
                return None
            if not dot and ref in self.ws_index:
                return (
                    f"unknown task '{ref}' (to wait for workstream '{ref}', "
                    "list it in the workstream's needs)"
                )
            return f"unknown task '{ref}'{self._hint(task, ids) if hints else ''}"
        if "." in other:
            return f"not a task: '{ref}' (write 'task' or 'workstream.task')"
        if other in dropped or ref in dropped:
            return None
        if other not in self.ws_index:
            hint = self._hint(other, self.ws_index) if hints else ""
            return f"unknown workstream '{other}' in '{ref}'{hint}"
        ids = self.task_ids[other]
        if task in ids:
            return ids[task]
        hint = self._hint(task, ids, prefix=f"{other}.") if hints else ""
        return f"unknown task '{ref}'{hint}"

    # The checks, in document order

    def _hint(self, word: str, candidates: Any, *, prefix: str = "") -> str:
        """`` (did you mean 'x'?)``, for the first :data:`_HINTS` problems that have one."""
        if self._hints_left <= 0:
            return ""
        self._hints_left -= 1
        close = _closest(word, candidates)
        return f" (did you mean '{prefix}{close}'?)" if close else ""

    def _add(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    def _check_plan_level(self) -> None:
        self._check_defaults("defaults", self.plan.defaults)

    def _check_defaults(self, path: str, defaults: Defaults) -> None:
        if defaults.on_failure is not None:
            self._check_on_failure(f"{path}.on_failure", defaults.on_failure, None)

    def _check_workstream(self, i: int, ws: WorkstreamSpec) -> None:
        path = f"workstreams[{self.ws_pos[i]}]"
        first = self.ws_index[ws.id]
        if first != i:
            self._add(
                f"{path}.id",
                f"duplicate workstream id '{ws.id}' (also workstreams[{self.ws_pos[first]}])",
            )
        for need in ws.needs:
            if need == ws.id:
                self._add(f"{path}.needs", "a workstream cannot need itself")
            elif need not in self.ws_index and need not in self.partial.dropped:
                hint = self._hint(need, self.ws_index)
                self._add(f"{path}.needs", f"unknown workstream '{need}'{hint}")
        self._check_defaults(f"{path}.defaults", ws.defaults)

    def _check_task(
        self, path: str, ws: WorkstreamSpec, task: TaskSpec, node: int, *, with_input: bool
    ) -> None:
        call = _Call(path, ws.id, node)
        self._check_call(call, task.tool, task.with_, with_input=with_input)
        for need in task.needs:
            target = self._find(ws.id, need)
            if isinstance(target, str):
                self._add(f"{path}.needs", target)
            elif target == node:
                self._add(f"{path}.needs", "a task cannot need itself")
        if task.on_failure is not None:
            self._check_on_failure(f"{path}.on_failure", task.on_failure, call)
        if task.rollback is not None:
            self._check_tool_call(call.at("rollback"), task.rollback, own=True)
        if task.if_ is not None:
            self._check_condition(call, task.if_)
        if task.cache is not None and _contains_expression(task.cache.key):
            self._add(
                f"{path}.cache.key",
                "expressions are not supported in cache.key; give plain strings naming what "
                "else the result depends on (e.g. a version), or pass the value in 'with'",
            )

    def _check_on_failure(self, path: str, spec: OnFailureSpec, call: _Call | None) -> None:
        if spec.strategy in ("fix", "resolve") and spec.fix is None:
            self._add(path, f"strategy {spec.strategy} needs a fix call: fix: {{tool, with}}")
        if spec.strategy not in ("fix", "resolve") and spec.fix is not None:
            self._add(f"{path}.fix", "fix is used only by the fix and resolve strategies")
        if spec.strategy != "pause" and (spec.timeout is not None or spec.default is not None):
            self._add(path, "timeout and default are used only by the pause strategy")
        if spec.fix is not None:
            fix = _Call(f"{path}.fix", call.ws if call else "", call.node if call else -1)
            self._check_tool_call(fix, spec.fix, own=True, failure=True)

    def _check_tool_call(
        self, call: _Call, spec: ToolCallSpec, *, own: bool, failure: bool = False
    ) -> None:
        self._check_call(call, spec.tool, spec.with_, own=own, failure=failure)

    def _check_call(
        self,
        call: _Call,
        tool: str,
        args: dict[str, Any],
        *,
        own: bool = False,
        failure: bool = False,
        with_input: bool = True,
    ) -> None:
        """A tool name, its input (unless left out for its shape) and its expressions."""
        if tool not in self.tools:
            self._add(f"{call.path}.tool", f"unknown tool '{tool}'{self._hint(tool, self.tools)}")
        elif with_input:
            self._check_input(f"{call.path}.with", self.tools[tool], args)
        for path, text in _leaves(args, f"{call.path}.with"):
            for message in expressions.check([text]):
                self._add(path, message)
            if "failure" in expressions.names([text]) and not failure:
                self._add(path, "'failure' is only available in on_failure.fix")
            self._check_refs(call, path, expressions.task_refs([text]), own=own)

    def _check_input(self, path: str, model: type[BaseModel], args: dict[str, Any]) -> None:
        try:
            model.model_validate(args)
        except ValidationError as e:
            errors = [
                err
                for err in e.errors()
                if err["type"] in _KEY_ERRORS or not _runtime_value(args, tuple(err["loc"]))
            ]
            self.problems.extend(_pydantic_problems(errors, model, args, prefix=path))

    def _check_condition(self, call: _Call, condition: str) -> None:
        path = f"{call.path}.if"
        for message in expressions.check(condition):
            self._add(path, message)
        used = expressions.names(condition)
        if "secrets" in used:
            self._add(path, "secrets cannot be used in 'if'")
        if "failure" in used:
            self._add(path, "'failure' is only available in on_failure.fix")
        self._check_refs(call, path, expressions.task_refs(condition), own=False)

    def _check_refs(self, call: _Call, path: str, refs: set[str], *, own: bool) -> None:
        if call.node < 0:
            return  # plan or workstream defaults: no task to be upstream of
        for ref in sorted(refs):
            target = self._find(call.ws, ref)
            if target is None:
                continue
            if isinstance(target, str):
                self._add(path, f"refers to {target}")
            elif target == call.node:
                if not own:
                    self._add(path, f"refers to its own task '{ref}'")
            elif self.partial.whole and not self._is_upstream(call.node, target):
                # (with parts of the plan left out, what is upstream is not known)
                self._add(path, f"refers to task '{ref}', which is not among this task's needs")


@dataclass(frozen=True)
class _Call:
    """Where a tool call sits: its path, and the task it belongs to (``node`` -1: none)."""

    path: str
    ws: str
    node: int

    def at(self, key: str) -> _Call:
        return _Call(f"{self.path}.{key}", self.ws, self.node)


def _runtime_value(args: Any, loc: tuple[int | str, ...]) -> bool:
    """Whether the value at ``loc`` holds an expression, so is only known at run time."""
    here = args
    for seg in loc:
        if isinstance(here, list) and isinstance(seg, int) and 0 <= seg < len(here):
            here = here[seg]
        elif isinstance(here, dict):
            here = here.get(seg, here)  # a key absent from the input is a union member's name
    return _contains_expression(here)
