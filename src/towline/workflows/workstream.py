"""WorkstreamWorkflow: one workstream's DAG of tasks, in one workspace.

Ready tasks start by priority, at most ``max_parallel`` at a time; each runs the task
lifecycle (:mod:`towline.workflows.task`) as a coroutine of this workflow. Tasks other
workstreams need are reported to the run as they finish, and upstream tasks of other
workstreams arrive as signals. A long workstream continues-as-new before its history
grows large, carrying only the tasks' states.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from towline.workflows import expressions
    from towline.workflows.dag import Node, Scheduler
    from towline.workflows.state import (
        FINISHED,
        WORKSTREAM_WORKFLOW,
        TaskState,
        TaskView,
        WorkstreamInput,
        WorkstreamState,
    )
    from towline.workflows.task import TaskEnv, run_task

# Continue-as-new well before Temporal's 10k-event history guidance; each task costs
# about 6 events (activity scheduled, started, completed, and workflow task events).
MAX_HISTORY_EVENTS = 8_000


@workflow.defn(name=WORKSTREAM_WORKFLOW)
class WorkstreamWorkflow:
    @workflow.init
    def __init__(self, inp: WorkstreamInput) -> None:
        self._inp = inp
        self._specs = {t.id: t for t in inp.spec.tasks}
        self._state = inp.carry or WorkstreamState(
            tasks={t.id: TaskState(tool=t.tool) for t in inp.spec.tasks}
        )
        self._upstream: dict[str, TaskView] = dict(inp.upstream)
        self._sched = Scheduler([Node(t.id, tuple(t.needs), t.priority) for t in inp.spec.tasks])
        outcomes = {ref: v.status == "succeeded" for ref, v in self._upstream.items()}
        outcomes.update(
            {
                tid: t.status == "succeeded"
                for tid, t in self._state.tasks.items()
                if t.status in FINISHED
            }
        )
        self._sched.restore(outcomes)
        self._reports: dict[str, asyncio.Task[None]] = {}
        self._running: dict[str, asyncio.Task[None]] = {}
        self._stopping = False
        self._changed = False

    @workflow.run
    async def run(self, inp: WorkstreamInput) -> WorkstreamState:
        st = self._state
        if st.status == "pending":
            st.status = "running"
            st.started_at = workflow.now()
        workspace = inp.workspace or await workflow.execute_activity(
            "prepare_workspace",
            {
                "run_id": inp.run_id,
                "workstream": inp.spec.id,
                "repo": inp.spec.repo,
                "plan_dir": inp.plan_dir,
            },
            result_type=str,
            summary=f"workspace for {inp.spec.id}",
            start_to_close_timeout=timedelta(minutes=30),
            retry_policy=RetryPolicy(maximum_attempts=5, non_retryable_error_types=["validation"]),
        )
        env = TaskEnv(
            run_id=inp.run_id,
            workstream=inp.spec.id,
            workspace=workspace,
            plan_dir=inp.plan_dir,
            defaults=(inp.spec.defaults, inp.plan_defaults),
        )
        try:
            continue_as_new = await self._schedule(env)
        except asyncio.CancelledError:
            await self._stop_all("the run was cancelled")
            st.status, st.ended_at = "cancelled", workflow.now()
            await self._report_exports()
            raise
        if continue_as_new:
            await asyncio.gather(*self._reports.values())
            await workflow.wait_condition(workflow.all_handlers_finished)
            workflow.continue_as_new(
                inp.model_copy(
                    update={"carry": st, "upstream": self._upstream, "workspace": workspace}
                )
            )
        st.status = (
            "failed" if any(t.status == "failed" for t in st.tasks.values()) else "succeeded"
        )
        st.ended_at = workflow.now()
        await self._report_exports()
        await workflow.wait_condition(workflow.all_handlers_finished)
        if st.status == "failed":
            failed = [
                f"{tid} ({t.error.category if t.error else 'failed'})"
                for tid, t in st.tasks.items()
                if t.status == "failed"
            ]
            raise ApplicationError(
                f"workstream {inp.spec.id} failed: {', '.join(failed)}",
                type="WorkstreamFailed",
                non_retryable=True,
            )
        return st

    async def _schedule(self, env: TaskEnv) -> bool:
        """Run tasks until all are finished; True when it is time to continue-as-new."""
        limit = self._inp.max_parallel
        while True:
            if self._history_is_long():
                if not self._running:
                    return True
            elif not self._stopping:
                while len(self._running) < limit and (tid := self._sched.pop_ready()):
                    self._start(tid, env)
            if not self._running and not self._sched.has_ready() and self._all_settled():
                return False
            self._changed = False
            await workflow.wait_condition(lambda: self._changed)

    def _history_is_long(self) -> bool:
        info = workflow.info()
        return (
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() > MAX_HISTORY_EVENTS
        )

    def _all_settled(self) -> bool:
        return all(t.status in FINISHED for t in self._state.tasks.values()) or (
            self._stopping and not self._running
        )

    def _start(self, tid: str, env: TaskEnv) -> None:
        scope = expressions.Scope(run_id=env.run_id, workstream=env.workstream, lookup=self._lookup)
        self._running[tid] = asyncio.create_task(self._task(tid, env, scope))

    async def _task(self, tid: str, env: TaskEnv, scope: expressions.Scope) -> None:
        state = self._state.tasks[tid]
        try:
            await run_task(self._specs[tid], state, env, scope)
        finally:
            del self._running[tid]
            self._changed = True
        if state.status == "failed" and self._inp.failure_policy == "fail_fast":
            await self._stop_all(f"{tid} failed")
        else:
            self._settle(tid)
        self._report(tid)

    def _settle(self, tid: str) -> None:
        for blocked, because in self._sched.finish(
            tid, succeeded=self._state.tasks[tid].status == "succeeded"
        ):
            self._skip(blocked, f"needs {because}, which did not succeed")

    def _skip(self, tid: str, reason: str) -> None:
        t = self._state.tasks[tid]
        if t.status not in FINISHED:
            t.status, t.reason = "skipped", reason
            self._changed = True
            self._report(tid)

    async def _stop_all(self, reason: str) -> None:
        """fail_fast and cancellation: cancel running tasks; the rest end ``cancelled``."""
        self._stopping = True
        for tid, t in self._state.tasks.items():
            if t.status == "pending" and tid not in self._running:
                t.status, t.reason = "cancelled", reason
        running = list(self._running.values())
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        self._changed = True

    def _report(self, tid: str) -> None:
        """Tell the run that a task other workstreams need has finished."""
        if tid in self._inp.exports and tid not in self._reports:
            t = self._state.tasks[tid]
            run = workflow.get_external_workflow_handle(self._inp.run_id)
            self._reports[tid] = asyncio.create_task(
                run.signal(
                    "task_finished",
                    args=[
                        f"{self._inp.spec.id}.{tid}",
                        TaskView(status=t.status, outputs=t.outputs),
                    ],
                )
            )

    async def _report_exports(self) -> None:
        """Report every finished export, and wait until the run has them all.

        The run must hear of each export before it hears that this workflow ended.
        """
        for tid in self._inp.exports:
            if self._state.tasks[tid].status in FINISHED:
                self._report(tid)
        await asyncio.gather(*self._reports.values())

    def _lookup(self, ref: str) -> tuple[str, dict[str, object]] | None:
        if "." in ref:
            view = self._upstream.get(ref)
            return (view.status, view.outputs) if view else None
        t = self._state.tasks.get(ref)
        return (t.status, t.outputs) if t and t.status in FINISHED else None

    @workflow.signal(name="upstream_finished")
    def upstream_finished(self, ref: str, view: TaskView) -> None:
        """A task of another workstream that tasks here need has finished."""
        if ref in self._upstream:
            return
        self._upstream[ref] = view
        for blocked, because in self._sched.finish(ref, succeeded=view.status == "succeeded"):
            self._skip(blocked, f"needs {because}, which did not succeed")
        self._changed = True

    @workflow.query(name="status")
    def status(self) -> WorkstreamState:
        """The workstream's tasks and their statuses, live."""
        return self._state
