"""``towline stats``: what the run history says about tools, or about the tasks of a plan."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

from rich import box
from rich.table import Table

from towline.durations import format_duration
from towline.estimates import GroupStats, median, summarise
from towline.history import AgentRunRecord, HistoryStore


@dataclass(frozen=True)
class ModelStats:
    """What the history says of one model's agent conversations, and its fixes."""

    model: str
    conversations: int
    fixes: int  # conversations that were fixes whose verdict is known
    fixed: int  # fixes after which the task passed
    turns_p50: float | None
    tokens: int
    cost_usd: float

    @property
    def fix_rate(self) -> float | None:
        return self.fixed / self.fixes if self.fixes else None


def by_model(records: list[AgentRunRecord]) -> list[ModelStats]:
    """Agent conversations per model, sorted by model."""
    groups: dict[str, list[AgentRunRecord]] = defaultdict(list)
    for r in records:
        groups[r.model].append(r)
    return [
        ModelStats(
            model=model,
            conversations=len(rows),
            fixes=sum(r.fixed is not None for r in rows),
            fixed=sum(r.fixed is True for r in rows),
            turns_p50=median([r.turns for r in rows]) if rows else None,
            tokens=sum(r.tokens for r in rows),
            cost_usd=sum(r.cost_usd for r in rows),
        )
        for model, rows in sorted(groups.items())
    ]


@dataclass(frozen=True)
class Summary:
    location: str
    plan: str | None
    tool: str | None
    runs: int
    groups: list[GroupStats]
    agents: list[ModelStats] = field(default_factory=list)
    memory: int = 0  # past fixes recorded: what later agents may be offered

    def as_json(self) -> dict[str, Any]:
        return {
            "location": self.location,
            "plan": self.plan,
            "tool": self.tool,
            "runs": self.runs,
            "groups": [
                {
                    **({"task": g.task} if g.task is not None else {}),
                    **{k: v for k, v in asdict(g).items() if k != "task"},
                    "success_rate": g.success_rate,
                }
                for g in self.groups
            ],
            "agents": [{**asdict(m), "fix_rate": m.fix_rate} for m in self.agents],
            "memory": self.memory,
        }


def summary(store: HistoryStore, *, plan: str | None, tool: str | None) -> Summary:
    """The figures per tool, or per task of ``plan`` when it is given."""
    records = store.calls(plan=plan, tool=tool)
    agents = store.agent_runs(plan=plan) if tool in (None, "agent") else []
    return Summary(
        location=store.location,
        plan=plan,
        tool=tool,
        runs=len({r.run_id for r in records}),
        groups=summarise(records, by_task=plan is not None),
        agents=by_model(agents),
        memory=sum(r.fixed is True for r in agents),
    )


def agents_table(models: list[ModelStats]) -> Table:
    """Agent conversations by model: their cost, and how often their fixes worked."""
    grid = Table(box=box.SIMPLE_HEAD, show_edge=False)
    for name in ("model", "conversations", "fixes", "fixed", "fix rate", "turns", "tokens"):
        grid.add_column(
            name, no_wrap=name == "model", justify="left" if name == "model" else "right"
        )
    grid.add_column("cost", justify="right")
    for m in models:
        grid.add_row(
            m.model,
            str(m.conversations),
            str(m.fixes),
            str(m.fixed),
            "-" if m.fix_rate is None else f"{m.fix_rate:.0%}",
            "-" if m.turns_p50 is None else f"{m.turns_p50:g}",
            str(m.tokens),
            f"${m.cost_usd:.2f}",
        )
    return grid


def table(groups: list[GroupStats]) -> Table:
    by_task = any(g.task is not None for g in groups)
    grid = Table(box=box.SIMPLE_HEAD, show_edge=False)
    columns = ["task", "tool"] if by_task else ["tool"]
    columns += ["calls", "failed", "success", "p50", "p95", "cached", "tokens", "cost"]
    for name in columns:
        if name in ("task", "tool"):
            # Names are never cut: the figures beside them are short.
            longest = max((len(getattr(g, name) or "") for g in groups), default=0)
            grid.add_column(name, no_wrap=True, min_width=max(longest, len(name)))
        else:
            grid.add_column(name, justify="right")
    for g in groups:
        names = [g.task or "", g.tool] if by_task else [g.tool]
        rate = "-" if g.success_rate is None else f"{g.success_rate:.0%}"
        grid.add_row(
            *names,
            str(g.calls),
            str(g.failed),
            rate,
            _seconds(g.p50_s),
            _seconds(g.p95_s),
            str(g.cached),
            str(g.tokens),
            f"${g.cost_usd:.2f}",
        )
    return grid


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f}ms"
    if value < 60:
        return f"{value:.1f}s"
    return format_duration(timedelta(seconds=round(value)))
