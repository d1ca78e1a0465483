"""The task lifecycle, run inside its workstream's workflow.

A task evaluates its ``if:``, waits for its approval, resolves the expressions in its
``with``, and calls its tool: an activity with the task's timeout and retry policy
(Temporal does the retrying), or a durable timer for ``wait``. A call that failed for good
goes to the task's recovery strategy (``on_failure``). Every wait for a person is a durable
``wait_condition`` (with a timer when it has a timeout): a worker crash loses no decision.
The outcome lands in the task's :class:`TaskState`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    RetryState,
    TimeoutError,
    TimeoutType,
)
from temporalio.workflow import ActivityCancellationType

from towline.catalogue import facts
from towline.durations import parse_duration
from towline.errors import CATEGORIES, NON_RETRYABLE, hint_for
from towline.plan import effective, expressions
from towline.plan.spec import (
    BreakerSpec,
    Defaults,
    FailurePolicy,
    OnFailureSpec,
    RetrySpec,
    TaskSpec,
    WorkstreamSpec,
)
from towline.state import (
    FINISHED,
    Budget,
    Decision,
    ErrorInfo,
    Status,
    TaskState,
    Usage,
    WaitingFor,
)
from towline.toolcall import ToolCall, ToolContext
from towline.workflows import agent, breaker, polling
from towline.workflows.affinity import Affinity, execute_tool
from towline.workflows.timers import wait_summary

# A tool heartbeats every second while it runs; a worker that stops doing so has died,
# and the attempt is retried elsewhere after this long.
HEARTBEAT_TIMEOUT = timedelta(seconds=20)


async def prepare_workspace(run_id: str, ws: WorkstreamSpec, plan_dir: str, *, local: bool) -> str:
    """Make a workstream's workspace ready (activities/workspace.py); return its path.

    ``local``: as a local activity, inside the calling workflow task (a scratch folder
    is made in milliseconds). A clone may take minutes, and a repo that cannot be had
    (a bad ref, a missing path) is not retried.
    """
    arg = {"run_id": run_id, "workstream": ws.id, "repo": ws.repo, "plan_dir": plan_dir}
    options: dict[str, Any] = {
        "result_type": str,
        "summary": f"workspace for {ws.id}",
        "start_to_close_timeout": timedelta(minutes=30),
        "retry_policy": RetryPolicy(maximum_attempts=5, non_retryable_error_types=["validation"]),
    }
    if local:
        path: str = await workflow.execute_local_activity("prepare_workspace", arg, **options)
    else:
        path = await workflow.execute_activity("prepare_workspace", arg, **options)
    return path


def needs_workspace(spec: WorkstreamSpec, plan_defaults: Defaults) -> bool:
    """Whether the workstream's tasks need a workspace folder at all."""
    if spec.repo is not None:
        return True
    tools = {t.tool for t in spec.tasks}
    tools.update(t.rollback.tool for t in spec.tasks if t.rollback is not None)
    failures = [t.on_failure for t in spec.tasks]
    failures += [spec.defaults.on_failure, plan_defaults.on_failure]
    tools.update(f.fix.tool for f in failures if f is not None and f.fix is not None)
    return any(facts(t).workspace for t in tools)


@dataclass(frozen=True)
class TaskEnv:
    """What every task of a workstream shares."""

    run_id: str
    workstream: str
    workspace: str
    plan_dir: str
    defaults: tuple[Defaults, ...]  # the workstream's, then the plan's
    plan: str = ""  # the plan's name
    failure_policy: FailurePolicy = "fail_fast"
    breaker: BreakerSpec = dataclasses.field(default_factory=BreakerSpec)  # settings.breaker
    affinity: Affinity | None = None  # the worker holding the workspace gets its calls


