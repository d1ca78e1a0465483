"""Circuit breakers: one per tool target, shared by every worker, surviving restarts.

A target is what a tool call depends on outside towline: a command's program
(``shell:make``), an HTTP host (``http:api.example.com``), an LLM endpoint
(``llm:localhost:8080``), an MCP server (``mcp:my-server``). Each target's breaker is a
small entity workflow, :class:`BreakerWorkflow` (id ``towline-breaker/<queue>/<target>``),
so its state lives in Temporal: every worker sees the same breaker, and a restart loses
nothing. After ``settings.breaker.failures`` consecutive failed tasks on a target its
breaker opens; tasks on that target then wait (``waiting``, with the reason) instead of
spending their retries. When the cooldown has passed, one probe task is let through: its
success closes the breaker, its failure opens it again.

Task code reaches a breaker through two activities (a workflow cannot update-with-start
another workflow), wrapped here by :func:`guard` and :func:`report`. They are local
activities: each is one or two short calls to the server, and as regular activities they
cost a task several times as much (measured on a chain of 50 tasks on the dev server:
+10 to +35 ms per task, against about +120 ms). Healthy targets cost least: a closed
breaker answers from a query, and a success it would ignore is not sent.

The state machine itself is pure functions (:func:`admit`, :func:`record`,
:func:`cool_down`), so unit tests drive it directly and the workflow only applies them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, CancelledError

from towline.catalogue import facts
from towline.plan.spec import BreakerSpec
from towline.workflows import metrics
from towline.workflows.timers import span, wait_summary

BREAKER_WORKFLOW = "BreakerWorkflow"
ACQUIRE_ACTIVITY = "breaker_acquire"
REPORT_ACTIVITY = "breaker_report"

BreakerStatus = Literal["closed", "open", "half_open"]

# Categories that say the target itself failed (it crashed, hung, or was unreachable).
FAILURE_CATEGORIES = frozenset({"tool", "timeout", "system"})
# Categories that say the target answered, and its answer was "no": it works.
ANSWER_CATEGORIES = frozenset({"test_failed", "conflict"})

# A breaker with no open cooldown that hears nothing for this long ends; the next call
# starts a fresh (closed) one. Keeps idle breakers from running forever.
IDLE_AFTER = timedelta(hours=24)
# Continue-as-new well before Temporal's history guidance; each acquire or report is a
# handful of events.
MAX_HISTORY_EVENTS = 2_000
_REMEMBERED_REPORTS = 100  # report ids kept to drop a report delivered twice
_CALL_TIMEOUT = timedelta(seconds=30)
_CALL_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=10,
)
_MIN_SLEEP = timedelta(seconds=1)
# The llm tool's default base_url (a unit test keeps the two equal). Workflow code does
# not import the tool modules, which pull in HTTP clients.
_LLM_DEFAULT_BASE_URL = "https://api.openai.com/v1"


def breaker_workflow_id(queue: str, target: str) -> str:
    """The breaker's workflow id. Scoped by task queue: the workers polling a queue share
    its breakers, and a breaker never sits on a queue nobody polls any more."""
    return f"towline-breaker/{queue}/{target}"


# ---------------------------------------------------------------------------- targets


def breaker_target(tool: str, args: Mapping[str, Any], *, commands: bool = True) -> str | None:
    """The target a tool call depends on, or None for tools that call nothing outside.

    ``shell`` and ``test_gate``: the command's program (``shell:make``); ``http``: the URL's
    host (``http:api.example.com``, with the port when given); ``llm``: the endpoint's
    host (``llm:localhost:8080``); ``mcp``: the server's program or host
    (``mcp:my-server``). ``echo``, ``wait``, patches and git have no breaker; commands
    only when the plan asks (``settings.breaker.commands``).
    """
    kind = facts(tool).breaker
    if kind == "command":
        if not commands:
            return None
        program = _program(args.get("command"))
        return f"shell:{program}" if program else None
    if kind == "host":
        url = args.get("base_url", _LLM_DEFAULT_BASE_URL) if tool == "llm" else args.get("url")
        host = _host(url)
        return f"{tool}:{host}" if host else None
    if kind == "mcp":
        if args.get("url") is not None:
            host = _host(args["url"])
            return f"mcp:{host}" if host else None
        program = _program(args.get("command"))
        return f"mcp:{program}" if program else None
    return None


def _program(command: Any) -> str | None:
    """The program a command runs: argv[0], or the first word of a shell string
    (after any ``NAME=value`` assignments), without its folder."""
    if isinstance(command, list):
        words = [str(w) for w in command]
    elif isinstance(command, str):
        try:
            words = shlex.split(command)
        except ValueError:
            return None
        while words and "=" in words[0] and words[0].split("=", 1)[0].isidentifier():
            words.pop(0)
    else:
        return None
    if not words or not words[0].strip():
        return None
    return os.path.basename(words[0].strip()) or None


def _host(url: Any) -> str | None:
    if not isinstance(url, str):
        return None
    try:
        parts = urlsplit(url.strip())
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not host:
        return None
    return f"{host}:{port}" if port else host


# ------------------------------------------------------------------- state machine


class BreakerState(BaseModel):
    """What a breaker knows: the ``state`` query's answer."""

    target: str
    status: BreakerStatus = "closed"
    failures: int = Field(0, description="consecutive failed tasks reported")
    opened_at: datetime | None = None
    retry_at: datetime | None = Field(None, description="open: when a probe may go")
    cooldown: timedelta | None = Field(None, description="the cooldown of the last opening")
    probe: str | None = Field(None, description="half-open: the task probing the target")
    probe_until: datetime | None = Field(
        None, description="half-open: when an unanswered probe is presumed lost"
    )
    reports: list[str] = Field(
        default_factory=list, description="ids of the latest reports, to drop duplicates"
    )


