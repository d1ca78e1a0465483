"""What the dashboard's page shows of a run, as JSON: pure functions of the run's state
and its plan, so they are tested without a server or a browser.

The graph has a node per task, grouped by workstream, and an edge per ``needs`` (a
workstream's ``needs`` joins the tasks that end the one to those that start the other).
A wide run (more tasks than :data:`MAX_TASK_NODES`) is drawn a node per workstream.
Nothing here shows a task's ``with``: values a plan wrote there stay in the plan.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from towline.plan.spec import PlanSpec
from towline.starter import api, views
from towline.state import RunState, TaskState, WorkstreamState, workstream_workflow_id

MAX_TASK_NODES = 300


def workflow_link(ui_base: str, namespace: str, workflow_id: str) -> str:
    """A workflow's page in the Temporal Web UI (ids with '/' are escaped)."""
    return (
        f"{ui_base}/namespaces/{quote(namespace, safe='')}/workflows/{quote(workflow_id, safe='')}"
    )


def _seconds(start: datetime | None, end: datetime | None, now: datetime) -> float | None:
    if start is None:
        return None
    return round(((end or now) - start).total_seconds(), 3)


def task_json(run_id: str, wid: str, tid: str, t: TaskState, now: datetime) -> dict[str, Any]:
    ref = f"{wid}.{tid}"
    return {
        "id": ref,
        "workstream": wid,
        "task": tid,
        "tool": t.tool,
        "status": t.status,
        "waiting_for": t.waiting_for,
        "attempts": t.attempts,
        "runs": t.runs,
        "fixes": t.fixes,
        "cached": t.cached,
        "duration_s": _seconds(t.started_at, t.ended_at, now),
        "started_at": t.started_at.isoformat() if t.started_at else None,
        "tokens": t.usage.tokens,
        "cost_usd": t.usage.cost_usd,
        "note": views.task_note(run_id, ref, t),
        "error": views.error_text(t.error, t.tool) if t.error is not None else None,
        "decisions": [
            {
                "answer": d.answer,
                "by": d.by,
                "at": d.at.isoformat(),
                "note": d.note,
                "text": views.decision_text(d),
            }
            for d in t.decisions
        ],
    }


