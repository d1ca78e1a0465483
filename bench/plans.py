"""The towline plans of the scenarios: no-op ``echo`` tasks in the shapes the issue names."""

from __future__ import annotations

from typing import Any

Plan = dict[str, Any]


def _plan(name: str, *workstreams: dict[str, Any]) -> Plan:
    return {"version": 1, "name": name, "workstreams": list(workstreams)}


def _task(i: int, needs: list[int]) -> dict[str, Any]:
    return {"id": f"t{i}", "tool": "echo", "needs": [f"t{n}" for n in needs]}


def fanout(n: int) -> Plan:
    """One workstream of ``n`` independent tasks, all allowed to run at once."""
    return _plan(
        "bench-fanout",
        {
            "id": "main",
            "settings": {"max_parallel": n},
            "tasks": [_task(i, []) for i in range(n)],
        },
    )


def chain(n: int) -> Plan:
    """One workstream of ``n`` tasks, each needing the one before."""
    return _plan(
        "bench-chain",
        {"id": "main", "tasks": [_task(i, [i - 1] if i else []) for i in range(n)]},
    )


def large(workstreams: int, tasks: int, width: int) -> Plan:
    """``workstreams`` independent workstreams of ``tasks`` tasks each.

    Inside a workstream the tasks form ``width`` parallel chains (task ``i`` needs task
    ``i - width``), so the ready set keeps changing and ``width`` tasks run at a time.
    """
    return _plan(
        "bench-large",
        *(
            {
                "id": f"ws{w}",
                "settings": {"max_parallel": width},
                "tasks": [_task(i, [i - width] if i >= width else []) for i in range(tasks)],
            }
            for w in range(workstreams)
        ),
    )


def wide(workstreams: int, steps: int = 2) -> Plan:
    """``workstreams`` independent workstreams of ``steps`` chained tasks each: one run
    across many repositories. ``max_parallel_workstreams`` is left at its default."""
    return _plan(
        "bench-wide",
        *(
            {"id": f"ws{w}", "tasks": [_task(i, [i - 1] if i else []) for i in range(steps)]}
            for w in range(workstreams)
        ),
    )
