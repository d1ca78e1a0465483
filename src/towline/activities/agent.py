"""The agent's steps that touch the world, each an activity of its own.

The agent's loop is workflow code (:mod:`towline.workflows.agent`); every model call and
every tool call it makes is one of these activities, so each is a step in Temporal's
history that a worker's death never repeats once it has completed:

- ``agent.prepare``: before the first turn, in the workspace: the git tree the diff is
  taken against, the tools of the MCP servers the task names, and the closest past
  fixes from the run history (:mod:`towline.agent.memory`);
- ``agent.model``: one chat completion with tools (``POST {base_url}/chat/completions``),
  its usage counted at once toward the run's budget (:func:`~towline.activities.base.spend`);
- ``agent.read`` and ``agent.write``: one workspace tool call
  (:mod:`towline.activities.agent_tools`), on the worker holding the workspace; a write
  is followed by a snapshot of the workspace, as every tool that may change it is;
- ``agent.mcp``: one call of an MCP server's tool (the official SDK);
- ``agent.finish``: the diff of what the conversation changed;
- ``agent.record``: the conversation in the run history (and, for a fix, whether it
  worked: the memory of past fixes).

Large message contents and tool results are written to the store and travel by
reference (:data:`INLINE`): the conversation in history stays small, and the model call
gets them back whole (the ``@tool`` decorator expands stored values).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import shutil
import ssl
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, TextIO, cast

import httpx
from pydantic import Field
from temporalio import activity

from towline import history
from towline.activities import agent_tools
from towline.activities import repo as git_repo
from towline.activities.artifacts import write_artifact
from towline.activities.base import Tool, ToolInput, spend, tool
from towline.activities.tools.http import transport_error
from towline.activities.tools.llm import PriceInput, json_body, price_of, refused
from towline.agent import memory
from towline.agent.spec import McpServerSpec, Prepared
from towline.durations import format_duration
from towline.errors import ToolError
from towline.plan.spec import Duration
from towline.state import Usage
from towline.toolcall import ToolContext, ToolResult

INLINE = 2048  # characters of a message or tool result kept inline; more goes to the store
STORED_DIFF = 16 * 1024  # characters of a diff kept inline in outputs


def _artifact_name(suffix: str) -> str:
    info = activity.info()
    return f"agent-{info.activity_id}-{info.attempt}-{suffix}"


def by_ref(ctx: ToolContext, value: str, suffix: str, *, limit: int = INLINE) -> Any:
    """``value``, or a stub of it in the store when it is longer than ``limit``."""
    if len(value) <= limit:
        return value
    data = value.encode()
    ref = write_artifact(ctx, _artifact_name(suffix), data)
    return {"$artifact": ref, "bytes": len(data)}


# ---------------------------------------------------------------- agent.model


class ModelCall(ToolInput):
    base_url: str
    model: str
    messages: list[dict[str, Any]] = Field(min_length=1)
    tools: list[dict[str, Any]] = Field(default_factory=list)
    api_key: str | None = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    price: PriceInput | None = None
    timeout: Duration = timedelta(minutes=10)


@tool("agent.model", ModelCall, "One turn of an agent: a chat completion with tools.")
async def model_call(args: ModelCall, ctx: ToolContext) -> ToolResult:
    """Outputs: ``message`` (the assistant's, with its ``tool_calls``), ``prompt_tokens``,
    ``completion_tokens``, ``cost_usd``, ``model``, ``finish_reason``."""
    url = args.base_url.rstrip("/") + "/chat/completions"
    request: dict[str, Any] = {"model": args.model, "messages": args.messages}
    if args.tools:
        request["tools"] = args.tools
        request["tool_choice"] = "auto"
    if args.max_output_tokens is not None:
        request["max_tokens"] = args.max_output_tokens
    if args.temperature is not None:
        request["temperature"] = args.temperature
    headers = {"Accept": "application/json"}
    if args.api_key:
        headers["Authorization"] = f"Bearer {args.api_key}"
    async with httpx.AsyncClient(timeout=args.timeout.total_seconds(), verify=_tls()) as client:
        try:
            reply = await client.post(url, json=request, headers=headers)
        except httpx.TimeoutException:
            raise ToolError(
                "timeout",
                f"POST {url}: no reply within {format_duration(args.timeout)}",
                hint="raise with.request_timeout (and the task's timeout)",
            ) from None
        except httpx.HTTPError as e:
            raise transport_error("POST", url, e) from None
    body = json_body(reply, url)
    if reply.status_code != 200:
        raise refused(reply, body, url)
    given = body.get("usage")
    raw: dict[str, Any] = given if isinstance(given, dict) else {}
    prompt, completion = _count(raw.get("prompt_tokens")), _count(raw.get("completion_tokens"))
    total = _count(raw.get("total_tokens")) or prompt + completion
    price, _ = price_of(args.model, args.price)
    cost = round(
        prompt / 1000 * price.prompt_per_1k + completion / 1000 * price.completion_per_1k, 8
    )
    spend(Usage(tokens=total, cost_usd=cost))  # paid for now, whatever follows
    try:
        choice = body["choices"][0]
        message = choice["message"]
        content = message.get("content")
        calls = message.get("tool_calls") or []
        if content is not None and not isinstance(content, str):
            raise TypeError("content is not a string")
        calls = [_call(c, i) for i, c in enumerate(calls)]
    except (KeyError, IndexError, TypeError, AttributeError) as e:
        raise ToolError(
            "tool",
            f"the reply from {url} is not a chat completion with tool calls "
            f"({type(e).__name__} {e})",
            output=json.dumps(body)[-4096:],
        ) from None
    assistant: dict[str, Any] = {"role": "assistant", "content": None}
    if content:
        assistant["content"] = by_ref(ctx, content, "content.txt")
    if calls:
        for i, c in enumerate(calls):
            fn = c["function"]
            fn["arguments"] = by_ref(ctx, fn["arguments"], f"call{i}.json")
        assistant["tool_calls"] = calls
    return ToolResult(
        outputs={
            "message": assistant,
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "cost_usd": cost,
            "model": body.get("model") or args.model,
            "finish_reason": choice.get("finish_reason"),
        }
    )


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context for every model call: building it loads the CA certificates,
    which cost 20-30 ms a turn when each call made its own (measured, bench agent_turns)."""
    return ssl.create_default_context()


def _count(value: Any) -> int:
    return value if isinstance(value, int) and value >= 0 else 0


def _call(raw: Any, i: int) -> dict[str, Any]:
    fn = raw["function"]
    name = fn["name"]
    if not isinstance(name, str):
        raise TypeError("a tool call's name is not a string")
    arguments = fn.get("arguments")
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments if arguments is not None else {})
    return {
        "id": str(raw.get("id") or f"call_{i}"),
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }


