"""WorkstreamWorkflow: one workstream's DAG of tasks, in one workspace.

Ready tasks start by priority, at most ``max_parallel`` at a time; each runs the task
lifecycle (:mod:`towline.workflows.task`) as a coroutine of this workflow. Tasks other
workstreams need are reported to the run as they finish, and upstream tasks of other
workstreams arrive as signals. A long workstream continues-as-new before its history
grows large, carrying only the tasks' states.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from towline.errors import hint_for
    from towline.plan import expressions
    from towline.plan.dag import Node, Scheduler
    from towline.state import (
        FINISHED,
        TOOL_USAGE_SIGNAL,
        WORKSTREAM_WORKFLOW,
        Answer,
        AnswerRequest,
        Budget,
        Decision,
        ErrorInfo,
        TaskState,
        TaskView,
        Usage,
        UsageReport,
        WaitingFor,
        WorkstreamEnd,
        WorkstreamInput,
        WorkstreamState,
    )
    from towline.workflows import affinity, metrics, observe
    from towline.workflows.task import (
        APPROVAL_ANSWERS,
        OPERATOR_ANSWERS,
        TaskEnv,
        prepare_workspace,
        rollback_task,
        run_task,
    )
    from towline.workflows.timers import wait_summary

T = TypeVar("T")

# Continue-as-new well before Temporal's 10k-event history guidance; each task costs
# about 6 events (activity scheduled, started, completed, and workflow task events).
MAX_HISTORY_EVENTS = 8_000

# The patch after which a stop ends the tasks that carry on after their cancel, and the
# waits for a budget.
STOP_ENDS_TASKS = "stop-ends-tasks"

# What a task's durable wait for a person waits for, as its timer says in the Web UI.
_WAITS_FOR = {"approval": "approval", "operator": "an operator", "answer": "an answer"}


@workflow.defn(name=WORKSTREAM_WORKFLOW)
class WorkstreamWorkflow:
    @workflow.init
    def __init__(self, inp: WorkstreamInput) -> None:
        self._inp = inp
        self._specs = {t.id: t for t in inp.spec.tasks}
        self._state = inp.carry or WorkstreamState(
            tasks={
                t.id: _reused(t.tool, inp.reuse[t.id], inp.retry_of)
                if t.id in inp.reuse
                else TaskState(tool=t.tool)
                for t in inp.spec.tasks
            }
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
        # Tasks that can never run because an upstream task failed before this started.
        self._blocked_at_start = self._sched.restore(outcomes)
        # Signals to the run still on their way, and the exports already reported.
        self._outbox: list[asyncio.Task[None]] = []
        # Runs since signals went in order send them one at a time, so the run never
        # hears an older state after a newer one (two signals in flight may overtake).
        self._queue: list[tuple[str, tuple[object, ...]]] = []
        self._sending = False
        self._reported: set[str] = set()
        # How this workstream ended, once it has; and whether the run is to hear it by
        # signal (it always is, unless it hears it from this workflow's result).
        self._end: WorkstreamEnd | None = None
        self._end_told = False
        self._asked = not inp.report_when_asked
        self._running: dict[str, asyncio.Task[None]] = {}
        self._stopping = False
        self._stopped = False
        self._changed = False
        self._affinity: affinity.Affinity | None = None
        self._paused = inp.paused
        self._budget = inp.budget
        # With a run-wide max_parallel, tasks in flight need slots from the run.
        self._slots = _Slots(held=inp.slots_held) if inp.run_slots else None
        # Answers people gave, and which answers each waiting task accepts right now.
        self._answers: dict[str, Decision] = {}
        self._accepting: dict[str, frozenset[str]] = {}
        self._waiting_told: tuple[str, ...] = ()
        self._usage_keys: set[str] = set()  # tool_usage reports already counted
        # Tasks at a wait they can be carried across a continue-as-new in.
        self._parked: set[str] = set()
        # Tasks carried across a continue-as-new while waiting for a person take answers
        # from the first moment, before their coroutines are back at the wait.
        for tid, t in self._state.tasks.items():
            if t.status == "waiting" and t.waiting_for in ("approval", "operator"):
                answers = APPROVAL_ANSWERS if t.waiting_for == "approval" else OPERATOR_ANSWERS
                self._accepting[tid] = answers

    @workflow.run
    async def run(self, inp: WorkstreamInput) -> WorkstreamState:
        st = self._state
        if st.status == "pending":
            st.status = "running"
            st.started_at = workflow.now()
        workspace = inp.workspace or ""
        self._affinity = affinity.for_workstream(inp, st)
        if self._affinity is not None:
            workspace = await self._affinity.hold(inp.restore)
            st.holding = self._affinity.holding
        elif not workspace and not inp.workspace_free:
            # A scratch folder in this workflow task, a clone or copy as an activity.
            workspace = await prepare_workspace(
                inp.workspace_of or inp.run_id,
                inp.spec,
                inp.plan_dir,
                local=inp.spec.repo is None,
            )
        env = TaskEnv(
            run_id=inp.run_id,
            workstream=inp.spec.id,
            workspace=workspace,
            plan_dir=inp.plan_dir,
            plan=inp.plan,
            defaults=(inp.spec.defaults, inp.plan_defaults),
            failure_policy=inp.failure_policy,
            breaker=inp.breaker,
            affinity=self._affinity,
        )
        for tid in inp.exports:  # reused (or carried) results other workstreams wait for
            if st.tasks[tid].status in FINISHED:
                self._report(tid)
        for tid, because in self._blocked_at_start:
            self._skip(tid, f"needs {because}, which did not succeed")
        for tid, t in st.tasks.items():  # carried across a continue-as-new while waiting
            if t.status == "waiting":
                self._sched.take(tid)
                self._start(tid, env)
        try:
            while await self._schedule(env):
                await self._signals_sent()
                await workflow.wait_condition(workflow.all_handlers_finished)
                if self._all_parked():  # no answer arrived meanwhile
                    self._continue_as_new(workspace)
        except asyncio.CancelledError:
            await self._stop_all("the run was cancelled")
            if inp.rollback == "auto":
                await self._saga(env)
            st.status, st.ended_at = "cancelled", workflow.now()
            self._asked = True  # a cancelled workflow's result says nothing of its tasks
            self._report_end("the run was cancelled")
            await self._report_exports()
            await self._ended_told()
            raise
        # Every task has ended: what follows (rollbacks, clean-up, the outcome) runs to
        # its end even if a cancel lands now. The work was done before the cancel.
        return await _to_the_end(self._finish(env))

    async def _finish(self, env: TaskEnv) -> WorkstreamState:
        """The workstream's end once every task has ended: the saga if it failed, clean-up,
        the exports, and its outcome (a failure carries the final state)."""
        inp, st = self._inp, self._state
        failed = [
            f"{tid} ({t.error.category if t.error else 'failed'})"
            for tid, t in st.tasks.items()
            if t.status == "failed"
        ]
        st.status = "failed" if failed else "succeeded"
        if failed and inp.rollback == "auto" and await self._roll_back(env):
            st.status = "rolled_back"
        st.ended_at = workflow.now()
        await self._clean_up(succeeded=not failed)
        done = ", rolled back" if st.status == "rolled_back" else ""
        why = f"workstream {inp.spec.id} failed: {', '.join(failed)}{done}" if failed else None
        self._report_end(why)
        await self._report_exports()
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self._ended_told()
        if why is not None:
            raise ApplicationError(
                why,
                st,  # the final state, as a success returns it (read by `towline status`)
                type="WorkstreamRolledBack" if st.status == "rolled_back" else "WorkstreamFailed",
                non_retryable=True,
            )
        return st

    async def _clean_up(self, *, succeeded: bool) -> None:
        """Remove the workspace as its ``repo.keep`` says (default: keep it on failure)."""
        inp = self._inp
        if inp.workspace_free:
            return
        arg = {
            "run_id": inp.workspace_of or inp.run_id,
            "workstream": inp.spec.id,
            "repo": inp.spec.repo,
            "succeeded": succeeded,
        }
        if self._affinity is not None:
            await self._affinity.clean_up(arg)
            return
        await self._workspace_activity(
            "cleanup_workspace",
            arg,
            result_type=bool,
            summary=f"clean up workspace of {inp.spec.id}",
            start_to_close_timeout=timedelta(minutes=10),
            retry_policy=RetryPolicy(maximum_attempts=5),
        )

    async def _workspace_activity(self, name: str, arg: object, **options: Any) -> Any:
        """Clean up the workspace: a local activity for a scratch folder.

        A scratch folder (no ``repo``) is made or removed in milliseconds, so it runs in
        the worker that runs this workflow, inside the same workflow task: no activity
        task to dispatch, no extra workflow task to carry on (saves two round trips per
        workstream). Clones and copies of a repository may take minutes: activities.
        """
        if self._inp.spec.repo is None:
            return await workflow.execute_local_activity(name, arg, **options)
        return await workflow.execute_activity(name, arg, **options)

    def _continue_as_new(self, workspace: str) -> None:
        """Carry the tasks' states (those waiting for a person included) to a new run."""
        workflow.continue_as_new(
            self._inp.model_copy(
                update={
                    "carry": self._state,
                    "upstream": self._upstream,
                    "workspace": workspace,
                    "paused": self._paused,
                    "budget": self._budget,
                    "slots_held": self._slots.held if self._slots else 0,
                    "report_when_asked": not self._asked,
                }
            )
        )

    def _report_end(self, reason: str | None) -> None:
        """Tell the run how this workstream ended (runs that continue-as-new hear of their
        workstreams this way, not by their workflows' results)."""
        if not self._inp.report_end:
            return
        st = self._state
        counts: dict[str, int] = {}
        for t in st.tasks.values():
            counts[t.status] = counts.get(t.status, 0) + 1
        self._end = WorkstreamEnd(
            status=st.status,
            reason=reason,
            started_at=st.started_at,
            ended_at=st.ended_at,
            counts=counts,
            usage=st.usage,
        )
        self._tell_end()

    def _tell_end(self) -> None:
        if self._end is not None and self._asked and not self._end_told:
            self._end_told = True
            self._signal_run("workstream_ended", self._inp.spec.id, self._end)

    async def _ended_told(self) -> None:
        """The last step: the end is on its way if the run asked for it, even if it asked
        after :meth:`_report_end` (an ask that lands while this workflow completes makes
        the server refuse the completion, and this step runs again with the ask heard)."""
        self._tell_end()
        await self._signals_sent()

    @workflow.signal(
        name="report_end",
        description="The run asks to hear this workstream's end by signal (it is about to "
        "continue-as-new)",
    )
    def report_end(self) -> None:
        self._asked = True
        self._tell_end()

    async def _saga(self, env: TaskEnv) -> bool:
        """Run the rollbacks to their end, even if a cancel lands meanwhile (the run's
        fail_fast stop, or a person's cancel): a saga cut short would leave the undone and
        the not-undone mixed, with tasks saying ``succeeded`` that were never undone."""
        return await _to_the_end(self._roll_back(env))

    async def _roll_back(self, env: TaskEnv) -> bool:
        """The saga: undo succeeded tasks that have a ``rollback:``, newest first.

        Returns True when at least one rollback ran and none failed.
        """
        done = [
            tid
            for tid, t in self._state.tasks.items()
            if t.status == "succeeded" and self._specs[tid].rollback is not None
        ]
        done.sort(key=lambda tid: self._state.tasks[tid].ended_at or workflow.now(), reverse=True)
        for tid in done:
            scope = self._scope(env)
            await rollback_task(self._specs[tid], self._state.tasks[tid], env, scope)
        return bool(done) and all(self._state.tasks[tid].rollback_error is None for tid in done)

    async def _schedule(self, env: TaskEnv) -> bool:
        """Run tasks until all are finished; True when it is time to continue-as-new.

        That time comes when history is long and every task in flight is parked (waiting
        for a person, the budget or a breaker): those are carried across, so one approval
        waiting for days does not hold up the rest of the workstream.
        """
        limit = self._inp.max_parallel
        while True:
            long = self._history_is_long()
            if not long and not self._stopping and not self._paused:
                room = limit if self._slots is None else min(limit, self._slots.held)
                while len(self._running) < room and (tid := self._sched.pop_ready()):
                    self._start(tid, env)
            if self._slots is not None:
                self._reconcile_slots(limit)
            if not self._running and (self._stopping or self._all_finished()):
                return False
            if long and not self._stopping and self._all_parked():
                return True
            self._changed = False
            await workflow.wait_condition(lambda: self._changed)

    def _all_parked(self) -> bool:
        """Every task in flight waits at a parked wait with no answer on its way."""
        return all(tid in self._parked and tid not in self._answers for tid in self._running)

    def _reconcile_slots(self, limit: int) -> None:
        """Hold as many of the run's slots as this workstream can use now; give back the rest."""
        assert self._slots is not None
        idle = self._stopping or self._paused or self._history_is_long()
        ready = 0 if idle else self._sched.ready_count()
        needed = min(limit, len(self._running) + ready)
        slots = self._slots
        if slots.held > needed:
            surplus = slots.held - max(needed, len(self._running))
            if surplus > 0:
                slots.held -= surplus
                self._signal_run("release_slots", self._inp.spec.id, surplus)
        want = max(0, needed - slots.held)
        if want != slots.asked:
            slots.asked = want
            self._signal_run("want_slots", self._inp.spec.id, want)

    def _signal_run(self, name: str, *args: object) -> None:
        """Signal the run; :meth:`_report_exports` waits for every one before the end.

        In order, one at a time; a state that replaces the last one (what waits, the
        slots wanted) replaces it in the queue too, if it has not gone yet.
        """
        if not self._inp.signals_in_order:
            run = workflow.get_external_workflow_handle(self._inp.run_id)
            self._outbox = [t for t in self._outbox if not t.done()]
            self._outbox.append(asyncio.create_task(run.signal(name, args=list(args))))
            return
        if name in _LATEST_ONLY:
            self._queue = [(n, a) for n, a in self._queue if n != name]
        self._queue.append((name, args))
        if not self._sending:
            self._sending = True
            self._outbox = [asyncio.create_task(self._send_queued())]

    async def _send_queued(self) -> None:
        run = workflow.get_external_workflow_handle(self._inp.run_id)
        try:
            while self._queue:
                name, args = self._queue.pop(0)
                try:
                    await run.signal(name, args=list(args))
                except FailureError:
                    workflow.logger.info("the run did not hear %s (it has ended)", name)
        finally:
            self._sending = False

    async def _signals_sent(self) -> None:
        """Wait until the run has every signal sent so far."""
        while self._outbox and not all(t.done() for t in self._outbox):
            await asyncio.gather(*self._outbox)

    @workflow.signal(name="slots")
    def slots(self, granted: int) -> None:
        """The run grants slots: tasks this workstream may have in flight."""
        if self._slots is not None:
            self._slots.held += granted
            self._slots.asked = max(0, self._slots.asked - granted)
            self._changed = True

    def _history_is_long(self) -> bool:
        info = workflow.info()
        return info.is_continue_as_new_suggested() or info.get_current_history_length() > (
            self._inp.max_history or MAX_HISTORY_EVENTS
        )

    def _all_finished(self) -> bool:
        return all(t.status in FINISHED for t in self._state.tasks.values())

    def _scope(self, env: TaskEnv) -> expressions.Scope:
        return expressions.Scope(run_id=env.run_id, workstream=env.workstream, lookup=self._lookup)

    def _start(self, tid: str, env: TaskEnv) -> None:
        self._running[tid] = asyncio.create_task(self._task(tid, env, self._scope(env)))

    async def _task(self, tid: str, env: TaskEnv, scope: expressions.Scope) -> None:
        state = self._state.tasks[tid]
        resumed = state.status == "waiting"
        try:
            with observe.task(env, self._specs[tid], state, resumed=resumed):
                await run_task(self._specs[tid], state, env, scope, self)
        finally:
            del self._running[tid]
            self._parked.discard(tid)
            self._changed = True
        if state.status == "failed" and self._inp.failure_policy in ("fail_fast", "pause"):
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
        # Since then a task that carries on after its cancel (its call had ended first)
        # ends, and a wait for the budget ends: nobody raises a stopped run's budget.
        self._stopped = workflow.patched(STOP_ENDS_TASKS)
        self._sched.stop()
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
        if tid in self._inp.exports and tid not in self._reported:
            self._reported.add(tid)
            t = self._state.tasks[tid]
            view = TaskView(status=t.status, outputs=t.outputs)
            self._signal_run("task_finished", f"{self._inp.spec.id}.{tid}", view)

    async def _report_exports(self) -> None:
        """Report every finished export, and wait until the run has them all.

        The run must hear of each export before it hears that this workflow ended.
        """
        for tid in self._inp.exports:
            if self._state.tasks[tid].status in FINISHED:
                self._report(tid)
        await self._signals_sent()

    def _lookup(self, ref: str) -> tuple[str, dict[str, object]] | None:
        if "." in ref:
            view = self._upstream.get(ref)
            return (view.status, view.outputs) if view else None
        t = self._state.tasks.get(ref)
        return (t.status, t.outputs) if t and t.status in FINISHED else None

    # ------------------------------------------------------------ people (TaskControl)

    def set_waiting(self, tid: str, waiting_for: WaitingFor | None, reason: str | None) -> None:
        t = self._state.tasks[tid]
        metrics.waiting(t.waiting_for, waiting_for, task=tid)
        t.waiting_for, t.reason = waiting_for, reason
        if waiting_for is not None:
            t.status = "waiting"
        elif t.status == "waiting":
            t.status = "running"
        self._tell_run_waiting()

    async def answer(
        self, tid: str, answers: frozenset[str], timeout: timedelta | None
    ) -> Decision | None:
        self._accepting[tid] = answers
        what = _WAITS_FOR.get(self._state.tasks[tid].waiting_for or "answer", "an answer")
        try:
            with self.parked(tid):
                await workflow.wait_condition(
                    lambda: tid in self._answers,
                    timeout=timeout,
                    timeout_summary=wait_summary(tid, what, timeout) if timeout else None,
                )
        except TimeoutError:
            return None
        except asyncio.CancelledError:
            # An answer given in the same moment as the cancel is still recorded.
            if tid in self._answers:
                self._state.tasks[tid].decisions.append(self._answers.pop(tid))
            raise
        finally:
            self._accepting.pop(tid, None)
        return self._answers.pop(tid)

    async def within_budget(self, tid: str, *, parkable: bool = True) -> ErrorInfo | None:
        if self._budget is None or not (why := self._budget.exhausted()):
            return None
        if self._budget.on_exceed == "fail" or self._stopped:
            return ErrorInfo(category="budget", message=why, hint=hint_for("budget"))
        self.set_waiting(
            tid, "budget", f"{why}; raise it: towline resume {self._inp.run_id} --raise-budget ..."
        )
        with self.parked(tid) if parkable else contextlib.nullcontext():
            await workflow.wait_condition(
                lambda: self._budget is None or self._budget.exhausted() is None or self._stopped
            )
        self.set_waiting(tid, None, None)
        if self._stopped and self._budget is not None and (why := self._budget.exhausted()):
            return ErrorInfo(category="budget", message=why, hint=hint_for("budget"))
        return None

    @contextlib.contextmanager
    def parked(self, tid: str) -> Iterator[None]:
        self._parked.add(tid)
        self._changed = True
        try:
            yield
        finally:
            self._parked.discard(tid)

    def stopping(self) -> bool:
        return self._stopping

    def stopped(self) -> bool:
        return self._stopped

    def current_budget(self) -> Budget | None:
        return self._budget

    def spent(self, usage: Usage) -> None:
        # Counted here at once, so the next task sees it before the run's answer arrives.
        if self._budget is not None:
            self._budget.spent = self._budget.spent.add(usage)
        if self._inp.report_end:
            # Engine-2 runs: told only when they keep a budget; the end reports the rest.
            if self._inp.report_usage or self._budget is not None:
                self._signal_run("workstream_usage", self._inp.spec.id, usage)
        else:
            self._signal_run("usage", usage)

    @workflow.signal(name=TOOL_USAGE_SIGNAL)
    def tool_usage(self, report: UsageReport) -> None:
        """A tool call's attempt that failed or was cancelled tells what it spent."""
        if report.key in self._usage_keys:
            return
        self._usage_keys.add(report.key)
        t = self._state.tasks.get(report.task)
        if t is not None:
            t.usage = t.usage.add(report.usage)
            self.spent(report.usage)

    @workflow.signal(name="budget")
    def budget(self, budget: Budget) -> None:
        """The run's budget changed (spent by a task, or raised by a person)."""
        if self._budget is not None:
            # What this workstream spent may not have reached the run yet: keep the larger.
            mine = self._budget.spent
            budget.spent = Usage(
                tokens=max(mine.tokens, budget.spent.tokens),
                cost_usd=max(mine.cost_usd, budget.spent.cost_usd),
            )
        self._budget = budget

    def _tell_run_waiting(self) -> None:
        """Let the run know which tasks wait for what, so its status says ``waiting``."""
        waiting = tuple(
            f"{tid}: {t.waiting_for}" for tid, t in self._state.tasks.items() if t.waiting_for
        )
        if waiting != self._waiting_told:
            self._waiting_told = waiting
            self._signal_run("workstream_waiting", self._inp.spec.id, list(waiting))

    def _accept(self, answer: Answer, req: AnswerRequest) -> str:
        self._answers[req.task] = Decision(
            answer=answer, by=req.by, at=workflow.now(), note=req.note
        )
        return f"{answer}: {self._inp.spec.id}.{req.task}"

    def _check(self, answer: Answer, req: AnswerRequest) -> None:
        t = self._state.tasks.get(req.task)
        if t is None:
            raise ValueError(f"unknown task '{req.task}' in workstream {self._inp.spec.id}")
        if answer not in self._accepting.get(req.task, ()) or req.task in self._answers:
            what = f"waiting for {t.waiting_for}" if t.waiting_for else t.status
            raise ValueError(f"task {self._inp.spec.id}.{req.task} cannot take '{answer}' ({what})")

    @workflow.update(name="approve")
    def approve(self, req: AnswerRequest) -> str:
        """Approve a task waiting for approval: {"task": "deploy", "by": "ana"}."""
        return self._accept("approve", req)

    @approve.validator
    def _approve_ok(self, req: AnswerRequest) -> None:
        self._check("approve", req)

    @workflow.update(name="reject")
    def reject(self, req: AnswerRequest) -> str:
        """Reject a task waiting for approval: it fails and does not run."""
        return self._accept("reject", req)

    @reject.validator
    def _reject_ok(self, req: AnswerRequest) -> None:
        self._check("reject", req)

    @workflow.update(name="retry")
    def retry(self, req: AnswerRequest) -> str:
        """Run a failed task waiting for an operator again."""
        return self._accept("retry", req)

    @retry.validator
    def _retry_ok(self, req: AnswerRequest) -> None:
        self._check("retry", req)

    @workflow.update(name="skip")
    def skip(self, req: AnswerRequest) -> str:
        """Skip a failed task waiting for an operator (its dependents are skipped)."""
        return self._accept("skip", req)

    @skip.validator
    def _skip_ok(self, req: AnswerRequest) -> None:
        self._check("skip", req)

    @workflow.update(name="abort")
    def abort(self, req: AnswerRequest) -> str:
        """Fail a task waiting for an operator."""
        return self._accept("abort", req)

    @abort.validator
    def _abort_ok(self, req: AnswerRequest) -> None:
        self._check("abort", req)

    @workflow.signal(name="answer", description="An answer given to the run for a task here")
    def answer_from_run(self, answer: Answer, req: AnswerRequest) -> None:
        """An answer a person gave the run (its update of the same name) for a task here."""
        try:
            self._check(answer, req)
        except ValueError as e:
            workflow.logger.info("an answer the run passed on came too late: %s", e)
            return
        self._accept(answer, req)
        self._changed = True

    @workflow.signal(name="pause")
    def pause(self, by: str) -> None:
        """Start no new tasks until resumed; running ones finish."""
        self._paused = True
        self._state.reason = f"paused by {by}"

    @workflow.signal(name="resume")
    def resume(self, by: str) -> None:
        self._paused = False
        self._state.reason = None
        self._changed = True

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


async def _to_the_end(work: Coroutine[Any, Any, T]) -> T:
    """Await ``work`` to its end: a cancel of the caller meanwhile is absorbed (a cancel is
    delivered once, so nothing else is lost by it)."""
    task = asyncio.create_task(work)
    while True:
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.done():
                return task.result()
            me = asyncio.current_task()
            if me is not None:
                me.uncancel()


# Signals that say a state: only the latest one matters.
_LATEST_ONLY = frozenset({"workstream_waiting", "want_slots"})


@dataclass
class _Slots:
    held: int = 0  # granted by the run and not given back
    asked: int = 0  # asked for and not yet granted


def _reused(tool: str, view: TaskView, retry_of: str | None) -> TaskState:
    """A task that succeeded in the run being retried: done, with its recorded outputs."""
    return TaskState(
        tool=tool, status="succeeded", outputs=view.outputs, reason=f"reused from run {retry_of}"
    )
