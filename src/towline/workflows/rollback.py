"""RollbackWorkflow: ``towline rollback RUN`` for a run that has finished.

A finished run's workflows are closed, so the rollback is a workflow of its own, with the
id ``<run_id>/rollback`` beside the run's. It runs the ``rollback:`` call of every task
that succeeded, newest first across the whole run, and records each outcome; ``towline
status`` shows the run with those outcomes.
"""

from __future__ import annotations

import functools
from datetime import timedelta

from pydantic import BaseModel, Field
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from towline.holding import Restore
    from towline.plan import expressions
    from towline.plan.spec import PlanSpec
    from towline.state import FINISHED, TOOL_USAGE_SIGNAL, Status, TaskState, UsageReport
    from towline.workflows.affinity import Affinity
    from towline.workflows.task import (
        TaskEnv,
        prepare_workspace,
        rollback_task,
    )

ROLLBACK_WORKFLOW = "RollbackWorkflow"


def rollback_workflow_id(run_id: str) -> str:
    return f"{run_id}/rollback"


class RollbackInput(BaseModel):
    run_id: str
    plan: PlanSpec
    plan_dir: str
    tasks: dict[str, dict[str, TaskState]] = Field(
        description="workstream -> task -> its state at the end of the run"
    )
    # Set by starters since workspaces are held and snapshotted; absent (None) in the
    # input of rollbacks started before, which replay as they ran.
    takeover: timedelta | None = None
    restore: dict[str, Restore] = Field(
        default_factory=dict, description="workstream -> the workspace as the run left it"
    )


class RollbackState(BaseModel):
    status: Status = "running"
    tasks: dict[str, dict[str, TaskState]] = Field(default_factory=dict)


@workflow.defn(name=ROLLBACK_WORKFLOW)
class RollbackWorkflow:
    @workflow.init
    def __init__(self, inp: RollbackInput) -> None:
        self._state = RollbackState(tasks=inp.tasks)
        self._usage_keys: set[str] = set()

    @workflow.run
    async def run(self, inp: RollbackInput) -> RollbackState:
        specs = {(ws.id, t.id): (ws, t) for ws in inp.plan.workstreams for t in ws.tasks}
        order = [
            (wid, tid)
            for wid, tasks in inp.tasks.items()
            for tid, t in tasks.items()
            if t.status == "succeeded" and specs[(wid, tid)][1].rollback is not None
        ]
        order.sort(key=lambda k: inp.tasks[k[0]][k[1]].ended_at or workflow.now(), reverse=True)
        workspaces: dict[str, str] = {}
        held: dict[str, Affinity] = {}
        for wid, tid in order:
            ws, spec = specs[(wid, tid)]
            if wid not in workspaces and inp.takeover is not None:
                # Restored from the run's snapshot, on whichever worker holds it now.
                held[wid] = Affinity(
                    run_id=inp.run_id, spec=ws, plan_dir=inp.plan_dir, bound=inp.takeover
                )
                workspaces[wid] = await held[wid].hold(inp.restore.get(wid))
            elif wid not in workspaces:
                workspaces[wid] = await prepare_workspace(inp.run_id, ws, inp.plan_dir, local=False)
            env = TaskEnv(
                run_id=inp.run_id,
                workstream=wid,
                workspace=workspaces[wid],
                plan_dir=inp.plan_dir,
                defaults=(ws.defaults, inp.plan.defaults),
                affinity=held.get(wid),
            )
            tasks = self._state.tasks[wid]
            scope = expressions.Scope(
                run_id=inp.run_id, workstream=wid, lookup=functools.partial(_lookup, tasks)
            )
            await rollback_task(spec, tasks[tid], env, scope)
        failed = any(self._state.tasks[w][t].rollback_error for w, t in order)
        self._state.status = "failed" if failed else "rolled_back"
        return self._state

    @workflow.signal(name=TOOL_USAGE_SIGNAL)
    def tool_usage(self, report: UsageReport) -> None:
        """A rollback call's attempt that failed or was cancelled tells what it spent."""
        if report.key in self._usage_keys:
            return
        self._usage_keys.add(report.key)
        t = self._state.tasks.get(report.workstream, {}).get(report.task)
        if t is not None:
            t.usage = t.usage.add(report.usage)

    @workflow.query(name="status")
    def status(self) -> RollbackState:
        return self._state


def _lookup(tasks: dict[str, TaskState], ref: str) -> tuple[str, dict[str, object]] | None:
    t = tasks.get(ref)
    return (t.status, t.outputs) if t and t.status in FINISHED | {"rolled_back"} else None