# ---------------------------------------------------------------- agent.read / agent.write


class WorkspaceCall(ToolInput):
    tool: str
    arguments: Any = None


async def _workspace(args: WorkspaceCall, ctx: ToolContext) -> dict[str, Any]:
    handler = agent_tools.HANDLERS.get(args.tool)
    if handler is None:
        raise ToolError("validation", f"no workspace tool '{args.tool}'")
    root = Path(ctx.workspace)
    if not root.is_dir():
        raise ToolError("system", f"the workspace {ctx.workspace} does not exist")
    try:
        text = await handler(
            root, agent_tools.parse_arguments(args.arguments), ctx, _artifact_name(args.tool)
        )
        ok = True
    except ToolError as e:
        if e.category not in ("validation", "conflict", "tool"):
            raise
        text, ok = f"error: {e.message}", False
    return {"content": by_ref(ctx, text, "result.txt"), "ok": ok}


@tool("agent.read", WorkspaceCall, "An agent's read-only workspace tool call.")
async def read_call(args: WorkspaceCall, ctx: ToolContext) -> dict[str, Any]:
    """Outputs: ``content`` (the text for the model) and ``ok``."""
    return await _workspace(args, ctx)


@tool("agent.write", WorkspaceCall, "An agent's workspace tool call that may change it.")
async def write_call(args: WorkspaceCall, ctx: ToolContext) -> dict[str, Any]:
    """Outputs: ``content`` (the text for the model) and ``ok``."""
    return await _workspace(args, ctx)


