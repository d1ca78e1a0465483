"""The ``agent`` tool: a model in a loop with tools, durable step by step.

An agent task's conversation is a child workflow of its workstream,
:class:`AgentWorkflow`, with the id ``<run>/<workstream>/<task>`` and a page of its own in
the Web UI: a timeline of turns, each a model call (``turn 3: gpt-4.1-mini``) and the
tool calls it asked for (``turn 3: read_file src/calc.py``), every one an activity
(:mod:`towline.activities.agent`). A worker that dies mid-conversation loses nothing: the
workflow replays on another worker, and no step that completed runs again. Tool calls
that touch the workspace go to the worker holding it, and take it over from its
snapshot when that worker is gone (:class:`~towline.workflows.affinity.Affinity`, the
same as the workstream's); the child hands the holding back to its workstream at its
end. A long conversation continues-as-new, carrying the messages, which hold large
contents by reference (the store).

The loop, each turn: stop at a limit (``max_turns``, the task's timeout, ``max_tokens``,
``max_cost_usd``, the run's budget); compact older tool results when the conversation
would pass ``context_tokens`` (:mod:`towline.agent.context`); call the model; run the
tool calls it asked for, in order. The conversation ends when the model answers without
calling a tool: that answer is the task's ``outputs.summary``. Each model call's tokens
and cost are counted toward the run's budget at once (the workstream's ``tool_usage``
signal). ``ask_human`` makes the task wait, status ``waiting`` for an ``answer``, until
``towline answer RUN TASK TEXT`` (the ``answer`` update of this workflow).

:func:`run_agent` is the task lifecycle's side (:mod:`towline.workflows.task`): it
starts the child and turns its result into the task's outcome; :func:`verdict` records
whether a fix worked, which is what the memory of past fixes is made of.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError
from temporalio import workflow
from temporalio.common import RetryPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ActivityError, CancelledError, ChildWorkflowError, FailureError

from towline.agent.choice import choose_model
from towline.agent.context import REPLY_ROOM, compact
from towline.agent.memory import Match, PastFix, context_note, signature
from towline.agent.spec import (
    READ_ONLY,
    WORKSPACE_TOOLS,
    AgentArgs,
    AgentCarry,
    AgentRequest,
    AgentResult,
    HumanAnswer,
    Prepared,
)
from towline.agent.tools import ASK_HUMAN, schemas
from towline.catalogue import facts
from towline.errors import NON_RETRYABLE, hint_for
from towline.holding import Holding, newer
from towline.state import TOOL_USAGE_SIGNAL, Budget, ErrorInfo, Usage, UsageReport
from towline.toolcall import ToolCall, ToolContext
from towline.workflows.affinity import Affinity, call_tool, execute_tool

if TYPE_CHECKING:
    from towline.plan.spec import OnFailureSpec, TaskSpec
    from towline.state import TaskState
    from towline.workflows.task import TaskControl, TaskEnv

AGENT_WORKFLOW = "AgentWorkflow"
WAITING_SIGNAL = "agent_waiting"  # child -> workstream: the task waits (or no longer)
MAX_HISTORY = 4_000  # events before the conversation continues-as-new
HEARTBEAT = timedelta(seconds=20)
STEP_TIMEOUT = timedelta(minutes=5)  # a workspace tool call, but for run's own timeout
SYSTEM = (
    "You are a careful software engineer working in a repository (the workspace). "
    "Use the tools to read the code, change it and run commands such as its tests. "
    "Paths are relative to the workspace. Make the smallest change that does what you "
    "are asked. When you are done, answer without calling a tool: say in a few "
    "sentences what you changed and why."
)
MODEL_RETRY = RetryPolicy(
    maximum_attempts=5,
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=list(NON_RETRYABLE),
)
STEP_RETRY = RetryPolicy(
    maximum_attempts=3,
    initial_interval=timedelta(seconds=1),
    non_retryable_error_types=list(NON_RETRYABLE),
)
_TOOL_NAME = re.compile(r"[^A-Za-z0-9_-]")


def agent_workflow_id(run_id: str, workstream: str, task: str) -> str:
    return f"{run_id}/{workstream}/{task}"


class AgentAnswer(BaseModel):
    """A person's answer to the question an agent asked (``towline answer``)."""

    text: str
    by: str = "someone"