def attempt_timeout(spec: TaskSpec, env: TaskEnv) -> timedelta:
    limit = effective.timeout(spec, env.defaults)
    if limit == "auto":
        # towline.starter.api.start_run turns auto into a duration from the run history.
        raise ApplicationError(
            f"task {env.workstream}.{spec.id}: timeout 'auto' reached the workflow unresolved; "
            "start runs with towline's starter (towline run, or starter.api.start_run)",
            type="validation",
            non_retryable=True,
        )
    return limit


def retry_spec(spec: TaskSpec, env: TaskEnv) -> RetrySpec:
    return effective.retry(spec, env.defaults)


def on_failure(spec: TaskSpec, env: TaskEnv) -> OnFailureSpec:
    return effective.on_failure(spec, env.defaults, env.failure_policy)


def retry_policy(retry: RetrySpec) -> RetryPolicy:
    return RetryPolicy(
        maximum_attempts=retry.max_attempts,
        initial_interval=retry.initial_interval,
        backoff_coefficient=retry.backoff,
        maximum_interval=max(retry.max_interval, retry.initial_interval),
        non_retryable_error_types=list(NON_RETRYABLE),
    )


class TaskControl(Protocol):
    """What the workstream offers a running task: waiting for people, and answers."""

    def set_waiting(self, tid: str, waiting_for: WaitingFor | None, reason: str | None) -> None: ...

    async def answer(
        self, tid: str, answers: frozenset[str], timeout: timedelta | None
    ) -> Decision | None:
        """Wait (parked) for a person's answer; None when ``timeout`` passes first."""
        ...

    async def within_budget(self, tid: str, *, parkable: bool = True) -> ErrorInfo | None:
        """Wait while the run's budget is spent; an error if the plan says to fail instead.

        ``parkable``: the wait may be carried across a continue-as-new (the task then
        resumes before its main call, so a fix call's wait is not)."""
        ...

    def spent(self, usage: Usage) -> None:
        """Tell the run what a call cost."""
        ...

    def current_budget(self) -> Budget | None:
        """The run's budget as the workstream knows it now (an agent is told changes)."""
        ...

    def parked(self, tid: str) -> contextlib.AbstractContextManager[None]:
        """Mark a wait the task may be carried across a continue-as-new in: it resumes
        by starting that wait again (its deadline kept in the task's state)."""
        ...

    def stopping(self) -> bool:
        """The workstream is stopping (fail_fast, cancellation): start nothing new."""
        ...

    def stopped(self) -> bool:
        """The workstream has stopped its tasks, and a task that carries on all the same
        (its call had ended before the cancel reached it) ends instead of trying again."""
        ...


APPROVAL_ANSWERS = frozenset({"approve", "reject"})
OPERATOR_ANSWERS = frozenset({"retry", "skip", "abort"})
# What a failure may carry into workflow state, history and query answers: the tail of a
# tool's output and its message. Larger outputs go to the store by reference.
MAX_ERROR_OUTPUT = 4 * 1024
MAX_ERROR_MESSAGE = 2 * 1024


async def run_task(
    spec: TaskSpec, state: TaskState, env: TaskEnv, scope: expressions.Scope, ctl: TaskControl
) -> None:
    """Run one task to a final status in ``state``. Only cancellation propagates.

    The order: ``if:``, then approval, then the tool (Temporal retries each call by the
    task's retry policy); a call that failed for good goes to the ``on_failure`` strategy,
    which may pause for an operator, run a fix call and try again, skip, or fail.

    A task carried across a continue-as-new while it waited (``state.status`` is
    ``waiting``) resumes that wait: for its approval, for an operator, or before its call
    (budget, breaker).
    """
    resumed = state.waiting_for if state.status == "waiting" else None
    if resumed is None:
        state.started_at = workflow.now()
    try:
        if resumed is None and spec.if_ is not None and not expressions.evaluate(spec.if_, scope):
            _end(state, "skipped", reason=f"condition is false: {spec.if_}")
            return
        if resumed in (None, "approval") and spec.approval is not None and spec.approval.required:
            decision = await _approval(spec, state, ctl, env, resume=resumed == "approval")
            if decision.answer == "reject":
                note = f": {decision.note}" if decision.note else ""
                error = ErrorInfo(
                    category="cancelled",
                    message=f"rejected by {decision.by}{note}",
                    hint="the task was not approved; retry the run to ask again",
                )
                _end(state, "failed", error=error)
                return
        await _run_with_recovery(
            spec, state, env, scope, ctl, resume_operator=resumed == "operator"
        )
    except expressions.ExpressionError as e:
        _end(
            state,
            "failed",
            error=ErrorInfo(category="validation", message=str(e), hint=hint_for("validation")),
        )
    except asyncio.CancelledError:
        ctl.set_waiting(spec.id, None, None)
        if state.status not in FINISHED:  # a call that succeeded before the cancel stays so
            _end(state, "cancelled")
        raise