# ---------------------------------------------------------------- agent.mcp


class McpCall(ToolInput):
    name: str = Field(description="the server's name in the task's mcp")
    server: McpServerSpec
    tool: str
    arguments: Any = None


def _mcp_input(server: McpServerSpec, tool_name: str, arguments: dict[str, Any]) -> Any:
    from towline.activities.tools.mcp import McpInput

    return McpInput(
        command=server.command,
        url=server.url,
        env=server.env,
        headers=server.headers,
        tool=tool_name,
        arguments=arguments,
        connect_timeout=server.connect_timeout,
    )


@tool("agent.mcp", McpCall, "An agent's call of an MCP server's tool.")
async def mcp_call(args: McpCall, ctx: ToolContext) -> dict[str, Any]:
    """Outputs: ``content`` (the text for the model) and ``ok``."""
    from towline.activities import mcp_session

    try:
        arguments = agent_tools.parse_arguments(args.arguments)
        with _errlog() as errlog:
            out = await mcp_session.call(
                _mcp_input(args.server, args.tool, arguments),
                ctx,
                f"the MCP server {args.name}",
                errlog,
                None,
            )
        text = out["text"] or json.dumps(out["structured"])
        ok = True
    except ToolError as e:
        if e.category not in ("validation", "tool"):
            raise
        text, ok = f"error: {e.message}", False
    return {"content": by_ref(ctx, text, "mcp.txt"), "ok": ok}


@contextlib.contextmanager
def _errlog() -> Any:
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as f:
        yield cast(TextIO, f)


# ---------------------------------------------------------------- agent.prepare


class PrepareCall(ToolInput):
    mcp: dict[str, McpServerSpec] = Field(default_factory=dict)
    failure: str | None = None
    memory: bool = True


@tool("agent.prepare", PrepareCall, "Before an agent's first turn: diff base, MCP tools, memory.")
async def prepare(args: PrepareCall, ctx: ToolContext) -> dict[str, Any]:
    """Outputs: :class:`towline.agent.spec.Prepared` (start tree, MCP tools, past fixes)."""
    from towline.activities import mcp_session

    out = Prepared()
    root = Path(ctx.workspace) if ctx.workspace else None
    if root is not None and root.is_dir():
        await git_repo.ensure_repo(root)
        out.start_tree = await tree_of(root)
        out.head = await git_repo.head(root)
    for name, server in sorted(args.mcp.items()):
        with _errlog() as errlog:
            listed = await mcp_session.list_tools(
                _mcp_input(server, "-", {}), ctx, f"the MCP server {name}", errlog
            )
        for t in listed:
            out.mcp_tools.append(
                {
                    "server": name,
                    "name": t.name,
                    "description": t.description or "",
                    "schema": t.input_schema,
                }
            )
    if args.memory and args.failure:
        out.memory = await asyncio.to_thread(_recall, args.failure)
    return out.model_dump(mode="json")


def _recall(failure: str) -> list[dict[str, Any]]:
    store = history.open_store()
    try:
        rows = store.agent_runs(fixed_only=True, newest=history.PAST_FIXES)
    except Exception as e:  # the history is a convenience, never a reason to fail
        activity.logger.warning("cannot read past fixes at %s: %s", store.location, e)
        return []
    past = [
        memory.PastFix(
            run_id=r.run_id,
            task=f"{r.workstream}.{r.task}",
            model=r.model,
            signature=r.signature,
            summary=r.summary,
            diff=r.diff,
        )
        for r in rows
    ]
    return [
        {
            "run_id": m.fix.run_id,
            "task": m.fix.task,
            "summary": m.fix.summary,
            "diff": m.fix.diff,
            "score": round(m.score, 3),
        }
        for m in memory.closest(memory.signature(failure), past)
    ]