class _Stop(Exception):
    """The conversation stops: why (``stop``), and the error if it is a failure."""

    def __init__(self, stop: str, error: ErrorInfo | None) -> None:
        super().__init__(stop)
        self.stop = stop
        self.error = error


@workflow.defn(name=AGENT_WORKFLOW)
class AgentWorkflow:
    @workflow.init
    def __init__(self, req: AgentRequest) -> None:
        self._req = req
        self._c = req.carry or AgentCarry(holding=req.holding, budget=req.budget)
        self._question: str | None = None
        self._answer: HumanAnswer | None = None
        self._usage_keys: set[str] = set()
        self._outbox: list[asyncio.Task[None]] = []
        self._last = ""
        self._affinity: Affinity | None = None
        if req.workstream is not None and self._c.holding is not None and req.takeover:
            self._affinity = Affinity(
                run_id=req.workspace_of or req.context.run_id,
                spec=req.workstream,
                plan_dir=req.context.plan_dir,
                bound=req.takeover,
                holding=self._c.holding,
            )

    @workflow.run
    async def run(self, req: AgentRequest) -> AgentResult:
        c, args = self._c, req.args
        try:
            if c.prepared is None:
                c.model = (
                    args.model
                    if args.model != "auto"
                    else choose_model(
                        args.ladder,
                        req.failure or args.instructions,
                        prior_failures=req.prior_failures,
                    )
                )
                c.prepared = await self._prepare()
                c.messages = first_messages(args, c.prepared)
            await self._loop()
        except _Stop as stop:
            return await self._finish(stop.stop, stop.error)
        raise AssertionError("the loop ends by _Stop")  # pragma: no cover

    # ------------------------------------------------------------ the loop

    async def _loop(self) -> None:
        c, args = self._c, self._req.args
        while True:
            if self._history_is_long():
                await self._sent()
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(self._req.model_copy(update={"carry": c}))
            self._check_limits()
            await self._within_budget()
            messages, compacted = compact(
                c.messages,
                limit=args.context_tokens,
                measured=c.measured,
                reply_room=args.max_output_tokens or REPLY_ROOM,
            )
            if compacted:
                c.messages, c.measured = messages, None
                c.compacted += compacted
            reply = await self._model()
            c.turns += 1
            message = reply["message"]
            c.messages.append(message)
            c.measured = (len(c.messages), reply["prompt_tokens"] + reply["completion_tokens"])
            calls = message.get("tool_calls") or []
            self._show(f"turn {c.turns}: {len(calls)} tool call(s)" if calls else "answered")
            if not calls:
                raise _Stop("answered", None)
            for i, call in enumerate(calls):
                content = await self._tool(call, i)
                c.messages.append({"role": "tool", "tool_call_id": call["id"], "content": content})

    def _check_limits(self) -> None:
        c, args = self._c, self._req.args
        if c.turns >= args.max_turns:
            raise _Stop(
                "max_turns",
                ErrorInfo(
                    category="tool",
                    message=f"the agent made {c.turns} model calls (max_turns) "
                    "without a final answer",
                    hint="raise with.max_turns, or make the instructions narrower",
                ),
            )
        if args.max_tokens is not None and c.usage.tokens >= args.max_tokens:
            raise _Stop("max_tokens", _budget(f"spent {c.usage.tokens} tokens (max_tokens)"))
        if args.max_cost_usd is not None and c.usage.cost_usd >= args.max_cost_usd:
            raise _Stop("max_cost_usd", _budget(f"spent ${c.usage.cost_usd:.4f} (max_cost_usd)"))
        if workflow.now() >= self._deadline():
            raise _Stop(
                "timeout",
                ErrorInfo(
                    category="timeout",
                    message=f"the agent passed the task's timeout after {c.turns} turns",
                    hint=hint_for("timeout"),
                ),
            )

    def _deadline(self) -> datetime:
        """The task's timeout, not counting time spent waiting for people or budget."""
        return self._req.deadline + self._c.waited

    def _remaining(self, most: timedelta) -> timedelta:
        left = self._deadline() - workflow.now()
        return max(min(most, left), timedelta(seconds=1))

    def _exhausted(self) -> str | None:
        c = self._c
        if c.budget is None:
            return None
        mine = c.usage.since(c.budget_told)  # spent since the budget was last told
        return c.budget.model_copy(update={"spent": c.budget.spent.add(mine)}).exhausted()

    async def _within_budget(self) -> None:
        """Stop (on_exceed: fail) or wait (wait) while the run's budget is spent."""
        why = self._exhausted()
        if why is None:
            return
        assert self._c.budget is not None
        if self._c.budget.on_exceed == "fail":
            raise _Stop("budget", _budget(why))
        rid = self._req.context.run_id
        await self._waiting("budget", f"{why}; raise it: towline resume {rid} --raise-budget ...")
        since = workflow.now()
        await workflow.wait_condition(lambda: self._exhausted() is None)
        self._c.waited += workflow.now() - since
        await self._waiting(None, None)

    # ------------------------------------------------------------ steps

    async def _prepare(self) -> Prepared:
        req, args = self._req, self._req.args
        mcp = {name: s for name, s in args.mcp.items() if name in args.tools}
        out = await self._step(
            "agent.prepare",
            {
                "mcp": {k: v.model_dump(mode="json") for k, v in mcp.items()},
                "failure": req.failure,
                "memory": args.memory,
            },
            key=f"{req.label}.prepare",
            summary="prepare: diff base, tools, memory",
        )
        if isinstance(out, str):
            raise _Stop("error", ErrorInfo(category="tool", message=out, hint=hint_for("tool")))
        return Prepared.model_validate(out)

    async def _model(self) -> dict[str, Any]:
        c, req, args = self._c, self._req, self._req.args
        key = f"{req.label}.t{c.turns + 1}.model"
        call = ToolCall(
            context=req.context,
            args={
                "base_url": args.base_url,
                "model": c.model,
                "messages": c.messages,
                "tools": self._tool_schemas(),
                "api_key": args.api_key,
                "max_output_tokens": args.max_output_tokens,
                "temperature": args.temperature,
                "price": args.price.model_dump() if args.price else None,
                "timeout": f"{int(args.request_timeout.total_seconds())}s",
            },
        )
        try:
            result = await call_tool(
                "agent.model",
                call,
                activity_id=key,
                summary=f"turn {c.turns + 1}: {c.model}",
                start_to_close_timeout=self._remaining(
                    args.request_timeout + timedelta(seconds=30)
                ),
                heartbeat_timeout=HEARTBEAT,
                retry_policy=MODEL_RETRY,
            )
        except ActivityError as e:
            from towline.workflows.task import _failure

            failed = _failure(e, MODEL_RETRY.maximum_attempts)
            self._spent(failed.usage, f"{key}:failed")
            if _cancelled(e):
                raise asyncio.CancelledError from e
            raise _Stop("error", failed.error) from None
        self._spent(result.usage, key)
        return result.outputs

    async def _tool(self, call: dict[str, Any], i: int) -> Any:
        """Run one tool call the model asked for; the content of its result message."""
        req, args = self._req, self._req.args
        fn = call.get("function", {})
        name, raw = str(fn.get("name", "")), fn.get("arguments")
        key = f"{req.label}.t{self._c.turns}.c{i}"
        brief = f"turn {self._c.turns}: {name}{_brief(name, raw)}"
        if name in WORKSPACE_TOOLS and args.uses("workspace"):
            step = "agent.read" if name in READ_ONLY else "agent.write"
            timeout = STEP_TIMEOUT
            if name == "run":
                timeout = timedelta(seconds=_number(_parsed(raw).get("timeout_s"), 300) + 60)
            out = await self._step(
                step, {"tool": name, "arguments": raw}, key=key, summary=brief, timeout=timeout
            )
        elif name == "ask_human" and args.uses("ask_human"):
            return await self._ask(_parsed(raw).get("question"))
        elif (mcp := self._mcp_tool(name)) is not None:
            server, tool_name = mcp
            out = await self._step(
                "agent.mcp",
                {
                    "name": server,
                    "server": args.mcp[server].model_dump(mode="json"),
                    "tool": tool_name,
                    "arguments": raw,
                },
                key=key,
                summary=brief,
            )
        else:
            known = ", ".join(t["function"]["name"] for t in self._tool_schemas())
            return f"error: there is no tool '{name}'; the tools are: {known or 'none'}"
        self._show(brief)
        return out["content"] if isinstance(out, dict) else out

    async def _step(
        self,
        step: str,
        arguments: dict[str, Any],
        *,
        key: str,
        summary: str,
        timeout: timedelta = STEP_TIMEOUT,
    ) -> dict[str, Any] | str:
        """One step on the workspace's holder (or the shared queue): its outputs, or what
        went wrong as text for the model when it failed for good."""
        req = self._req
        call = ToolCall(context=req.context, args=arguments)
        try:
            result = await execute_tool(
                self._affinity,
                step,
                call,
                activity_id=key,
                summary=summary,
                start_to_close_timeout=self._remaining(timeout),
                heartbeat_timeout=HEARTBEAT,
                retry_policy=STEP_RETRY,
            )
        except ActivityError as e:
            if _cancelled(e):
                raise asyncio.CancelledError from e
            from towline.workflows.task import _failure

            return f"error: the tool call failed: {_failure(e, 3).error.message}"
        return result.outputs

    async def _ask(self, question: Any) -> str:
        """Ask a person; the task waits (for days if need be) for ``towline answer``."""
        ctx = self._req.context
        text = question if isinstance(question, str) and question.strip() else "(no question)"
        self._question, self._answer = text, None
        ref = f"{ctx.workstream}.{ctx.task}"
        await self._waiting(
            "answer", f"asks: {text} (answer: towline answer {ctx.run_id} {ref} TEXT)"
        )
        self._show(f"waiting for an answer: {text}")
        since = workflow.now()
        await workflow.wait_condition(lambda: self._answer is not None)
        self._c.waited += workflow.now() - since
        answer = self._answer
        assert answer is not None
        self._c.answers.append(answer)
        self._question = None
        await self._waiting(None, None)
        return f"{answer.by} answered: {answer.text}"

    async def _finish(self, stop: str, error: ErrorInfo | None) -> AgentResult:
        """The outputs: the final answer, the diff, what it cost; and the holding back."""
        c = self._c
        diff: Any = ""
        files: list[str] = []
        diff_from = None
        if c.prepared is not None and c.prepared.start_tree is not None:
            out = await self._step(
                "agent.finish",
                {"start_tree": c.prepared.start_tree, "head": c.prepared.head},
                key=f"{self._req.label}.finish",
                summary="the diff",
            )
            if isinstance(out, dict):
                diff, files, diff_from = out["diff"], out["files"], out["diff_from"]
        last = c.messages[-1] if c.messages else {}
        summary = last.get("content") if stop == "answered" else None
        outputs: dict[str, Any] = {
            "summary": summary or "",
            "turns": c.turns,
            "tokens": c.usage.tokens,
            "cost_usd": round(c.usage.cost_usd, 8),
            "diff": diff,
            "files": files,
            "model": c.model,
            "stop": stop,
        }
        if diff_from == "HEAD":
            outputs["diff_from"] = "HEAD"
        if c.compacted:
            outputs["compacted"] = c.compacted
        if c.prepared is not None and c.prepared.memory:
            outputs["memory"] = [m["run_id"] for m in c.prepared.memory]
        if c.answers:
            outputs["answers"] = [a.model_dump(mode="json") for a in c.answers]
        self._show(f"{stop} after {c.turns} turns")
        await self._sent()
        return AgentResult(
            outputs=outputs, error=error, usage=c.usage, unreported=c.unreported, holding=c.holding
        )

    # ------------------------------------------------------------ tools offered

    def _tool_schemas(self) -> list[dict[str, Any]]:
        args = self._req.args
        out = schemas() if args.uses("workspace") else []
        if args.uses("ask_human"):
            out.append(ASK_HUMAN)
        prepared = self._c.prepared
        for t in prepared.mcp_tools if prepared else ():
            out.append(
                {
                    "type": "function",
                    "function": {
                        "name": mcp_tool_name(t["server"], t["name"]),
                        "description": t["description"] or f"{t['name']} ({t['server']})",
                        "parameters": t["schema"] or {"type": "object", "properties": {}},
                    },
                }
            )
        return out

    def _mcp_tool(self, name: str) -> tuple[str, str] | None:
        prepared = self._c.prepared
        for t in prepared.mcp_tools if prepared else ():
            if mcp_tool_name(t["server"], t["name"]) == name:
                return t["server"], t["name"]
        return None

    # ------------------------------------------------------------ the parent

    def _parent(self) -> str | None:
        parent = workflow.info().parent
        return parent.workflow_id if parent is not None else None

    def _spent(self, usage: Usage, key: str) -> None:
        """Count a step's usage, and tell the workstream at once when the run has a
        budget (it counts toward it as it happens). Without one, the agent's result
        carries it (``unreported``): a signal per turn would cost the run, its
        workstream and the agent a workflow task each, for nothing to check."""
        if not (usage.tokens or usage.cost_usd) or key in self._usage_keys:
            return
        self._usage_keys.add(key)
        self._c.usage = self._c.usage.add(usage)
        parent = self._parent()
        if parent is None:
            return
        if self._c.budget is None:
            self._c.unreported = self._c.unreported.add(usage)
            return
        ctx = self._req.context
        report = UsageReport(
            workstream=ctx.workstream,
            task=ctx.task,
            key=f"{workflow.info().workflow_id}:{workflow.info().run_id}:{key}",
            usage=usage,
        )
        handle = workflow.get_external_workflow_handle(parent)
        self._outbox = [t for t in self._outbox if not t.done()]
        self._outbox.append(asyncio.create_task(_signal(handle, TOOL_USAGE_SIGNAL, report)))

    async def _waiting(self, waiting_for: str | None, reason: str | None) -> None:
        """Tell the workstream what the task waits for (None: it no longer waits)."""
        parent = self._parent()
        if parent is None:
            return
        await self._sent()  # in order with the usage reports before it
        ctx = self._req.context
        handle = workflow.get_external_workflow_handle(parent)
        await _signal(handle, WAITING_SIGNAL, ctx.task, waiting_for, reason)

    async def _sent(self) -> None:
        while self._outbox and not all(t.done() for t in self._outbox):
            await asyncio.gather(*self._outbox)

    def _history_is_long(self) -> bool:
        info = workflow.info()
        return info.is_continue_as_new_suggested() or info.get_current_history_length() > (
            self._req.max_history or MAX_HISTORY
        )

    def _show(self, last: str) -> None:
        """The conversation's progress, as the Web UI shows it ("current details")."""
        c, args = self._c, self._req.args
        self._last = last
        lines = [
            f"**agent** for task `{self._req.context.workstream}.{self._req.context.task}` "
            f"({self._req.label}), model `{c.model}`",
            "",
            f"- turns: {c.turns} of {args.max_turns}",
            f"- tokens: {c.usage.tokens}, cost: ${c.usage.cost_usd:.4f}",
            f"- last: {last}",
        ]
        if self._question is not None:
            lines.append(f"- **waiting for an answer**: {self._question}")
        workflow.set_current_details("\n".join(lines))

    # ------------------------------------------------------------ signals, updates, queries

    @workflow.signal(name=TOOL_USAGE_SIGNAL)
    def tool_usage(self, report: UsageReport) -> None:
        """A step's attempt that failed or was cancelled tells what it spent."""
        self._spent(report.usage, f"report:{report.key}")

    @workflow.signal(name="budget")
    def budget(self, budget: Budget) -> None:
        """The run's budget changed (spent elsewhere, or raised by a person)."""
        self._c.budget = budget
        self._c.budget_told = self._c.usage

    @workflow.update(name="answer")
    def answer(self, req: AgentAnswer) -> str:
        """Answer the agent's question: {"text": "use version 2", "by": "ana"}."""
        return self._take_answer(req)

    def _take_answer(self, req: AgentAnswer) -> str:
        question = self._question or ""
        self._answer = HumanAnswer(question=question, text=req.text, by=req.by, at=workflow.now())
        ctx = self._req.context
        return f"answered {ctx.workstream}.{ctx.task}: {question}"

    @answer.validator
    def _answer_ok(self, req: AgentAnswer) -> None:
        ctx = self._req.context
        if self._question is None or self._answer is not None:
            raise ValueError(f"task {ctx.workstream}.{ctx.task} is not waiting for an answer")

    @workflow.signal(
        name="answer_from_run", description="An answer a person gave the run's update `answer`"
    )
    def answer_from_run(self, req: AgentAnswer) -> None:
        try:
            self._answer_ok(req)
        except ValueError as e:
            workflow.logger.info("an answer the run passed on came too late: %s", e)
            return
        self._take_answer(req)

    @workflow.query(name="question")
    def question(self) -> str | None:
        """The question the agent waits to have answered, if any."""
        return self._question