def _deadline(timeout: timedelta | None) -> datetime | None:
    return workflow.now() + timeout if timeout is not None else None


def _remaining(deadline: datetime | None) -> timedelta | None:
    """What is left of a wait's timeout (at least a millisecond: a timer must be positive)."""
    if deadline is None:
        return None
    return max(deadline - workflow.now(), timedelta(milliseconds=1))


async def _approval(
    spec: TaskSpec, state: TaskState, ctl: TaskControl, env: TaskEnv, *, resume: bool
) -> Decision:
    approval = spec.approval
    assert approval is not None
    if not resume:
        ref = f"{env.workstream}.{spec.id}"
        state.wait_deadline = _deadline(approval.timeout)
        ctl.set_waiting(
            spec.id, "approval", f"waiting for approval: towline approve|reject {env.run_id} {ref}"
        )
    decision = await ctl.answer(spec.id, APPROVAL_ANSWERS, _remaining(state.wait_deadline))
    if decision is None:
        decision = Decision(
            answer=approval.on_timeout, by="timeout", at=workflow.now(), note="no answer in time"
        )
    state.decisions.append(decision)
    state.wait_deadline = None
    ctl.set_waiting(spec.id, None, None)
    return decision


async def _run_with_recovery(
    spec: TaskSpec,
    state: TaskState,
    env: TaskEnv,
    scope: expressions.Scope,
    ctl: TaskControl,
    *,
    resume_operator: bool = False,
) -> None:
    strategy = on_failure(spec, env)
    after_fix = False
    if resume_operator:
        assert state.error is not None
        if await _ask_operator(spec, state, env, ctl, strategy, state.error, resume=True):
            return
    while True:
        if state.error is not None and ctl.stopped():
            # Its call had ended when the stop came, and it would try again: it ends.
            _end(state, "failed", error=state.error)
            return
        args = expressions.resolve(spec.with_, scope)
        state.status, state.error, state.reason = "running", None, None
        # Behind an open circuit breaker the task waits instead of spending its retries.
        target = breaker.breaker_target(spec.tool, args, commands=env.breaker.commands)
        if await breaker.guard(
            target,
            env.breaker,
            lambda reason: ctl.set_waiting(spec.id, "breaker", reason),
            task=spec.id,
            parked=lambda: ctl.parked(spec.id),
        ):
            ctl.set_waiting(spec.id, None, None)
        if facts(spec.tool).usage and (over := await ctl.within_budget(spec.id)):
            _end(state, "failed", error=over)
            return
        state.runs += 1
        error = await _call(spec.tool, args, spec, state, env, label=spec.tool, main=True, ctl=ctl)
        if after_fix:  # whether an agent's fix worked: remembered for later failures
            await agent.verdict(strategy, spec, state, env, fixed=error is None)
        if error is None:
            # Succeeded, whatever happens next: a cancel landing during the breaker's
            # report must not make it "cancelled" (and skip its rollback).
            _end(state, "succeeded")
        else:
            state.error = error
        await breaker.report(
            target, breaker.outcome(error.category if error else None), env.breaker, task=spec.id
        )
        if error is None:
            return
        if ctl.stopping():
            # The workstream stops (fail_fast, cancel): no recovery starts anything new.
            _end(state, "failed", error=error)
            return
        kind = strategy.strategy
        if kind == "skip":
            _end(state, "skipped", reason=f"failed ({error.category}), skipped by on_failure")
            return
        if kind == "pause":
            if await _ask_operator(spec, state, env, ctl, strategy, error, resume=False):
                return
            continue
        if kind in ("fix", "resolve") and strategy.fix is not None:
            if await _fix(spec, state, env, scope, ctl, strategy, error):
                after_fix = True
                continue
            return
        _end(state, "failed", error=error)
        return


