"""``towline estimate PLAN``: expected duration, tokens and cost per task.

From the run history first: the medians of the task's own past successful calls (in
runs of this plan), else of its tool's. A task that pays for a model and has no history
is priced from its input and the price table (:func:`towline.activities.tools.llm.price_of`):
an ``llm`` task's prompt (1 token per 4 characters) plus its ``max_tokens`` (else
:data:`REPLY_GUESS`); an ``agent`` task's instructions and the tool schemas sent on
each turn, over :data:`AGENT_TURNS_GUESS` turns, each adding :data:`TURN_GROWTH` tokens
of results. Those guesses are rough; the history replaces them after one run.
A fix (``on_failure: fix``) is listed under its task, marked as paid only if the task
fails.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from rich import box
from rich.table import Table

from towline.agent.context import estimate_tokens
from towline.history import HistoryStore, ToolCallRecord
from towline.plan.spec import PlanSpec, TaskSpec

REPLY_GUESS = 500  # tokens of a reply, when the task does not cap them
AGENT_TURNS_GUESS = 8
TURN_GROWTH = 800  # tokens a turn adds to the conversation (a call and its result)
AGENT_OVERHEAD = 1500  # tokens of the system message and tool schemas

Pricer = Callable[[str], tuple[float, float] | None]  # model -> ($/1k prompt, $/1k reply)


@dataclass(frozen=True)
class TaskEstimate:
    task: str  # workstream.task, "(fix)" appended for a fix call
    tool: str
    seconds: float | None
    tokens: int | None
    cost_usd: float | None
    source: str


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _from_history(rows: list[ToolCallRecord]) -> tuple[float | None, ...]:
    durations = [r.duration_s for r in rows if r.duration_s > 0]
    return (
        _median(durations),
        _median([float(r.tokens) for r in rows]),
        _median([r.cost_usd for r in rows]),
    )


def _guess(tool: str, with_: dict[str, Any], price: Pricer) -> tuple[int, float | None] | None:
    """Tokens and cost of a paid call with no history, from its input and prices."""
    if tool == "llm":
        parts = [str(with_.get(k) or "") for k in ("system", "prompt")]
        parts += [str(m.get("content", "")) for m in with_.get("messages") or []]
        text = " ".join(p for p in parts if p)
        prompt, reply = estimate_tokens(text), int(with_.get("max_tokens") or REPLY_GUESS)
    elif tool == "agent":
        base = AGENT_OVERHEAD + estimate_tokens(str(with_.get("instructions", "")))
        turns = min(int(with_.get("max_turns") or 30), AGENT_TURNS_GUESS)
        prompt = sum(base + k * TURN_GROWTH for k in range(turns))
        reply = turns * REPLY_GUESS // 2
    else:
        return None
    model = str(with_.get("model", ""))
    if model == "auto":
        ladder = with_.get("ladder") or []
        model = str(ladder[0]) if ladder else ""
    rates = price(model) if "${{" not in model else None
    cost = None if rates is None else prompt / 1000 * rates[0] + reply / 1000 * rates[1]
    return prompt + reply, cost


def estimate_tasks(
    plan: PlanSpec, records: Iterable[ToolCallRecord], price: Pricer
) -> list[TaskEstimate]:
    """Every task's (and fix's) estimate, in plan order. ``records``: successful calls."""
    by_task: dict[tuple[str, str, str], list[ToolCallRecord]] = defaultdict(list)
    by_tool: dict[str, list[ToolCallRecord]] = defaultdict(list)
    for r in records:
        if r.outcome != "succeeded" or r.cached:
            continue
        by_tool[r.tool].append(r)
        if r.plan == plan.name:
            by_task[(r.workstream, r.task, r.tool)].append(r)
    out: list[TaskEstimate] = []

    def one(name: str, ws: str, task: TaskSpec, tool: str, with_: dict[str, Any]) -> None:
        own = by_task.get((ws, task.id, tool))
        if own:
            seconds, tokens, cost = _from_history(own)
            source = f"this task: {len(own)} call(s)"
        elif by_tool.get(tool):
            seconds, tokens, cost = _from_history(by_tool[tool])
            source = f"tool {tool}: {len(by_tool[tool])} call(s)"
        else:
            seconds = tokens = cost = None
            source = "no history"
            guessed = _guess(tool, with_, price)
            if guessed is not None:
                tokens, cost = guessed
                source = "prices (no history; rough)" if cost is not None else "no price"
        out.append(
            TaskEstimate(
                task=name,
                tool=tool,
                seconds=seconds,
                tokens=None if tokens is None else round(tokens),
                cost_usd=cost,
                source=source,
            )
        )

    for ws in plan.workstreams:
        for t in ws.tasks:
            one(f"{ws.id}.{t.id}", ws.id, t, t.tool, t.with_)
            fix = t.on_failure or ws.defaults.on_failure or plan.defaults.on_failure
            if fix is not None and fix.fix is not None and fix.strategy in ("fix", "resolve"):
                one(f"{ws.id}.{t.id} (fix)", ws.id, t, fix.fix.tool, fix.fix.with_)
    return out


def _price(model: str) -> tuple[float, float] | None:
    from towline.activities.tools.llm import price_of

    rates, source = price_of(model, None)
    return None if source == "unknown" else (rates.prompt_per_1k, rates.completion_per_1k)


def for_plan(plan: PlanSpec, store: HistoryStore) -> list[TaskEstimate]:
    tools = sorted({t.tool for ws in plan.workstreams for t in ws.tasks} | {"agent", "llm"})
    records = [r for tool in tools for r in store.calls(tool=tool, succeeded_only=True)]
    return estimate_tasks(plan, records, _price)


def as_json(plan: PlanSpec, rows: list[TaskEstimate], location: str) -> dict[str, Any]:
    main = [r for r in rows if not r.task.endswith("(fix)")]
    return {
        "plan": plan.name,
        "history": location,
        "tasks": [r.__dict__ for r in rows],
        "total": {
            "tokens": sum(r.tokens or 0 for r in main),
            "cost_usd": sum(r.cost_usd or 0.0 for r in main),
        },
    }


def table(rows: list[TaskEstimate]) -> Table:
    grid = Table(box=box.SIMPLE_HEAD, show_edge=False)
    for name in ("task", "tool", "duration", "tokens", "cost", "from"):
        grid.add_column(name, justify="right" if name in ("duration", "tokens", "cost") else "left")
    for r in rows:
        grid.add_row(
            r.task,
            r.tool,
            "-" if r.seconds is None else f"{r.seconds:.1f}s",
            "-" if r.tokens is None else str(r.tokens),
            "-" if r.cost_usd is None else f"${r.cost_usd:.4f}",
            r.source,
        )
    main = [r for r in rows if not r.task.endswith("(fix)")]
    grid.add_row(
        "total (fixes only if tasks fail)",
        "",
        "",
        str(sum(r.tokens or 0 for r in main)),
        f"${sum(r.cost_usd or 0.0 for r in main):.4f}",
        "",
    )
    return grid