def first_messages(args: AgentArgs, prepared: Prepared) -> list[dict[str, Any]]:
    """The system message (with the memory of past fixes, if any) and the instructions."""
    system = SYSTEM
    if prepared.memory:
        matches = [
            Match(
                PastFix(
                    run_id=m["run_id"],
                    task=m["task"],
                    model="",
                    signature=(),
                    summary=m["summary"],
                    diff=m["diff"],
                ),
                m["score"],
            )
            for m in prepared.memory
        ]
        system += "\n\n" + context_note(matches)
    return [{"role": "system", "content": system}, {"role": "user", "content": args.instructions}]


def mcp_tool_name(server: str, tool: str) -> str:
    """An MCP tool as the model sees it: ``<server>__<tool>``, in the characters and
    length (64) the chat-completions protocol allows."""
    return _TOOL_NAME.sub("_", f"{server}__{tool}")[:64]


def _budget(why: str) -> ErrorInfo:
    return ErrorInfo(category="budget", message=why, hint=hint_for("budget"))


def _cancelled(err: ActivityError) -> bool:
    from temporalio.exceptions import RetryState

    return isinstance(err.cause, CancelledError) or err.retry_state == RetryState.CANCEL_REQUESTED


def _parsed(raw: Any) -> dict[str, Any]:
    """The model's arguments, parsed in the workflow (deterministic); {} if they are not
    a JSON object (the step says so to the model)."""
    if not isinstance(raw, str):
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _number(value: Any, default: float) -> float:
    return float(value) if isinstance(value, int | float) and value > 0 else default