async def tree_of(root: Path) -> str:
    """The git tree of the working tree as it is (untracked files included, ignored ones
    not), written without touching the workspace's index."""
    git_dir = root / ".git"
    with tempfile.TemporaryDirectory(prefix="towline-agent-") as tmp:
        index = Path(tmp) / "index"
        if (git_dir / "index").is_file():
            shutil.copyfile(git_dir / "index", index)  # its stat cache saves re-reading
        env = {"GIT_INDEX_FILE": str(index)}
        for argv in (("add", "--all"), ("write-tree",)):
            done = await git_repo.git(root, *argv, env=env, quick=True)
            if done.code != 0:
                raise ToolError("system", f"git {argv[0]} failed: {git_repo.message(done)}")
        return done.out.strip()


# ---------------------------------------------------------------- agent.finish


class FinishCall(ToolInput):
    start_tree: str | None = None
    head: str | None = None


@tool("agent.finish", FinishCall, "After an agent's last turn: the diff of what it changed.")
async def finish(args: FinishCall, ctx: ToolContext) -> dict[str, Any]:
    """Outputs: ``diff`` (by reference when large), ``files`` (the paths it changed) and
    ``diff_from`` (``start``, or ``HEAD`` when the start could not be found: a worker
    that took the workspace over after its holder died has only what was committed)."""
    root = Path(ctx.workspace) if ctx.workspace else None
    if root is None or not root.is_dir() or not (root / ".git").exists():
        return {"diff": "", "files": [], "diff_from": None}
    end = await tree_of(root)
    base, source = args.start_tree, "start"
    if base is None or (await git_repo.git(root, "cat-file", "-e", base, quick=True)).code:
        base, source = args.head or "", "HEAD"
    if not base:
        return {"diff": "", "files": [], "diff_from": None}
    done = await git_repo.git(root, "diff", "--binary", base, end, quick=True)
    names = await git_repo.git(root, "diff", "--name-only", base, end, quick=True)
    if done.code != 0:
        raise ToolError("system", f"git diff failed: {git_repo.message(done)}")
    return {
        "diff": by_ref(ctx, done.out, "diff.patch", limit=STORED_DIFF),
        "files": names.out.split(),
        "diff_from": source,
    }


# ---------------------------------------------------------------- agent.record


class RecordCall(ToolInput):
    label: str
    model: str
    signature: list[str] = Field(default_factory=list)
    summary: str = ""
    diff: str = ""
    stop: str
    turns: int = 0
    tokens: int = 0
    cost_usd: float = 0.0
    fixed: bool | None = None
    started_at: float = 0.0
    duration_s: float = 0.0
    outcome: str = "succeeded"


@tool("agent.record", RecordCall, "An agent's conversation, recorded in the run history.")
async def record(args: RecordCall, ctx: ToolContext) -> dict[str, Any]:
    """Outputs: ``recorded`` (false when the history could not be written)."""
    store = history.open_store()
    rec = history.AgentRunRecord(
        run_id=ctx.run_id,
        plan=ctx.plan,
        workstream=ctx.workstream,
        task=ctx.task,
        label=args.label,
        model=args.model,
        signature=tuple(args.signature),
        summary=args.summary,
        diff=args.diff,
        stop=args.stop,
        turns=args.turns,
        tokens=args.tokens,
        cost_usd=args.cost_usd,
        fixed=args.fixed,
        created_at=time.time(),
    )
    call = history.ToolCallRecord(
        run_id=ctx.run_id,
        plan=ctx.plan,
        workstream=ctx.workstream,
        task=ctx.task,
        tool="agent",
        attempt=1,
        outcome="succeeded" if args.outcome == "succeeded" else "failed",
        category=None if args.outcome == "succeeded" else args.outcome,
        started_at=args.started_at or time.time(),
        duration_s=args.duration_s,
        tokens=args.tokens,
        cost_usd=args.cost_usd,
    )
    try:
        await asyncio.to_thread(store.record_agent, rec)
        await asyncio.to_thread(store.record, call)
    except Exception as e:
        activity.logger.warning("cannot record the agent in %s: %s", store.location, e)
        return {"recorded": False}
    return {"recorded": True}


AGENT_ACTIVITIES: tuple[Tool, ...] = (
    prepare,
    model_call,
    read_call,
    write_call,
    mcp_call,
    finish,
    record,
)
# Touching the workspace: these run on the worker holding it.
HELD = ("agent.prepare", "agent.read", "agent.write", "agent.mcp", "agent.finish")