class BreakerDecision(BaseModel):
    """The answer to ``acquire``: may the call go now, and if not, when to ask again."""

    allowed: bool
    state: BreakerStatus
    retry_at: datetime | None = None
    probe: bool = Field(False, description="this call is the half-open probe")


def cool_down(state: BreakerState, now: datetime) -> BreakerState:
    """An open breaker whose cooldown has passed becomes half-open."""
    if state.status == "open" and state.retry_at is not None and now >= state.retry_at:
        return state.model_copy(update={"status": "half_open", "probe": None, "probe_until": None})
    return state


def admit(state: BreakerState, holder: str, now: datetime) -> tuple[BreakerState, BreakerDecision]:
    """May ``holder`` call the target now? Closed: yes. Open: no, ask again at the end of
    the cooldown. Half-open: yes for exactly one probe; the others ask again soon.

    A probe that has not reported within a cooldown is presumed lost (its task was
    cancelled, say), and the next caller becomes the probe: a breaker never stays stuck.
    """
    state = cool_down(state, now)
    if state.status == "closed":
        return state, BreakerDecision(allowed=True, state="closed")
    if state.status == "open":
        return state, BreakerDecision(allowed=False, state="open", retry_at=state.retry_at)
    cooldown = state.cooldown or BreakerSpec().cooldown
    if state.probe is None or state.probe_until is None or now >= state.probe_until:
        state = state.model_copy(update={"probe": holder, "probe_until": now + cooldown})
        return state, BreakerDecision(allowed=True, state="half_open", probe=True)
    retry_at = min(state.probe_until, now + probe_poll(cooldown))
    return state, BreakerDecision(allowed=False, state="half_open", retry_at=retry_at)


def settled(state: BreakerState, now: datetime) -> BreakerDecision | None:
    """The decision :func:`admit` would give without changing the state, if there is one.

    A closed breaker, or an open one before its cooldown ends, answers the same to every
    caller: that answer can come from a read (a query, no history written). Otherwise
    (half-open, or a cooldown that has just ended) only the breaker itself may decide.
    """
    if state.status == "closed":
        return BreakerDecision(allowed=True, state="closed")
    if state.status == "open" and state.retry_at is not None and now < state.retry_at:
        return BreakerDecision(allowed=False, state="open", retry_at=state.retry_at)
    return None


def changes(state: BreakerState, success: bool) -> bool:
    """Would recording this outcome change the state? A success on a closed breaker with
    no failures would not; that report can be left out."""
    return not (success and state.status == "closed" and state.failures == 0)


def probe_poll(cooldown: timedelta) -> timedelta:
    """How often tasks waiting behind a half-open breaker ask again."""
    return min(max(cooldown / 10, timedelta(seconds=1)), timedelta(minutes=1))


def record(
    state: BreakerState, success: bool, now: datetime, settings: BreakerSpec
) -> BreakerState:
    """A task's outcome on the target. A success closes the breaker; a failure counts,
    and opens it at the threshold or when it was the half-open probe's.

    The reporting plan's settings decide the threshold and the cooldown of an opening.
    """
    if success:
        return state.model_copy(
            update={
                "status": "closed",
                "failures": 0,
                "opened_at": None,
                "retry_at": None,
                "probe": None,
                "probe_until": None,
            }
        )
    failures = state.failures + 1
    opens = state.status == "half_open" or (
        state.status == "closed" and failures >= settings.failures
    )
    if not opens:
        return state.model_copy(update={"failures": failures})
    return state.model_copy(
        update={
            "status": "open",
            "failures": failures,
            "opened_at": now,
            "retry_at": now + settings.cooldown,
            "cooldown": settings.cooldown,
            "probe": None,
            "probe_until": None,
        }
    )