def _brief(name: str, raw: Any) -> str:
    """What a tool call's summary says besides its name (the path, the command...)."""
    args = _parsed(raw)
    if name == "run" and isinstance(args.get("command"), list):
        text = shlex.join(str(a) for a in args["command"])
    elif name == "search":
        text = str(args.get("pattern", ""))
    else:
        text = str(args.get("path", "") or args.get("question", ""))
    text = text.replace("\n", " ")
    return f" {text[:60]}{'...' if len(text) > 60 else ''}" if text else ""


async def _signal(handle: Any, name: str, *args: object) -> None:
    try:
        await handle.signal(name, args=list(args))
    except FailureError:
        workflow.logger.info("the agent's workstream did not hear %s (it has ended)", name)


# ---------------------------------------------------------------- the task's side


def _listen(ctl: TaskControl | None) -> None:
    """Have the workstream hear its agents' waits (a handler registered at run time, so
    the workstream's class needs none of its own)."""

    def waiting(task: str, waiting_for: Any, reason: str | None) -> None:
        if ctl is not None:
            ctl.set_waiting(task, waiting_for, reason)

    workflow.set_signal_handler(WAITING_SIGNAL, waiting)


def _budget_key(b: Budget | None) -> tuple[Any, ...] | None:
    if b is None:
        return None
    return (b.max_cost_usd, b.max_tokens, b.on_exceed, b.exhausted() is None)


