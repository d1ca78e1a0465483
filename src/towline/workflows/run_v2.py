"""The run, for runs of any width: the engine of runs started since towline 0.2.

A run may have thousands of workstreams. Each is a child workflow (``<run>/<ws>``),
started once the workstreams it needs have succeeded, in plan order, at most
``settings.max_parallel_workstreams`` at a time. Everything the run does per event costs
O(1) (or O(what the event touches)): the workstreams' DAG is :class:`~towline.plan.dag.Scheduler`,
the plan-level ``max_parallel`` a :class:`~towline.workflows.coordination.SlotPool` shared out
when each workstream starts (no signal per task), the Web UI's details are
:class:`~towline.workflows.coordination.Progress` (counts and short lists, not a table of
everything).

The run continues-as-new before its history grows long, with workstreams in flight:
children are started with the ABANDON parent-close policy (a continue-as-new closes the
run's execution, and would otherwise terminate them). A workstream's end reaches the
execution that started it as the child's result (no signal, no extra workflow task for
the child); before continuing-as-new the run asks those still in flight to report their
end to its workflow id instead (the ``workstream_ended`` signal reaches whichever
execution is current). They are cancelled one by one when the run is.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ApplicationError,
    CancelledError,
    ChildWorkflowError,
    FailureError,
    TerminatedError,
)
from temporalio.exceptions import (
    TimeoutError as TemporalTimeoutError,
)
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from towline.durations import format_duration
    from towline.plan import effective
    from towline.plan.dag import Node, Scheduler, cross_workstream_refs
    from towline.plan.spec import (
        DEFAULT_MAX_PARALLEL_WORKSTREAMS,
        DEFAULT_TAKEOVER,
        BudgetSpec,
        WorkstreamSpec,
    )
    from towline.state import (
        FINISHED,
        STATUS_KEY,
        WORKSTREAM_WORKFLOW,
        AnswerRequest,
        Budget,
        RunAnswer,
        RunCarry,
        RunInput,
        RunState,
        Status,
        TaskView,
        Usage,
        WorkstreamEnd,
        WorkstreamInput,
        WorkstreamState,
        workstream_workflow_id,
    )
    from towline.workflows import metrics
    from towline.workflows.agent import AgentAnswer, agent_workflow_id
    from towline.workflows.coordination import ExportRoutes, Progress, SlotPool
    from towline.workflows.locks import (
        ACQUIRE_LOCK_ACTIVITY,
        AcquireLock,
        Holder,
        lock_workflow_id,
    )
    from towline.workflows.notify import Notifier
    from towline.workflows.task import needs_workspace
    from towline.workflows.timers import span

# Continue-as-new well before Temporal's 10,240-event warning. A workstream costs the run
# about ten events (its start, its end and the workflow tasks around them).
MAX_HISTORY_EVENTS = 8_000

# The patch after which a run's workstreams report their end by signal only when asked.
ENDS_BY_RESULT = "ends-by-result"


class RunV2:
    def __init__(self, inp: RunInput) -> None:
        self._inp = inp
        plan = inp.plan
        carry = inp.carry
        self._specs = {ws.id: ws for ws in plan.workstreams}
        self._state = (
            carry.state
            if carry is not None
            else RunState(
                run_id=inp.run_id,
                plan=plan.name,
                status="running",
                workstreams={ws.id: WorkstreamState() for ws in plan.workstreams},
                retry_of=inp.retry_of,
            )
        )
        st = self._state
        self._dag = Scheduler([Node(ws.id, tuple(ws.needs)) for ws in plan.workstreams])
        self._dag.restore(
            {w: s.status == "succeeded" for w, s in st.workstreams.items() if s.status in FINISHED}
        )
        self._running: dict[str, workflow.ChildWorkflowHandle[Any, WorkstreamState] | None] = {}
        for wid, w in st.workstreams.items():
            if w.status in ("running", "waiting"):  # started by an earlier execution
                self._dag.take(wid)
                self._running[wid] = None
        self._starting = 0
        self._routes = ExportRoutes(cross_workstream_refs(plan))
        self._finished_tasks: dict[str, TaskView] = dict(carry.finished_tasks) if carry else {}
        limit = plan.settings.max_parallel
        pool = limit is not None and len(plan.workstreams) > 1
        self._pool = SlotPool(size=limit, held=dict(carry.slots) if carry else {}) if pool else None
        self._limit = plan.settings.max_parallel_workstreams or DEFAULT_MAX_PARALLEL_WORKSTREAMS
        self._unfinished = sum(1 for w in st.workstreams.values() if w.status not in FINISHED)
        self._stopping = carry.stopping if carry else None
        self._paused_by = carry.paused_by if carry else None
        b = plan.settings.budget
        self._budget = (
            carry.budget
            if carry is not None
            else Budget(max_cost_usd=b.max_cost_usd, max_tokens=b.max_tokens, on_exceed=b.on_exceed)
            if b is not None
            else None
        )
        self._waiting: dict[str, list[str]] = dict(carry.waiting) if carry else {}
        self._progress = Progress({w: s.status for w, s in st.workstreams.items()})
        for wid, waits in self._waiting.items():
            self._progress.waits(wid, waits)
        self._notifier = Notifier(inp.run_id, plan, inp.notified)
        self._live: dict[str, Usage] = dict(carry.live) if carry else {}
        self._timed_out = carry.timed_out if carry else False
        self._telling: set[asyncio.Task[None]] = set()  # signals on their way
        self._children: set[asyncio.Task[None]] = set()  # children started here, awaited
        self._timer: asyncio.Task[None] | None = None
        # Workstreams waiting for their concurrency key (their slots), and those that
        # hold it; carried across continue-as-new.
        self._keys_wanted: dict[str, int] = dict(carry.keys_wanted) if carry else {}
        self._keys_held: set[str] = set(carry.keys_held) if carry else set()
        self._key_tasks: dict[str, asyncio.Task[None]] = {}
        # Workstreams this execution started tell it nothing of their end (it reads their
        # results); before it continues-as-new it asks those still running to tell the
        # run by signal instead. Runs started before this was so replay without it.
        self._ends_by_result: bool | None = None
        self._asked: set[str] = set()
        self._changed = False

    # ------------------------------------------------------------------ the run

    async def run(self) -> RunState:
        st, inp = self._state, self._inp
        if inp.carry is None:
            st.started_at = workflow.now()
            metrics.run_started(st.plan)
            self._report_budget()
        for wid in list(self._keys_wanted):  # carried across a continue-as-new
            self._track_key(wid)
        self._show()
        try:
            timed_out = await self._schedule()
        except asyncio.CancelledError:
            await self._stop("the run was cancelled")
            await self._until_all_ended()
            await self._finish("cancelled")
            raise
        if timed_out:
            st.reason = (
                f"the run passed its timeout of {format_duration(inp.plan.settings.timeout)}"  # type: ignore[arg-type]
            )
            await self._stop(st.reason)
            await self._until_all_ended()
            await self._finish("failed")
        else:
            failed = [w for w, s in st.workstreams.items() if s.status == "failed"]
            undone = [w for w, s in st.workstreams.items() if s.status == "rolled_back"]
            if failed or undone:
                st.reason = f"workstream {', '.join((failed + undone)[:20])} failed"
                if len(failed + undone) > 20:
                    st.reason += f" (and {len(failed + undone) - 20} more)"
                if undone and not failed:
                    st.reason += " (rolled back)"
            await self._finish("failed" if failed else "rolled_back" if undone else "succeeded")
        await workflow.wait_condition(workflow.all_handlers_finished)
        if st.status != "succeeded":
            raise ApplicationError(
                f"run {st.run_id} failed: {st.reason}", st, type="RunFailed", non_retryable=True
            )
        return st

    async def _schedule(self) -> bool:
        """Start workstreams as they become ready until every one has ended; True if the
        run's timeout passed first. Continues-as-new when history is long."""
        timeout = self._inp.plan.settings.timeout
        started = self._state.started_at
        if timeout is not None and started is not None and not self._timed_out:
            # Not tracked: a continue-as-new leaves it behind, and the next execution
            # sets one for what is left.
            self._timer = asyncio.create_task(self._time_out(started + timeout - workflow.now()))
        while True:
            if self._timed_out:
                return True
            self._launch()
            if not self._unfinished:
                return False
            if self._history_is_long() and self._starting == 0 and self._stopping is None:
                await workflow.wait_condition(
                    lambda: not self._telling or self._timed_out,
                )
                await workflow.wait_condition(workflow.all_handlers_finished)
                if self._starting == 0 and not self._telling:
                    if await self._ask_for_ends():
                        continue  # time passed: look again before continuing-as-new
                    self._continue_as_new()
            self._changed = False
            await workflow.wait_condition(lambda: self._changed)

    async def _time_out(self, left: timedelta) -> None:
        """The run's timeout: one durable timer (across continue-as-new, what is left)."""
        if left > timedelta(0):
            await workflow.sleep(left, summary=f"the run's timeout ({span(left)})")
        self._timed_out = True
        self._changed = True

    def _continue_as_new(self) -> None:
        inp = self._inp
        workflow.continue_as_new(
            inp.model_copy(
                update={
                    "notified": self._notifier.carry(),
                    "carry": RunCarry(
                        state=self._state,
                        finished_tasks=self._finished_tasks,
                        slots=self._pool.held if self._pool else {},
                        paused_by=self._paused_by,
                        budget=self._budget,
                        waiting=self._waiting,
                        stopping=self._stopping,
                        live=self._live,
                        timed_out=self._timed_out,
                        keys_wanted=self._keys_wanted,
                        keys_held=sorted(self._keys_held),
                    ),
                }
            )
        )

    def _history_is_long(self) -> bool:
        info = workflow.info()
        limit = self._inp.max_history or MAX_HISTORY_EVENTS
        return info.is_continue_as_new_suggested() or info.get_current_history_length() > limit

    # ------------------------------------------------------------ workstreams

    def _launch(self) -> None:
        """Start ready workstreams while there is room: in flight, slots, not paused."""
        while (
            self._stopping is None
            and self._paused_by is None
            and not self._history_is_long()  # let the starts settle, then continue-as-new
            and len(self._running) + self._starting + len(self._keys_wanted) < self._limit
            and (self._pool is None or self._pool.free > 0)
        ):
            wid = self._dag.pop_ready()
            if wid is None:
                return
            spec = self._specs[wid]
            own = effective.workstream(spec, self._inp.plan).max_parallel
            if self._pool is not None:
                got = self._pool.take(wid, limit=own, unfinished=self._unfinished)
                assert got is not None
                own = got
            if spec.concurrency is not None:
                self._keys_wanted[wid] = own
                self._track_key(wid)
            else:
                self._start(spec, own)

    def _start(self, spec: WorkstreamSpec, max_parallel: int) -> None:
        self._move(spec.id, "running")
        self._state.workstreams[spec.id].started_at = workflow.now()
        self._starting += 1
        child = asyncio.create_task(self._child(spec, max_parallel))
        self._children.add(child)
        child.add_done_callback(self._children.discard)

    # ------------------------------------------------------- concurrency keys

    def _track_key(self, wid: str) -> None:
        task = asyncio.create_task(self._take_key(wid))
        self._key_tasks[wid] = task
        task.add_done_callback(lambda _: self._key_tasks.pop(wid, None))

    async def _take_key(self, wid: str) -> None:
        """Hold the workstream's concurrency key, waiting in line as long as it takes,
        then start it. A continue-as-new meanwhile carries the wait over."""
        spec = self._specs[wid]
        assert spec.concurrency is not None
        key = spec.concurrency.key
        if wid not in self._keys_held:
            granted = await workflow.execute_local_activity(
                ACQUIRE_LOCK_ACTIVITY,
                AcquireLock(
                    queue=workflow.info().task_queue,
                    key=key,
                    limit=spec.concurrency.limit,
                    holder=Holder(run_id=self._inp.run_id, workstream=wid),
                ),
                result_type=bool,
                summary=f"{wid}: concurrency key {key}",
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(maximum_attempts=10),
            )
            if not granted:
                w = self._state.workstreams[wid]
                w.reason = f"waits its turn for concurrency key {key}"
                self._changed = True
                await workflow.wait_condition(lambda: wid in self._keys_held)
            self._keys_held.add(wid)
        quota = self._keys_wanted.pop(wid)
        self._state.workstreams[wid].reason = None
        self._start(spec, quota)

    def lock_granted(self, wid: str, key: str) -> None:
        if wid in self._keys_wanted:
            self._keys_held.add(wid)
        else:  # it ended (a stop) before its turn came: give the key back
            self._track(self._give_key_back(wid))

    async def _give_key_back(self, wid: str) -> None:
        spec = self._specs[wid]
        self._keys_held.discard(wid)
        if spec.concurrency is None:
            return
        holder = Holder(run_id=self._inp.run_id, workstream=wid)
        with contextlib.suppress(FailureError):  # a lock that has ended holds nothing
            await workflow.get_external_workflow_handle(
                lock_workflow_id(workflow.info().task_queue, spec.concurrency.key)
            ).signal("release", holder.id)

    def _track(self, coro: Any) -> None:
        """Run ``coro`` (a signal, a stop) beside the run; continue-as-new waits for it."""
        task = asyncio.create_task(coro)
        self._telling.add(task)
        task.add_done_callback(self._telling.discard)

    async def _child(self, ws: WorkstreamSpec, max_parallel: int) -> None:
        """Start workstream ``ws`` as a child workflow and await its end."""
        plan, inp = self._inp.plan, self._inp
        settings = effective.workstream(ws, plan)
        upstream = {
            r: self._finished_tasks[r]
            for r in self._routes.wanted_by(ws.id)
            if r in self._finished_tasks
        }
        paused = self._paused_by is not None
        budget = self._budget.model_copy(deep=True) if self._budget is not None else None
        try:
            handle = await workflow.start_child_workflow(
                WORKSTREAM_WORKFLOW,
                WorkstreamInput(
                    run_id=inp.run_id,
                    plan_dir=inp.plan_dir,
                    plan=plan.name,
                    spec=ws,
                    plan_defaults=plan.defaults,
                    max_parallel=max_parallel,
                    failure_policy=settings.failure_policy,
                    exports=self._routes.exports(ws.id),
                    upstream=upstream,
                    workspace_free=not needs_workspace(ws, plan.defaults),
                    paused=paused,
                    breaker=plan.settings.breaker,
                    budget=budget,
                    reuse={
                        ref.split(".", 1)[1]: view
                        for ref, view in inp.reuse.items()
                        if ref.startswith(f"{ws.id}.")
                    },
                    retry_of=inp.retry_of,
                    workspace_of=inp.workspace_of,
                    rollback=settings.rollback,
                    signals_in_order=True,
                    max_history=inp.max_history,
                    takeover=plan.settings.takeover or DEFAULT_TAKEOVER,
                    restore=inp.restore.get(ws.id),
                    report_end=True,
                    report_usage=budget is not None,
                    report_when_asked=self._by_result(),
                ),
                id=workstream_workflow_id(inp.run_id, ws.id),
                result_type=WorkstreamState,
                static_summary=f"workstream {ws.id} of run {inp.run_id}",
                # A continue-as-new closes this execution: its children live on.
                parent_close_policy=ParentClosePolicy.ABANDON,
            )
        except FailureError as e:  # e.g. a workflow with this id exists already
            self._starting -= 1
            self._ended(ws.id, WorkstreamEnd(status="failed", reason=f"could not start: {e}"))
            return
        self._running[ws.id] = handle
        # News that arrived while it was starting, which its input could not carry.
        for ref in self._routes.wanted_by(ws.id):
            if ref in self._finished_tasks and ref not in upstream:
                await self._signal(ws.id, "upstream_finished", ref, self._finished_tasks[ref])
        if (self._paused_by is not None) != paused:
            await self._signal(
                ws.id, "pause" if self._paused_by else "resume", self._paused_by or "the run"
            )
        if self._budget is not None and budget is not None and _told_differs(self._budget, budget):
            await self._signal(ws.id, "budget", self._budget)
        if self._stopping is not None:
            await self._cancel_child(ws.id)
        self._starting -= 1
        self._changed = True
        try:
            result = await handle
        except ChildWorkflowError as e:
            self._ended(ws.id, _end_of_failure(e))
        else:
            self._ended(ws.id, _end_of(result))

    def _by_result(self) -> bool:
        if self._ends_by_result is None:
            self._ends_by_result = workflow.patched(ENDS_BY_RESULT)
        return self._ends_by_result

    async def _ask_for_ends(self) -> bool:
        """Before a continue-as-new: ask the workstreams this execution started (whose
        results the next execution cannot read) to report their end by signal; a result
        that arrives meanwhile still counts. One that had closed before it heard the ask
        has its result on the way to this execution: wait for it. True if it asked any
        (time passed: the caller looks again)."""
        if not self._by_result():
            return False
        ask = [w for w, h in self._running.items() if h is not None and w not in self._asked]
        if not ask:
            return False
        self._asked.update(ask)
        heard = await asyncio.gather(*(self._ask_for_end(w) for w in ask))
        closed = [w for w, ok in zip(ask, heard, strict=True) if not ok]
        await workflow.wait_condition(lambda: not any(w in self._running for w in closed))
        return True

    async def _ask_for_end(self, wid: str) -> bool:
        try:
            await workflow.get_external_workflow_handle(
                workstream_workflow_id(self._inp.run_id, wid)
            ).signal("report_end")
        except FailureError:
            return False  # closed already: its result is on its way here
        return True

    def _ended(self, wid: str, end: WorkstreamEnd) -> None:
        """Workstream ``wid`` has ended (its own report, or its workflow's outcome)."""
        w = self._state.workstreams[wid]
        if w.status in FINISHED:
            return  # the other report of the same end
        self._running.pop(wid, None)
        if self._pool is not None:
            self._pool.give_back(wid)
        if self._specs[wid].concurrency is not None:
            self._track(self._give_key_back(wid))
        w.reason = end.reason
        w.counts = dict(end.counts)
        if end.started_at is not None:
            w.started_at = w.started_at or end.started_at
        w.ended_at = end.ended_at or workflow.now()
        # What it spent that the run has not heard of yet (it reports live with a budget).
        told = self._live.pop(wid, Usage())
        self._state.usage = self._state.usage.add(end.usage.since(told))
        self._waiting.pop(wid, None)
        self._move(wid, end.status, end.reason)
        self._settle_exports(wid)
        for blocked, because in self._dag.finish(wid, succeeded=end.status == "succeeded"):
            self._skip(blocked, f"needs workstream {because}, which did not succeed")
        policy = self._inp.plan.settings.failure_policy or "fail_fast"
        if end.status in ("failed", "rolled_back") and policy == "fail_fast":
            self._track(self._stop(f"workstream {wid} failed"))
        self._refresh_status()

    def _skip(self, wid: str, reason: str) -> None:
        w = self._state.workstreams[wid]
        if w.status in FINISHED:
            return
        w.reason, w.ended_at = reason, workflow.now()
        self._move(wid, "skipped", reason)
        self._settle_exports(wid)

    def _move(self, wid: str, status: Status, reason: str | None = None) -> None:
        w = self._state.workstreams[wid]
        old = w.status
        w.status = status
        self._progress.moved(wid, old, status, reason)
        if status in FINISHED and old not in FINISHED:
            self._unfinished -= 1
        self._changed = True

    async def _stop(self, reason: str) -> None:
        """No workstream starts any more; those not started end cancelled, running ones
        are cancelled (their rollbacks run) and report their end."""
        if self._stopping is not None:
            return
        self._stopping = reason
        self._dag.stop()
        for wid in list(self._keys_wanted):  # waiting for a key: never started
            task = self._key_tasks.get(wid)
            if task is not None:
                task.cancel()
            self._keys_wanted.pop(wid, None)
            if self._pool is not None:
                self._pool.give_back(wid)
            self._track(self._give_key_back(wid))
        for wid, w in self._state.workstreams.items():
            if w.status == "pending":
                w.reason, w.ended_at = reason, workflow.now()
                self._move(wid, "cancelled", reason)
                self._settle_exports(wid)
        for wid in list(self._running):
            await self._cancel_child(wid)
        self._changed = True

    async def _cancel_child(self, wid: str) -> None:
        try:
            await workflow.get_external_workflow_handle(
                workstream_workflow_id(self._inp.run_id, wid)
            ).cancel()
        except FailureError:
            workflow.logger.info("workstream %s had ended before its cancel", wid)

    async def _until_all_ended(self) -> None:
        await workflow.wait_condition(lambda: not self._running and self._starting == 0)

    # ------------------------------------------------------- exports (cross-ws)

    def _settle_exports(self, wid: str) -> None:
        """Exports a workstream never reported (it never ran them): they did not succeed."""
        status = self._state.workstreams[wid].status
        for tid in self._routes.exports(wid):
            ref = f"{wid}.{tid}"
            if ref not in self._finished_tasks:
                self.task_finished(
                    ref, TaskView(status="skipped" if status == "skipped" else "cancelled")
                )

    def task_finished(self, ref: str, view: TaskView) -> None:
        if ref in self._finished_tasks:
            return
        self._finished_tasks[ref] = view
        for wid in self._routes.waiters(ref):
            if wid in self._running:  # one starting hears of it once it has started
                self._track(self._signal(wid, "upstream_finished", ref, view))

    async def _signal(self, wid: str, name: str, *args: object) -> None:
        if self._state.workstreams[wid].status in FINISHED:
            return
        try:
            await workflow.get_external_workflow_handle(
                workstream_workflow_id(self._inp.run_id, wid)
            ).signal(name, args=list(args))
        except FailureError:
            workflow.logger.info("workstream %s ended before it heard %s", wid, name)

    async def _tell_running(self, name: str, arg: object) -> None:
        for wid in list(self._running):
            await self._signal(wid, name, arg)

    # ---------------------------------------------------------------- status

    def workstream_waiting(self, wid: str, waiting: list[str]) -> None:
        w = self._state.workstreams.get(wid)
        if w is None or w.status in FINISHED:
            return
        if waiting:
            self._waiting[wid] = waiting
        else:
            self._waiting.pop(wid, None)
        self._progress.waits(wid, waiting)
        self._move(wid, "waiting" if waiting else "running")
        w.reason = ", ".join(waiting) if waiting else None
        self._refresh_status()

    def workstream_ended(self, wid: str, end: WorkstreamEnd) -> None:
        if wid in self._state.workstreams:
            self._ended(wid, end)

    def _refresh_status(self) -> None:
        st = self._state
        if st.status in FINISHED:
            return
        if self._stopping is not None:
            st.reason = self._stopping
        elif self._paused_by is not None:
            st.reason = f"paused by {self._paused_by}"
        elif self._waiting:
            first = [f"{w}.{x}" for w, xs in list(self._waiting.items())[:3] for x in xs][:5]
            st.reason = "waiting: " + ", ".join(first)
        else:
            st.reason = None
        waiting = self._paused_by is not None or bool(self._waiting)
        self._set_status("waiting" if waiting and self._stopping is None else "running")
        self._show()
        self._notify()

    def _set_status(self, status: Status) -> None:
        if status == self._state.status:
            return
        self._state.status = status
        if workflow.info().typed_search_attributes.get(STATUS_KEY) is not None:
            workflow.upsert_search_attributes([STATUS_KEY.value_set(status)])

    def _show(self) -> None:
        workflow.set_current_details(
            self._progress.details(self._inp.run_id, self._state.status, paused_by=self._paused_by)
        )

    def _notify(self) -> None:
        waiting = [f"{w}.{x}" for w, xs in self._waiting.items() for x in xs]
        self._notifier.observe(self._state.status, waiting, self._state.reason)

    async def _finish(self, status: Status) -> None:
        # Signals on their way (a key given back, news for a workstream) go before the end,
        # and the workstreams this execution started close first: a run never reads as
        # ended while one of its workstreams is still open.
        await workflow.wait_condition(lambda: not self._telling and not self._children)
        self._set_status(status)
        self._state.ended_at = workflow.now()
        metrics.run_finished(self._state.plan, status)
        metrics.budget(self._inp.run_id, self._state.plan, None)
        self._show()
        self._notify()
        await self._notifier.drain()

    def _report_budget(self) -> None:
        used = self._budget.used() if self._budget is not None else None
        metrics.budget(self._inp.run_id, self._state.plan, used)

    # ------------------------------------------------------- people and money

    async def usage(self, usage: Usage, wid: str | None) -> None:
        self._state.usage = self._state.usage.add(usage)
        if wid is not None and self._state.workstreams.get(wid) is not None:
            self._live[wid] = self._live.get(wid, Usage()).add(usage)
        if self._budget is not None:
            was_spent = self._budget.exhausted() is not None
            self._budget.spent = self._state.usage
            self._report_budget()
            if not was_spent and self._budget.exhausted() is not None:
                await self._tell_running("budget", self._budget)

    async def raise_budget(self, raise_to: BudgetSpec) -> str:
        if self._budget is None:
            self._budget = Budget(spent=self._state.usage)
        if raise_to.max_cost_usd is not None:
            self._budget.max_cost_usd = raise_to.max_cost_usd
        if raise_to.max_tokens is not None:
            self._budget.max_tokens = raise_to.max_tokens
        self._report_budget()
        await self._tell_running("budget", self._budget)
        return (
            f"run {self._inp.run_id} budget: max_cost_usd={self._budget.max_cost_usd}, "
            f"max_tokens={self._budget.max_tokens}"
        )

    async def pause(self, by: str) -> str:
        self._paused_by = by
        await self._tell_running("pause", by)
        self._refresh_status()
        return f"run {self._inp.run_id} paused"

    async def resume(self, by: str) -> str:
        self._paused_by = None
        await self._tell_running("resume", by)
        self._refresh_status()
        self._changed = True
        return f"run {self._inp.run_id} resumed"

    def check_answer(self, answer: str, req: AnswerRequest) -> tuple[str, str]:
        """The workstream and task an answer given to the run is for; ValueError (a message,
        never a stack trace) when nobody waits for it."""
        ref = req.task.strip()
        wid, sep, tid = ref.partition(".")
        if not sep or not wid or not tid:
            raise ValueError(
                f'give the task as workstream.task, e.g. "api.deploy" (got {req.task!r})'
            )
        if wid not in self._state.workstreams:
            raise ValueError(f"run {self._inp.run_id} has no workstream '{wid}'")
        waits = [w.partition(": ") for w in self._waiting.get(wid, [])]
        kinds = {t: k for t, _, k in waits}
        want = _ANSWERED_BY.get(answer)
        if tid not in kinds:
            raise ValueError(f"task {ref} is not waiting for anyone")
        if kinds[tid] != want:
            raise ValueError(f"task {ref} waits for {kinds[tid]}, which '{answer}' does not answer")
        return wid, tid

    async def answer(self, answer: str, req: AnswerRequest) -> str:
        wid, tid = self.check_answer(answer, req)
        forwarded = req.model_copy(update={"task": tid})
        await self._signal(wid, "answer", answer, forwarded)
        return f"{answer}: {wid}.{tid} (by {req.by})"

    def check_question(self, req: RunAnswer) -> tuple[str, str]:
        """The workstream and task whose agent asked what ``req`` answers."""
        return self.check_answer("answer", AnswerRequest(task=req.task, by=req.by))

    async def answer_question(self, req: RunAnswer) -> str:
        wid, tid = self.check_question(req)
        try:
            await workflow.get_external_workflow_handle(
                agent_workflow_id(self._inp.run_id, wid, tid)
            ).signal("answer_from_run", AgentAnswer(text=req.text, by=req.by))
        except FailureError:
            raise ApplicationError(f"task {wid}.{tid} has stopped asking") from None
        return f"answered {wid}.{tid} (by {req.by})"

    def status(self) -> RunState:
        return self._state