def outcome(category: str | None) -> bool | None:
    """What a task's final outcome says about its target, given its error category
    (None: it succeeded). True: the target works (it succeeded, or it answered "tests
    failed" or "conflict"); False: the target failed (``tool``, ``timeout``, ``system``);
    None: nothing (``validation``, ``budget``, ``cancelled``: the call never really went)."""
    if category is None or category in ANSWER_CATEGORIES:
        return True
    if category in FAILURE_CATEGORIES:
        return False
    return None


def wait_reason(target: str, decision: BreakerDecision, now: datetime) -> str:
    """Why a task waits, for ``towline status``."""
    when = _when(decision.retry_at or now, now)
    if decision.state == "half_open":
        return (
            f"circuit breaker for {target} is half-open: another task is probing it "
            f"(next try {when})"
        )
    return f"circuit breaker open for {target} until {when}"


def _when(at: datetime, now: datetime) -> str:
    return at.strftime("%H:%M:%S UTC" if at.date() == now.date() else "%Y-%m-%d %H:%M:%S UTC")


# ------------------------------------------------------------------------ workflow


class BreakerInput(BaseModel):
    target: str
    carry: BreakerState | None = Field(None, description="state kept across continue-as-new")
    max_history: int = Field(MAX_HISTORY_EVENTS, description="events before continue-as-new")


class AcquireRequest(BaseModel):
    """A task asks its target's breaker whether it may call now."""

    id: str = Field(description="unique per ask; a retried ask is answered once")
    target: str
    queue: str = Field(description="the task queue of the asking workflow")
    holder: str = Field(description="who asks: '<run>/<workstream>.<task>'")


class ReportRequest(BaseModel):
    """A task reports its final outcome on its target (also the breaker's signal)."""

    id: str = Field(description="unique per report; a report delivered twice counts once")
    target: str
    queue: str
    holder: str
    success: bool
    settings: BreakerSpec = BreakerSpec()


@workflow.defn(name=BREAKER_WORKFLOW)
class BreakerWorkflow:
    """One circuit breaker: an entity workflow holding one target's state.

    ``acquire`` (update) lets a call through or says when to ask again; ``report``
    (signal) records a task's outcome; ``state`` (query) shows it. The cooldown is a
    durable timer.
    """

    @workflow.init
    def __init__(self, inp: BreakerInput) -> None:
        self._state = inp.carry or BreakerState(target=inp.target)
        self._changed = False

    @workflow.run
    async def run(self, inp: BreakerInput) -> BreakerState:
        while not self._history_is_long(inp.max_history):
            self._show()
            self._changed = False
            st = self._state
            if st.status == "open" and st.retry_at is not None:
                wait = st.retry_at - workflow.now()
                if wait > timedelta(0):
                    with contextlib.suppress(TimeoutError):
                        await workflow.wait_condition(
                            lambda: self._changed,
                            timeout=wait,
                            timeout_summary=f"cooldown ({span(wait)})",
                        )
                self._state = cool_down(self._state, workflow.now())
                continue
            try:
                await workflow.wait_condition(
                    lambda: self._changed,
                    timeout=IDLE_AFTER,
                    timeout_summary=f"idle: ends after {span(IDLE_AFTER)} without calls",
                )
            except TimeoutError:
                if not self._changed:
                    await workflow.wait_condition(workflow.all_handlers_finished)
                    return self._state
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(
            BreakerInput(target=inp.target, carry=self._state, max_history=inp.max_history)
        )

    def _history_is_long(self, limit: int) -> bool:
        info = workflow.info()
        return info.is_continue_as_new_suggested() or info.get_current_history_length() > limit

    def _show(self) -> None:
        """The breaker's state, in the Web UI's details of this workflow and in the
        worker's ``towline_breaker_state`` gauge (replay included: it is state)."""
        st = self._state
        metrics.breaker_state(st.target, st.status)
        if st.status == "open" and st.retry_at is not None:
            details = f"open until {_when(st.retry_at, workflow.now())}"
        elif st.status == "half_open":
            details = f"half-open, probe: {st.probe or 'none yet'}"
        else:
            details = f"closed, {st.failures} consecutive failure(s)"
        workflow.set_current_details(f"{st.target}: {details}")

    @workflow.update(name="acquire")
    def acquire(self, holder: str) -> BreakerDecision:
        """May ``holder`` call the target now?"""
        self._state, decision = admit(self._state, holder, workflow.now())
        self._changed = True
        return decision

    @workflow.signal(name="report")
    def report(self, req: ReportRequest) -> None:
        """A task's final outcome on the target."""
        if req.id in self._state.reports:
            return
        st = record(self._state, req.success, workflow.now(), req.settings)
        if st.status == "open" and self._state.status != "open":
            _opened(st, req.holder)
        reports = [*st.reports, req.id][-_REMEMBERED_REPORTS:]
        self._state = st.model_copy(update={"reports": reports})
        self._changed = True

    @workflow.query(name="state")
    def state(self) -> BreakerState:
        """The breaker's state: closed, open (until when) or half-open (who probes)."""
        return self._state