async def _ask_operator(
    spec: TaskSpec,
    state: TaskState,
    env: TaskEnv,
    ctl: TaskControl,
    strategy: OnFailureSpec,
    error: ErrorInfo,
    *,
    resume: bool,
) -> bool:
    """Wait for an operator's answer to a failed task; True when the task has ended
    (skipped or failed), False to run it again."""
    answer = await _operator(spec, state, env, ctl, strategy, resume=resume)
    if answer == "retry":
        return False
    if answer == "skip":
        _end(state, "skipped", reason="skipped by an operator after it failed")
    else:
        _end(state, "failed", error=error)
    return True


async def _fix(
    spec: TaskSpec,
    state: TaskState,
    env: TaskEnv,
    scope: expressions.Scope,
    ctl: TaskControl,
    strategy: OnFailureSpec,
    error: ErrorInfo,
) -> bool:
    """Run the task's fix call; True to run the task again, False when it has ended."""
    assert strategy.fix is not None
    if strategy.strategy == "resolve" and error.category != "conflict":
        _end(state, "failed", error=error)
        return False
    if state.fixes >= strategy.max_fixes:
        error.message += f" (still failing after {state.fixes} fix(es))"
        _end(state, "failed", error=error)
        return False
    if facts(strategy.fix.tool).usage and (
        over := await ctl.within_budget(spec.id, parkable=False)
    ):
        error.message += f"; no fix was tried: {over.message}"
        _end(state, "failed", error=error)
        return False
    state.fixes += 1
    fix_scope = dataclasses.replace(
        scope,
        failure={
            "category": error.category,
            "message": error.message,
            "output": error.output or "",
        },
    )
    fix_args = expressions.resolve(strategy.fix.with_, fix_scope)
    fix_error = await _call(
        strategy.fix.tool, fix_args, spec, state, env, label=f"fix {state.fixes}", ctl=ctl
    )
    if fix_error is not None:
        error.message += f"; the fix call failed: {fix_error.message}"
        _end(state, "failed", error=error)
        return False
    return True


async def _operator(
    spec: TaskSpec,
    state: TaskState,
    env: TaskEnv,
    ctl: TaskControl,
    strategy: OnFailureSpec,
    *,
    resume: bool,
) -> str:
    if not resume:
        ref = f"{env.workstream}.{spec.id}"
        state.status = "waiting"
        state.wait_deadline = _deadline(strategy.timeout)
        ctl.set_waiting(
            spec.id,
            "operator",
            f"failed; waiting for an operator: towline retry|skip|abort {env.run_id} {ref}",
        )
    decision = await ctl.answer(spec.id, OPERATOR_ANSWERS, _remaining(state.wait_deadline))
    if decision is None:
        decision = Decision(
            answer=strategy.default or "abort",
            by="timeout",
            at=workflow.now(),
            note="no answer in time",
        )
    state.decisions.append(decision)
    state.wait_deadline = None
    ctl.set_waiting(spec.id, None, None)
    return decision.answer


