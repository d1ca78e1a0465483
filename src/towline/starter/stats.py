"""``towline stats``: what the run history says about tools, or about the tasks of a plan."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

from rich import box
from rich.table import Table

from towline.durations import format_duration
from towline.estimates import GroupStats, summarise
from towline.history import HistoryStore


@dataclass(frozen=True)
class Summary:
    location: str
    plan: str | None
    tool: str | None
    runs: int
    groups: list[GroupStats]

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
        }


def summary(store: HistoryStore, *, plan: str | None, tool: str | None) -> Summary:
    """The figures per tool, or per task of ``plan`` when it is given."""
    records = store.calls(plan=plan, tool=tool)
    return Summary(
        location=store.location,
        plan=plan,
        tool=tool,
        runs=len({r.run_id for r in records}),
        groups=summarise(records, by_task=plan is not None),
    )


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