def _opened(st: BreakerState, holder: str) -> None:
    """An opening: counted and logged once (neither happens on replay)."""
    metrics.breaker_opened(st.target)
    until = _when(st.retry_at or workflow.now(), workflow.now())
    workflow.logger.warning(
        "circuit breaker %s opened after %d consecutive failure(s), the last of %s; "
        "calls to it wait until %s",
        st.target,
        st.failures,
        holder,
        until,
    )


# ------------------------------------------------------- helpers for task code


async def guard(
    target: str | None,
    settings: BreakerSpec,
    on_wait: Callable[[str], None],
    *,
    task: str,
    parked: Callable[[], contextlib.AbstractContextManager[None]] = contextlib.nullcontext,
) -> bool:
    """Wait, durably, until ``target``'s breaker lets ``task`` call it. Workflow code.

    While the breaker is open, calls ``on_wait(reason)`` and sleeps on a timer until the
    breaker says to ask again. Returns True if it waited (so the caller can clear the
    waiting status). No target, or breakers off: returns at once. If the breaker cannot
    be reached at all, the call is let through (logged): a breaker protects targets, it
    must not stop work on its own failure. The sleep is ``parked``: a workstream may
    continue-as-new during it, and the task then asks again.
    """
    if target is None or not settings.enabled:
        return False
    info = workflow.info()
    holder = f"{info.workflow_id}.{task}"
    waited = False
    while True:
        try:
            decision = await workflow.execute_local_activity(
                ACQUIRE_ACTIVITY,
                AcquireRequest(
                    id=str(workflow.uuid4()), target=target, queue=info.task_queue, holder=holder
                ),
                result_type=BreakerDecision,
                summary=f"{task}: circuit breaker {target}",
                start_to_close_timeout=_CALL_TIMEOUT,
                retry_policy=_CALL_RETRY,
            )
        except ActivityError as e:
            if isinstance(e.cause, CancelledError):
                raise asyncio.CancelledError from e
            workflow.logger.warning(
                "circuit breaker %s did not answer (%s); letting %s through", target, e.cause, task
            )
            return waited
        if decision.allowed or decision.retry_at is None:
            return waited
        waited = True
        on_wait(wait_reason(target, decision, workflow.now()))
        with parked():
            pause = max(decision.retry_at - workflow.now(), _MIN_SLEEP)
            state = decision.state.replace("_", "-")
            await workflow.sleep(
                pause, summary=wait_summary(task, f"the {state} circuit breaker {target}", pause)
            )


async def report(
    target: str | None, success: bool | None, settings: BreakerSpec, *, task: str
) -> None:
    """Tell ``target``'s breaker how ``task`` ended (see :func:`outcome`). Workflow code.

    Nothing to tell (no target, breakers off, ``success`` None): returns at once.
    """
    if target is None or success is None or not settings.enabled:
        return
    info = workflow.info()
    try:
        await workflow.execute_local_activity(
            REPORT_ACTIVITY,
            ReportRequest(
                id=str(workflow.uuid4()),
                target=target,
                queue=info.task_queue,
                holder=f"{info.workflow_id}.{task}",
                success=success,
                settings=settings,
            ),
            summary=f"{task}: circuit breaker {target} {'ok' if success else 'failure'}",
            start_to_close_timeout=_CALL_TIMEOUT,
            retry_policy=_CALL_RETRY,
        )
    except ActivityError as e:
        if isinstance(e.cause, CancelledError):
            raise asyncio.CancelledError from e
        workflow.logger.warning("circuit breaker %s did not hear of %s (%s)", target, task, e.cause)