def run_json(
    state: RunState,
    plan: PlanSpec | None,
    *,
    ui_base: str,
    namespace: str,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The run page's data: the run, its waits, its tasks and its graph."""
    now = now or datetime.now(UTC)
    tasks = [task_json(state.run_id, wid, tid, t, now) for wid, tid, t in _tasks(state, plan)]
    workstreams = [
        {
            "id": wid,
            "status": ws.status,
            "reason": ws.reason,
            "duration_s": _seconds(ws.started_at, ws.ended_at, now),
            "web_ui": workflow_link(ui_base, namespace, workstream_workflow_id(state.run_id, wid)),
        }
        for wid, ws in state.workstreams.items()
    ]
    return {
        "run_id": state.run_id,
        "plan": state.plan,
        "status": state.status,
        "reason": state.reason,
        "waiting": views.waits_in_words(state) if state.status == "waiting" else "",
        "retry_of": state.retry_of,
        "started_at": state.started_at.isoformat() if state.started_at else None,
        "duration_s": _seconds(state.started_at, state.ended_at, now),
        "usage": {"tokens": state.usage.tokens, "cost_usd": state.usage.cost_usd},
        "web_ui": workflow_link(ui_base, namespace, state.run_id),
        "waits": [
            {
                "task": w.task,
                "waiting_for": w.waiting_for,
                "awaits": w.awaits,
                "reason": w.reason,
                "answers": list(w.answers),
                "command": w.command(state.run_id),
                "deadline": w.deadline.isoformat() if w.deadline else None,
                "error": views.error_text(w.error, w.tool) if w.error is not None else None,
            }
            for w in views.waits(state)
        ],
        "workstreams": workstreams,
        "tasks": tasks,
        "graph": graph(state, plan),
    }


def _tasks(state: RunState, plan: PlanSpec | None) -> list[tuple[str, str, TaskState]]:
    """Every task in plan order; those of workstreams not started yet are pending."""
    if plan is None:
        return [(w, t, ts) for w, ws in state.workstreams.items() for t, ts in ws.tasks.items()]
    out = []
    for ws in plan.workstreams:
        ws_state = state.workstreams.get(ws.id, WorkstreamState())
        out += [(ws.id, t.id, _task(ws_state, t.id, t.tool)) for t in ws.tasks]
    return out


def _task(ws: WorkstreamState, tid: str, tool: str) -> TaskState:
    """A task's state; for one its workstream never ran, the workstream's end."""
    if tid in ws.tasks:
        return ws.tasks[tid]
    ended = ws.status if ws.status in ("skipped", "cancelled") else "pending"
    return TaskState(tool=tool, status=ended)


def graph(state: RunState, plan: PlanSpec | None) -> dict[str, Any]:
    """Nodes, clusters and edges to lay out (the page lays them out with dagre)."""
    if plan is None:
        return _bare_graph(state)
    if sum(len(ws.tasks) for ws in plan.workstreams) > MAX_TASK_NODES:
        return _workstream_graph(state, plan)
    nodes, edges, clusters = [], [], []
    for ws in plan.workstreams:
        ws_state = state.workstreams.get(ws.id, WorkstreamState())
        clusters.append({"id": f"ws:{ws.id}", "label": ws.id, "status": ws_state.status})
        for task in ws.tasks:
            ref = f"{ws.id}.{task.id}"
            nodes.append(
                {
                    "id": ref,
                    "label": task.id,
                    "tool": task.tool,
                    "status": _task(ws_state, task.id, task.tool).status,
                    "parent": f"ws:{ws.id}",
                }
            )
            for need in task.needs:
                source = need if "." in need else f"{ws.id}.{need}"
                edges.append({"source": source, "target": ref, "kind": "task"})
    by_id = {ws.id: ws for ws in plan.workstreams}
    for ws in plan.workstreams:
        for need in ws.needs:
            upstream = by_id.get(need)
            if upstream is None:
                continue
            for end in _ends(upstream):
                for start in _starts(ws):
                    edges.append(
                        {
                            "source": f"{need}.{end}",
                            "target": f"{ws.id}.{start}",
                            "kind": "workstream",
                        }
                    )
    return {"level": "task", "nodes": nodes, "clusters": clusters, "edges": edges}


def _starts(ws: Any) -> list[str]:
    """Tasks of a workstream that need none of its own tasks."""
    return [t.id for t in ws.tasks if not any("." not in n for n in t.needs)]


def _ends(ws: Any) -> list[str]:
    """Tasks of a workstream that none of its own tasks needs."""
    needed = {n for t in ws.tasks for n in t.needs if "." not in n}
    return [t.id for t in ws.tasks if t.id not in needed]


def _workstream_graph(state: RunState, plan: PlanSpec) -> dict[str, Any]:
    nodes = [
        {
            "id": ws.id,
            "label": ws.id,
            "tool": f"{len(ws.tasks)} tasks",
            "status": state.workstreams.get(ws.id, WorkstreamState()).status,
            "parent": None,
        }
        for ws in plan.workstreams
    ]
    edges = [
        {"source": need, "target": ws.id, "kind": "workstream"}
        for ws in plan.workstreams
        for need in ws.needs
    ]
    return {"level": "workstream", "nodes": nodes, "clusters": [], "edges": edges}


def _bare_graph(state: RunState) -> dict[str, Any]:
    """Without the plan (its history is gone): the tasks, grouped, with no edges."""
    nodes, clusters = [], []
    for wid, ws in state.workstreams.items():
        clusters.append({"id": f"ws:{wid}", "label": wid, "status": ws.status})
        nodes += [
            {
                "id": f"{wid}.{tid}",
                "label": tid,
                "tool": t.tool,
                "status": t.status,
                "parent": f"ws:{wid}",
            }
            for tid, t in ws.tasks.items()
        ]
    return {"level": "task", "nodes": nodes, "clusters": clusters, "edges": []}


def summary_json(
    run: api.RunSummary, waiting: str | None, *, ui_base: str, namespace: str
) -> dict[str, Any]:
    """A row of the list of runs."""
    return {
        "run_id": run.run_id,
        "plan": run.plan,
        "status": run.status,
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "closed_at": run.closed_at.isoformat() if run.closed_at else None,
        "waiting": waiting,
        "web_ui": workflow_link(ui_base, namespace, run.run_id),
    }