_ANSWERED_BY = {
    "approve": "approval",
    "reject": "approval",
    "retry": "operator",
    "skip": "operator",
    "abort": "operator",
    "answer": "answer",
}


def _told_differs(now: Budget, told: Budget) -> bool:
    return (now.max_cost_usd, now.max_tokens) != (told.max_cost_usd, told.max_tokens) or (
        now.exhausted() is None
    ) != (told.exhausted() is None)


def _counts(state: WorkstreamState) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in state.tasks.values():
        out[t.status] = out.get(t.status, 0) + 1
    return out


def _end_of(state: WorkstreamState) -> WorkstreamEnd:
    return WorkstreamEnd(
        status="succeeded",
        reason=state.reason,
        started_at=state.started_at,
        ended_at=state.ended_at,
        counts=_counts(state),
        usage=state.usage,
    )


def _end_of_failure(err: ChildWorkflowError) -> WorkstreamEnd:
    cause = err.cause
    if isinstance(cause, ApplicationError) and cause.details:
        try:
            state = WorkstreamState.model_validate(cause.details[0])
        except ValueError:
            state = None
        if state is not None:
            end = _end_of(state)
            end.status = "rolled_back" if cause.type == "WorkstreamRolledBack" else "failed"
            end.reason = cause.message
            return end
    if isinstance(cause, CancelledError):
        return WorkstreamEnd(status="cancelled", reason="cancelled")
    if isinstance(cause, TerminatedError):
        return WorkstreamEnd(status="failed", reason="its workflow was terminated")
    if isinstance(cause, TemporalTimeoutError):
        return WorkstreamEnd(status="failed", reason="its workflow timed out")
    return WorkstreamEnd(status="failed", reason=innermost_message(err))


def innermost_message(err: BaseException) -> str:
    """The message of the deepest cause: why a workstream failed, not how it surfaced
    (e.g. "repo.path ... does not exist" rather than "Activity task failed")."""
    message = str(err)
    while err.__cause__ is not None:
        err = err.__cause__
        message = err.message if isinstance(err, FailureError) else str(err)
    return message