async def _forward_budget(handle: Any, ctl: TaskControl) -> None:
    """Tell the agent when the run's budget runs out or is raised."""
    told = [_budget_key(ctl.current_budget())]
    while True:
        await workflow.wait_condition(lambda: _budget_key(ctl.current_budget()) != told[0])
        budget = ctl.current_budget()
        told[0] = _budget_key(budget)
        if budget is not None:
            await _signal(handle, "budget", budget)


def _adopt(env: TaskEnv, holding: Holding | None) -> None:
    """The workstream takes the holding the agent ends with (a takeover, new snapshots)."""
    mine = env.affinity.holding if env.affinity is not None else None
    if mine is None or holding is None:
        return
    if holding.number >= mine.number:
        mine.held, mine.number = holding.held, holding.number
    mine.snapshot = newer(mine.snapshot, holding.snapshot)


def label_of(state: TaskState, *, main: bool) -> str:
    if main:
        return "main" if state.runs <= 1 else f"main{state.runs}"
    return f"fix{state.fixes}"


async def run_agent(
    args: dict[str, Any],
    spec: TaskSpec,
    state: TaskState,
    env: TaskEnv,
    *,
    main: bool,
    timeout: timedelta,
    ctl: TaskControl | None,
) -> tuple[ErrorInfo | None, dict[str, Any]]:
    """Run the task's agent as a child workflow; why it failed (None: it answered), and
    its outputs."""
    try:
        agent_args = AgentArgs.model_validate(args)
    except ValidationError as e:
        message = "; ".join(
            f"with.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()
        )
        return ErrorInfo(category="validation", message=message, hint=hint_for("validation")), {}
    error = state.error
    failure = None if main or error is None else f"{error.message}\n{error.output or ''}"
    aff = env.affinity
    label = label_of(state, main=main)
    req = AgentRequest(
        context=ToolContext(
            run_id=env.run_id,
            workstream=env.workstream,
            task=spec.id,
            workspace=aff.holding.held.path if aff and aff.holding else env.workspace,
            plan_dir=env.plan_dir,
            plan=env.plan,
        ),
        args=agent_args,
        label=label,
        failure=failure,
        prior_failures=max(state.runs - 1 if main else state.fixes - 1, 0),
        workstream=aff.spec.model_copy(update={"tasks": [spec]}) if aff else None,
        workspace_of=aff.run_id if aff else env.run_id,
        takeover=aff.bound if aff else None,
        holding=aff.holding.model_copy(deep=True) if aff and aff.holding else None,
        budget=ctl.current_budget() if ctl is not None else None,
        deadline=workflow.now() + timeout,
    )
    _listen(ctl)
    started = workflow.now()
    handle = await workflow.start_child_workflow(
        AgentWorkflow.run,
        req,
        id=agent_workflow_id(env.run_id, env.workstream, spec.id),
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        static_summary=f"agent for {env.workstream}.{spec.id} ({label}) of run {env.run_id}",
    )
    forward = asyncio.create_task(_forward_budget(handle, ctl)) if ctl is not None else None
    try:
        try:
            result = await asyncio.shield(handle)
        except asyncio.CancelledError:
            if not handle.done():
                handle.cancel()
            try:
                result = await handle
            except ChildWorkflowError:
                raise asyncio.CancelledError from None
    except ChildWorkflowError as e:
        if isinstance(e.cause, CancelledError):
            raise asyncio.CancelledError from e
        return ErrorInfo(category="system", message=_innermost(e), hint=hint_for("system")), {}
    finally:
        if forward is not None:
            forward.cancel()
    _adopt(env, result.holding)
    if ctl is not None and (result.unreported.tokens or result.unreported.cost_usd):
        state.usage = state.usage.add(result.unreported)
        ctl.spent(result.unreported)
    if main:
        await _record(env, spec, result, label=label, signature=[], fixed=None, started=started)
        return result.error, result.outputs
    # What the fix was for, so its verdict can be remembered (towline.agent.memory).
    took = round((workflow.now() - started).total_seconds(), 3)
    return result.error, {
        **result.outputs,
        "signature": signature(failure or ""),
        "duration_s": took,
        "ok": result.error is None,
    }


