"""The run's first engine (towline before wide runs): runs started with it keep it.

A run's input says which engine runs it (``RunInput.engine``); runs started before the
engine of :mod:`towline.workflows.run_v2` existed have none (1) and go on here, with
exactly the commands they were started with, so their histories replay. New runs never
come here; this module goes once no run of a deployment started before it is open.

Each workstream is a child workflow (``<run_id>/<workstream>``), started once the
workstreams it needs have succeeded. Tasks that need tasks of another workstream learn
of them through this workflow: a workstream signals ``task_finished`` here, and the run
passes the news on to the workstreams waiting for it. The run keeps its status in the
``TowlineStatus`` search attribute, so it can be found from the Web UI and the CLI.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

from temporalio import workflow
from temporalio.exceptions import (
    ApplicationError,
    CancelledError,
    ChildWorkflowError,
    FailureError,
)

with workflow.unsafe.imports_passed_through():
    from towline.durations import format_duration
    from towline.plan.dag import cross_workstream_refs
    from towline.plan.spec import (
        DEFAULT_MAX_PARALLEL,
        DEFAULT_TAKEOVER,
        BudgetSpec,
        WorkstreamSpec,
    )
    from towline.state import (
        FINISHED,
        STATUS_KEY,
        WORKSTREAM_WORKFLOW,
        Budget,
        RunInput,
        RunState,
        Status,
        TaskView,
        Usage,
        WorkstreamInput,
        WorkstreamState,
        workstream_workflow_id,
    )
    from towline.workflows import metrics
    from towline.workflows.details import progress_markdown
    from towline.workflows.notify import Notifier
    from towline.workflows.run_v2 import innermost_message
    from towline.workflows.task import needs_workspace
    from towline.workflows.timers import span


class RunV1:
    def __init__(self, inp: RunInput) -> None:
        if not inp.run_id:  # started by a schedule: its run id is the workflow id it got
            inp = inp.model_copy(update={"run_id": workflow.info().workflow_id})
        self._inp = inp
        plan = inp.plan
        self._state = RunState(
            run_id=inp.run_id,
            plan=plan.name,
            status="running",
            workstreams={ws.id: WorkstreamState() for ws in plan.workstreams},
            retry_of=inp.retry_of,
        )
        # Who waits for which "ws.task" of another workstream, and who must report it.
        # Sorted lists, never sets: a set's order changes between processes (hash
        # randomisation), and signals sent in that order would not replay elsewhere.
        self._waiting_for = {
            ws_id: sorted(refs) for ws_id, refs in cross_workstream_refs(plan).items()
        }
        exports: dict[str, set[str]] = defaultdict(set)
        for refs in self._waiting_for.values():
            for ref in refs:
                owner, tid = ref.split(".", 1)
                exports[owner].add(tid)
        self._exports = {owner: sorted(tids) for owner, tids in exports.items()}
        self._finished_tasks: dict[str, TaskView] = {}
        self._children: dict[str, workflow.ChildWorkflowHandle[Any, WorkstreamState]] = {}
        self._coroutines: dict[str, asyncio.Task[None]] = {}
        self._stopping = False
        self._telling: set[asyncio.Task[None]] = set()
        self._paused_by: str | None = None
        # A plan-level max_parallel caps tasks in flight across all the run's workstreams:
        # each workstream asks the run for slots (only when there is more than one).
        limit = plan.settings.max_parallel
        self._free_slots = limit if limit is not None and len(plan.workstreams) > 1 else None
        self._wanted: dict[str, int] = {}
        self._held: dict[str, int] = defaultdict(int)
        b = plan.settings.budget
        self._budget = (
            Budget(max_cost_usd=b.max_cost_usd, max_tokens=b.max_tokens, on_exceed=b.on_exceed)
            if b is not None
            else None
        )
        self._waiting: dict[str, list[str]] = {}
        self._notifier = Notifier(inp.run_id, plan, inp.notified)

    async def run(self, inp: RunInput) -> RunState:
        st = self._state
        st.started_at = workflow.now()
        metrics.run_started(st.plan)
        self._report_budget()
        self._show_progress()
        for ws in inp.plan.workstreams:
            self._coroutines[ws.id] = asyncio.create_task(self._workstream(ws))
        try:
            await workflow.wait_condition(
                lambda: all(w.status in FINISHED for w in st.workstreams.values()),
                timeout=inp.plan.settings.timeout,
                timeout_summary=(
                    f"the run's timeout ({span(inp.plan.settings.timeout)})"
                    if inp.plan.settings.timeout
                    else None
                ),
            )
        except TimeoutError:
            st.reason = (
                f"the run passed its timeout of {format_duration(inp.plan.settings.timeout)}"  # type: ignore[arg-type]
            )
            await self._stop(st.reason)
            await self._finish("failed")
        except asyncio.CancelledError:
            await self._stop("the run was cancelled")
            await self._finish("cancelled")
            raise
        else:
            failed = [wid for wid, w in st.workstreams.items() if w.status == "failed"]
            undone = [wid for wid, w in st.workstreams.items() if w.status == "rolled_back"]
            if failed or undone:
                st.reason = f"workstream {', '.join(failed + undone)} failed"
                if undone:
                    st.reason += f" ({', '.join(undone)} rolled back)"
            await self._finish("failed" if failed else "rolled_back" if undone else "succeeded")
        await workflow.wait_condition(workflow.all_handlers_finished)
        if st.status != "succeeded":
            # The final state travels with the failure, as it does with a success: a
            # finished run's status is read from its history, with no worker to ask.
            raise ApplicationError(
                f"run {st.run_id} failed: {st.reason}", st, type="RunFailed", non_retryable=True
            )
        return st

    async def _finish(self, status: Status) -> None:
        self._set_status(status)
        self._state.ended_at = workflow.now()
        metrics.run_finished(self._state.plan, status)
        metrics.budget(self._inp.run_id, self._state.plan, None)
        self._show_progress()
        self._notify()
        await self._notifier.drain()

    def _notify(self) -> None:
        """Tell the plan's ``notify`` webhooks of this transition, without waiting."""
        waiting = [f"{ws}.{w}" for ws, ws_waits in self._waiting.items() for w in ws_waits]
        self._notifier.observe(self._state.status, waiting, self._state.reason)

    def _report_budget(self) -> None:
        """The share of the budget spent, for the gauge towline_run_budget_used_ratio."""
        used = self._budget.used() if self._budget is not None else None
        metrics.budget(self._inp.run_id, self._state.plan, used)

    def _show_progress(self) -> None:
        """The run's progress table, as the Web UI shows it ("current details")."""
        planned = {ws.id: len(ws.tasks) for ws in self._inp.plan.workstreams}
        workflow.set_current_details(progress_markdown(self._state, task_counts=planned))

    def _set_status(self, status: Status) -> None:
        """Change the run's status, and its ``TowlineStatus`` search attribute with it."""
        if status == self._state.status:
            return
        self._state.status = status
        # Kept current when the run was started with it (servers without towline's
        # search attributes, such as the time-skipping test server, start runs without).
        if workflow.info().typed_search_attributes.get(STATUS_KEY) is not None:
            workflow.upsert_search_attributes([STATUS_KEY.value_set(status)])

    def _refresh_status(self) -> None:
        """``waiting`` while paused or while any task waits for a person; else ``running``."""
        if self._state.status in FINISHED or self._stopping:
            return
        waiting = [f"{ws}.{w}" for ws, ws_waits in self._waiting.items() for w in ws_waits]
        if self._paused_by is not None:
            self._state.reason = f"paused by {self._paused_by}"
        elif waiting:
            self._state.reason = "waiting: " + ", ".join(waiting[:5])
        else:
            self._state.reason = None
        self._set_status("waiting" if self._paused_by is not None or waiting else "running")
        self._notify()

    async def _stop(self, reason: str) -> None:
        """Cancel running workstreams; those not started end ``cancelled``."""
        self._stopping = True
        me = asyncio.current_task()
        running = [c for c in self._coroutines.values() if not c.done() and c is not me]
        for c in running:
            c.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        for w in self._state.workstreams.values():
            if w.status not in FINISHED:
                w.status, w.reason = "cancelled", reason

    async def _workstream(self, ws: WorkstreamSpec) -> None:
        """Wait for the workstreams ``ws`` needs, then run it as a child workflow."""
        st = self._state.workstreams[ws.id]
        try:
            await workflow.wait_condition(
                lambda: (
                    self._stopping
                    or all(self._state.workstreams[n].status in FINISHED for n in ws.needs)
                )
            )
            unmet = [n for n in ws.needs if self._state.workstreams[n].status != "succeeded"]
            if self._stopping:
                st.status = "cancelled"
            elif unmet:
                st.status = "skipped"
                st.reason = f"needs workstream {unmet[0]}, which did not succeed"
            else:
                await self._run_child(ws, st)
                st.status = "succeeded"
        except ChildWorkflowError as e:
            cancelled = isinstance(e.cause, CancelledError)
            undone = (
                isinstance(e.cause, ApplicationError) and e.cause.type == "WorkstreamRolledBack"
            )
            st.status = "cancelled" if cancelled else "rolled_back" if undone else "failed"
            st.reason = innermost_message(e)
        except asyncio.CancelledError:
            st.status = "cancelled"
            st.reason = st.reason or "the run was cancelled"
        st.ended_at = workflow.now()
        self._waiting.pop(ws.id, None)
        if self._free_slots is not None:  # whatever it still held is free again
            self._free_slots += self._held.pop(ws.id, 0)
            self._wanted.pop(ws.id, None)
            self._grant_slots()
        self._refresh_status()
        self._show_progress()
        self._settle_exports(ws.id)
        policy = self._inp.plan.settings.failure_policy or "fail_fast"
        failed = st.status in ("failed", "rolled_back")
        if failed and policy == "fail_fast" and not self._stopping:
            await self._stop(f"workstream {ws.id} failed")

    async def _run_child(self, ws: WorkstreamSpec, st: WorkstreamState) -> None:
        plan = self._inp.plan
        st.status, st.started_at = "running", workflow.now()
        self._show_progress()
        upstream = {
            r: self._finished_tasks[r]
            for r in self._waiting_for.get(ws.id, ())
            if r in self._finished_tasks
        }
        # What the child is told at its start; anything that changes while it starts is
        # sent once the start has resolved (until then it cannot be signalled).
        paused = self._paused_by is not None
        budget = self._budget.model_copy(deep=True) if self._budget is not None else None
        handle = await workflow.start_child_workflow(
            WORKSTREAM_WORKFLOW,
            WorkstreamInput(
                run_id=self._inp.run_id,
                plan_dir=self._inp.plan_dir,
                plan=plan.name,
                spec=ws,
                plan_defaults=plan.defaults,
                max_parallel=ws.settings.max_parallel
                or plan.settings.max_parallel
                or DEFAULT_MAX_PARALLEL,
                failure_policy=ws.settings.failure_policy
                or plan.settings.failure_policy
                or "fail_fast",
                exports=self._exports.get(ws.id, []),
                upstream=upstream,
                workspace_free=not needs_workspace(ws, plan.defaults),
                paused=paused,
                run_slots=self._free_slots is not None,
                breaker=plan.settings.breaker,
                budget=budget,
                reuse={
                    ref.split(".", 1)[1]: view
                    for ref, view in self._inp.reuse.items()
                    if ref.startswith(f"{ws.id}.")
                },
                retry_of=self._inp.retry_of,
                workspace_of=self._inp.workspace_of,
                rollback=ws.settings.rollback or plan.settings.rollback or "auto",
                signals_in_order=True,
                max_history=self._inp.max_history,
                takeover=plan.settings.takeover or DEFAULT_TAKEOVER,
                restore=self._inp.restore.get(ws.id),
            ),
            id=workstream_workflow_id(self._inp.run_id, ws.id),
            result_type=WorkstreamState,
            static_summary=f"workstream {ws.id} of run {self._inp.run_id}",
        )
        self._children[ws.id] = handle
        if self._free_slots is not None:
            self._grant_slots()
        # News that arrived while the child was starting.
        for ref in self._waiting_for.get(ws.id, ()):
            if ref in self._finished_tasks and ref not in upstream:
                await self._tell(ws.id, ref)
        if (self._paused_by is not None) != paused:
            if self._paused_by is not None:
                await self._signal_child(ws.id, "pause", self._paused_by)
            else:
                await self._signal_child(ws.id, "resume", "the run")
        if self._budget is not None and not _same_limits(self._budget, budget):
            await self._signal_child(ws.id, "budget", self._budget)
        await handle

    def _settle_exports(self, ws_id: str) -> None:
        """Exports a workstream never reported (it never started): they did not succeed."""
        status = self._state.workstreams[ws_id].status
        for tid in self._exports.get(ws_id, ()):
            ref = f"{ws_id}.{tid}"
            if ref not in self._finished_tasks:
                self.task_finished(
                    ref, TaskView(status="skipped" if status == "skipped" else "cancelled")
                )

    async def _tell(self, ws_id: str, ref: str) -> None:
        await self._signal_child(ws_id, "upstream_finished", ref, self._finished_tasks[ref])

    async def _signal_child(self, ws_id: str, name: str, *args: object) -> None:
        child = self._children.get(ws_id)
        if child is None or self._state.workstreams[ws_id].status in FINISHED:
            return
        try:
            await child.signal(name, args=list(args))
        except FailureError:
            workflow.logger.info("workstream %s ended before it heard %s", ws_id, name)

    def task_finished(self, ref: str, view: TaskView) -> None:
        """A workstream reports a task that tasks of other workstreams need."""
        if ref in self._finished_tasks:
            return
        self._finished_tasks[ref] = view
        for ws_id, refs in self._waiting_for.items():
            if ref in refs and ws_id in self._children:
                tell = asyncio.create_task(self._tell(ws_id, ref))
                self._telling.add(tell)
                tell.add_done_callback(self._telling.discard)

    def workstream_waiting(self, ws_id: str, waiting: list[str]) -> None:
        """A workstream reports the tasks that wait for a person (or budget, or breaker)."""
        ws = self._state.workstreams[ws_id]
        if ws.status in FINISHED:
            return
        self._waiting[ws_id] = waiting
        ws.status = "waiting" if waiting else "running"
        ws.reason = ", ".join(waiting) if waiting else None
        self._refresh_status()
        self._show_progress()

    def want_slots(self, ws_id: str, wanted: int) -> None:
        """A workstream could use ``wanted`` more tasks in flight than it holds slots for."""
        if self._state.workstreams[ws_id].status in FINISHED:
            return
        self._wanted.pop(ws_id, None)  # to the back of the queue
        if wanted > 0:
            self._wanted[ws_id] = wanted
        self._grant_slots()

    def release_slots(self, ws_id: str, count: int) -> None:
        count = min(count, self._held[ws_id])
        self._held[ws_id] -= count
        if self._free_slots is not None:
            self._free_slots += count
        self._grant_slots()

    def _grant_slots(self) -> None:
        """Hand free slots to waiting workstreams, first asked, first served."""
        for ws_id in list(self._wanted):
            if not self._free_slots:
                return
            if ws_id not in self._children:
                continue  # asked before its start was recorded here; served once it is
            give = min(self._wanted[ws_id], self._free_slots)
            self._free_slots -= give
            self._held[ws_id] += give
            self._wanted[ws_id] -= give
            if not self._wanted[ws_id]:
                del self._wanted[ws_id]
            sent = asyncio.create_task(self._signal_child(ws_id, "slots", give))
            self._telling.add(sent)
            sent.add_done_callback(self._telling.discard)

    async def usage(self, usage: Usage) -> None:
        """A workstream reports what a tool call cost; the run's total counts against the budget.

        Workstreams count their own spending; they hear of the run's total only when it
        runs out (one signal each), not on every call: a usage report costs the run's
        history a few events, not a few per workstream.
        """
        self._state.usage = self._state.usage.add(usage)
        if self._budget is not None:
            was_spent = self._budget.exhausted() is not None
            self._budget.spent = self._state.usage
            self._report_budget()
            if not workflow.patched("budget-told-when-spent") or (
                not was_spent and self._budget.exhausted() is not None
            ):
                await self._tell_children("budget", self._budget)

    async def raise_budget(self, raise_to: BudgetSpec) -> str:
        """Set new budget limits (e.g. from `towline resume RUN --raise-budget max_cost_usd=5`)."""
        if self._budget is None:
            self._budget = Budget(spent=self._state.usage)
        if raise_to.max_cost_usd is not None:
            self._budget.max_cost_usd = raise_to.max_cost_usd
        if raise_to.max_tokens is not None:
            self._budget.max_tokens = raise_to.max_tokens
        self._report_budget()
        await self._tell_children("budget", self._budget)
        return (
            f"run {self._inp.run_id} budget: max_cost_usd={self._budget.max_cost_usd}, "
            f"max_tokens={self._budget.max_tokens}"
        )

    def check_open(self) -> None:
        if self._state.status in FINISHED:
            raise ValueError(f"run {self._inp.run_id} has already {self._state.status}")

    async def pause(self, by: str) -> str:
        """Start no new tasks anywhere in the run; running ones finish."""
        self._paused_by = by
        await self._tell_children("pause", by)
        self._refresh_status()
        return f"run {self._inp.run_id} paused"

    async def resume(self, by: str) -> str:
        """Start scheduling tasks again after a pause."""
        self._paused_by = None
        await self._tell_children("resume", by)
        self._refresh_status()
        return f"run {self._inp.run_id} resumed"

    async def _tell_children(self, signal: str, arg: object) -> None:
        for ws_id in list(self._children):
            await self._signal_child(ws_id, signal, arg)

    def status(self) -> RunState:
        """The run and its workstreams' statuses (each workstream answers for its tasks)."""
        return self._state


def _same_limits(a: Budget, b: Budget | None) -> bool:
    """Whether a workstream told ``b`` at its start knows what it must of ``a``: the limits,
    and whether they are spent."""
    return (
        b is not None
        and (a.max_cost_usd, a.max_tokens) == (b.max_cost_usd, b.max_tokens)
        and (a.exhausted() is None) == (b.exhausted() is None)
    )