async def _call(
    tool: str,
    args: dict[str, Any],
    spec: TaskSpec,
    state: TaskState,
    env: TaskEnv,
    *,
    label: str,
    main: bool = False,
    ctl: TaskControl | None = None,
) -> ErrorInfo | None:
    """Call a tool for the task; None on success, else why it failed for good.

    Every attempt's usage is counted, a failed one's too (it travels in the failure, or
    in the last heartbeat of an attempt that timed out). A call cancelled with its
    workstream raises ``CancelledError``, also when the tool's worker died after the
    cancel (the attempt then ends by timeout, with ``retry_state`` CANCEL_REQUESTED).
    """
    retry = retry_spec(spec, env)
    if facts(tool).child_workflow:  # the agent: a conversation in a workflow of its own
        timeout = attempt_timeout(spec, env)
        failed, outputs = await agent.run_agent(
            args, spec, state, env, main=main, timeout=timeout, ctl=ctl
        )
        if main:
            state.outputs = outputs
            state.attempts += 1
        else:
            state.fix_outputs = outputs
        return failed
    try:
        if facts(tool).in_workflow:
            if (failed := await _run_in_workflow(spec, args)) is not None:
                return failed
            if main:
                state.attempts += 1
            return None
        result = await execute_tool(
            env.affinity,
            tool,
            ToolCall(
                context=ToolContext(
                    run_id=env.run_id,
                    workstream=env.workstream,
                    task=spec.id,
                    workspace=env.workspace,
                    plan_dir=env.plan_dir,
                    plan=env.plan,
                ),
                args=args,
                cache=spec.cache if main else None,
            ),
            task_queue=facts(tool).queue(workflow.info().task_queue),
            activity_id=_activity_id(spec.id, state, label, main),
            summary=f"{spec.id}: {tool}" if main else f"{spec.id}: {label} ({tool})",
            start_to_close_timeout=attempt_timeout(spec, env),
            heartbeat_timeout=HEARTBEAT_TIMEOUT,
            # A call that waits by polling (pr with wait:) retries until its deadline.
            **(polling.options(tool, args) or {"retry_policy": retry_policy(retry)}),
            cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )
    except ActivityError as e:
        failure = _failure(e, retry.max_attempts)
        # What the call's attempts spent reached the workstream by the tool_usage signal;
        # only what could not be sent, or a dead attempt's last heartbeat, comes here.
        _count_usage(state, failure.usage, ctl)
        if _cancelled(e):
            raise asyncio.CancelledError from e
        if main:
            state.outputs = failure.outputs
            state.attempts += failure.attempts
        return failure.error
    _count_usage(state, result.usage, ctl)
    if main:
        state.outputs = result.outputs
        state.attempts += max(result.attempt, 1)
        state.cached = result.cached
    return None


def _cancelled(err: ActivityError) -> bool:
    """The call ended because it was cancelled: a cancellation, or a timeout after the
    cancel (its worker had died)."""
    return isinstance(err.cause, CancelledError) or err.retry_state == RetryState.CANCEL_REQUESTED


def _count_usage(state: TaskState, usage: Usage, ctl: TaskControl | None) -> None:
    if not (usage.tokens or usage.cost_usd):
        return
    state.usage = state.usage.add(usage)
    if ctl is not None:
        ctl.spent(usage)


def _activity_id(tid: str, state: TaskState, label: str, main: bool) -> str:
    """Readable, unique activity ids: ``apply``, ``apply#2``, ``apply.fix1``."""
    if main:
        return tid if state.runs <= 1 else f"{tid}#{state.runs}"
    return f"{tid}.{label.replace(' ', '')}"


async def rollback_task(
    spec: TaskSpec, state: TaskState, env: TaskEnv, scope: expressions.Scope
) -> None:
    """Run a succeeded task's ``rollback:`` call; it ends ``rolled_back`` if that worked."""
    if spec.rollback is None or state.status != "succeeded":
        return
    try:
        args = expressions.resolve(spec.rollback.with_, scope)
    except expressions.ExpressionError as e:
        state.rollback_error = ErrorInfo(
            category="validation", message=str(e), hint=hint_for("validation")
        )
        return
    error = await _call(spec.rollback.tool, args, spec, state, env, label="rollback")
    if error is None:
        state.status, state.reason = "rolled_back", "rolled back"
    else:
        state.rollback_error = error