async def verdict(
    strategy: OnFailureSpec, spec: TaskSpec, state: TaskState, env: TaskEnv, *, fixed: bool
) -> None:
    """After the run that follows an agent's fix: record whether the fix worked (with
    the failure it was for: the memory later agents are offered)."""
    if strategy.fix is None or not facts(strategy.fix.tool).child_workflow:
        return
    outputs = state.fix_outputs
    if outputs is None:
        return
    failed = None if outputs.get("ok", True) else ErrorInfo(category="tool", message="")
    await _record(
        env,
        spec,
        AgentResult(outputs=outputs, error=failed),
        label=f"fix{state.fixes}",
        signature=list(outputs.get("signature") or []),
        fixed=fixed,
        started=None,
    )


async def _record(
    env: TaskEnv,
    spec: TaskSpec,
    result: AgentResult,
    *,
    label: str,
    signature: list[str],
    fixed: bool | None,
    started: datetime | None,
) -> None:
    out = result.outputs
    call = ToolCall(
        context=ToolContext(
            run_id=env.run_id,
            workstream=env.workstream,
            task=spec.id,
            workspace="",
            plan_dir=env.plan_dir,
            plan=env.plan,
        ),
        args={
            "label": label,
            "model": str(out.get("model", "")),
            "signature": signature,
            "summary": out.get("summary") or "",
            "diff": out.get("diff") or "",
            "stop": str(out.get("stop", "error")),
            "turns": int(out.get("turns", 0)),
            "tokens": int(out.get("tokens", 0)),
            "cost_usd": float(out.get("cost_usd", 0.0)),
            "fixed": fixed,
            "started_at": started.timestamp() if started else 0.0,
            "duration_s": (workflow.now() - started).total_seconds()
            if started
            else float(out.get("duration_s", 0.0)),
            "outcome": "succeeded" if result.error is None else result.error.category,
        },
    )
    try:
        await call_tool(
            "agent.record",
            call,
            activity_id=f"{spec.id}.{label}.record",
            summary=f"{spec.id}: record {label} (agent)",
            start_to_close_timeout=timedelta(minutes=1),
            retry_policy=RetryPolicy(maximum_attempts=3),
        )
    except ActivityError as e:
        workflow.logger.warning("could not record agent %s of %s: %s", label, spec.id, e)


def _innermost(err: BaseException) -> str:
    message = str(err)
    while err.__cause__ is not None:
        err = err.__cause__
        message = err.message if isinstance(err, FailureError) else str(err)
    return message