async def _run_in_workflow(spec: TaskSpec, args: dict[str, Any]) -> ErrorInfo | None:
    """A tool run by the workflow itself; why it failed (a bad input known only now)."""
    if spec.tool == "wait":
        try:
            delay = parse_duration(args.get("for", ""))
        except ValueError as e:  # e.g. an expression that resolved to no duration
            return ErrorInfo(
                category="validation", message=f"with.for: {e}", hint=hint_for("validation")
            )
        await workflow.sleep(delay, summary=wait_summary(spec.id, "time to pass", delay))
    return None


def _end(
    state: TaskState, status: Status, *, reason: str | None = None, error: ErrorInfo | None = None
) -> None:
    state.status = status
    state.waiting_for = None
    state.wait_deadline = None
    if reason is not None:
        state.reason = reason
    if error is not None:
        state.error = error
    state.ended_at = workflow.now()


@dataclass(frozen=True)
class _Failure:
    error: ErrorInfo
    attempts: int
    outputs: dict[str, Any]
    usage: Usage


def _failure(err: ActivityError, max_attempts: int) -> _Failure:
    """The category, message, attempt count and usage of an activity that failed for good."""
    cause = err.cause
    exhausted = err.retry_state == RetryState.MAXIMUM_ATTEMPTS_REACHED
    if isinstance(cause, ApplicationError):
        details = cause.details[0] if cause.details and isinstance(cause.details[0], dict) else {}
        category = cause.type if cause.type in CATEGORIES else "system"
        attempt = details.get("attempt") or (max_attempts if exhausted else 1)
        info = _bounded(
            ErrorInfo(
                category=category,
                message=cause.message,
                hint=details.get("hint") or hint_for(category),
                output=details.get("output"),
            )
        )
        usage = _usage_of(details.get("usage"))
        return _Failure(info, int(attempt), dict(details.get("outputs") or {}), usage)
    if isinstance(cause, TimeoutError):
        beat = cause.last_heartbeat_details
        output = beat[0] if beat and isinstance(beat[0], str) else None
        if cause.type == TimeoutType.HEARTBEAT:
            message = "the worker running the tool stopped responding (no heartbeat)"
        else:
            kind = cause.type.name.lower() if cause.type else "timeout"
            message = f"the attempt ran past its timeout ({kind})"
        info = _bounded(
            ErrorInfo(category="timeout", message=message, hint=hint_for("timeout"), output=output)
        )
        usage = _usage_of(beat[1] if beat and len(beat) > 1 else None)
        return _Failure(info, max_attempts if exhausted else 1, {}, usage)
    message = str(cause or err)
    return _Failure(
        _bounded(ErrorInfo(category="system", message=message, hint=hint_for("system"))),
        1,
        {},
        Usage(),
    )


def _usage_of(value: Any) -> Usage:
    """Usage as a tool reports it with a failure or a heartbeat (``{tokens, cost_usd}``)."""
    if isinstance(value, dict):
        try:
            return Usage.model_validate(value)
        except ValueError:
            return Usage()
    return Usage()


def _bounded(info: ErrorInfo) -> ErrorInfo:
    """The error with its message and output tail cut to what state may carry."""
    message = info.message
    if len(message) > MAX_ERROR_MESSAGE:
        message = message[: MAX_ERROR_MESSAGE - 20] + " ... (message cut)"
    output = info.output
    if output is not None and len(output) > MAX_ERROR_OUTPUT:
        output = output[-MAX_ERROR_OUTPUT:]
    return info.model_copy(update={"message": message, "output": output})
