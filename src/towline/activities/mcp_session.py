"""The ``mcp`` tool's session with a server, through the official ``mcp`` SDK.

Kept apart from :mod:`towline.activities.tools.mcp` (the tool's input and outputs), which
imports it on the first call, because the SDK takes a second to import.

The SDK runs on anyio. Temporal cancels an activity natively (``Task.cancel``), which
could cut short the SDK's shielded shutdown of a stdio server; so the session runs in a
task of its own, cancelled through an anyio cancel scope, and the activity waits for it
to wind down: no server outlives its task.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import math
from collections.abc import Awaitable, Callable
from typing import Any, TextIO, TypeVar

import anyio
import httpx2
import jsonschema
import mcp_types
from mcp import Client, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from towline.activities.process import environment, working_dir
from towline.activities.tools.http import error_reason, snippet, status_category
from towline.activities.tools.mcp import LOG_TAIL, McpInput
from towline.durations import format_duration
from towline.errors import Category, ToolError
from towline.toolcall import ToolContext

T = TypeVar("T")

_LISTED = 30  # tool names a message lists at most
_MAX_PAGES = 100  # of a tool listing: a server that pages forever cannot hang the call
_HTTP_TIMEOUT = httpx2.Timeout(30.0, read=300.0)  # the SDK's own defaults


async def call(
    args: McpInput, ctx: ToolContext, server: str, errlog: TextIO, log_ref: str | None
) -> dict[str, Any]:
    """Call ``args.tool`` on the server and return the tool's outputs.

    ``server`` names the server in messages; the stdio server's stderr goes to
    ``errlog``; ``log_ref`` is the artifact it will be kept in (outputs.log).
    """

    async def use(
        client: Client,
    ) -> tuple[mcp_types.CallToolResult, mcp_types.Implementation | None]:
        return await _call_tool(client, args, server)

    result, info = await _cancellable(lambda: _unwrapped(_session(args, ctx, server, errlog, use)))
    return _outputs(args, result, info, log_ref)


async def list_tools(
    args: McpInput, ctx: ToolContext, server: str, errlog: TextIO
) -> list[mcp_types.Tool]:
    """Every tool the server offers (an agent shows them to its model)."""

    async def use(client: Client) -> list[mcp_types.Tool]:
        return list((await _list_tools(client, server)).values())

    return await _cancellable(lambda: _unwrapped(_session(args, ctx, server, errlog, use)))


async def _unwrapped(work: Awaitable[T]) -> T:
    try:
        return await work
    except BaseExceptionGroup as group:
        # The SDK's task groups wrap what is raised inside a session, ours included.
        mine = [e for e in _leaves(group) if isinstance(e, ToolError)]
        if mine:
            raise mine[0] from None
        raise


async def _session(
    args: McpInput,
    ctx: ToolContext,
    server: str,
    errlog: TextIO,
    use: Callable[[Client], Awaitable[T]],
) -> T:
    """Connect to the server, hand the session to ``use``, and close it."""
    # anyio scopes must nest: the connect deadline is a scope around the whole session
    # (the transport's task group lives inside it), lifted once the handshake is done.
    connect_by = anyio.current_time() + args.connect_timeout.total_seconds()
    done = False
    result: T | None = None
    with anyio.CancelScope(deadline=connect_by) as connecting:
        async with contextlib.AsyncExitStack() as stack:
            if args.command is not None:
                params = StdioServerParameters(
                    command=args.command[0],
                    args=args.command[1:],
                    env=environment(args.env),
                    cwd=working_dir(ctx.workspace, args.cwd),
                )
                client = Client(stdio_client(params, errlog=errlog), cache=None)
            else:
                assert args.url is not None
                http = await stack.enter_async_context(
                    httpx2.AsyncClient(headers=args.headers, timeout=_HTTP_TIMEOUT)
                )
                client = Client(streamable_http_client(args.url, http_client=http), cache=None)
            try:
                await stack.enter_async_context(client)
            except (OSError, MCPError, httpx2.HTTPError, ExceptionGroup) as e:
                raise _connect_error(args, server, e) from None
            connecting.deadline = math.inf
            result = await use(client)
            done = True
    if connecting.cancelled_caught or not done:
        raise ToolError(
            "tool",
            f"{server} did not answer the MCP handshake within "
            f"{format_duration(args.connect_timeout)}",
            hint="check that the command starts an MCP server speaking stdio "
            "(or that the URL is its endpoint); raise with.connect_timeout if it is slow",
        )
    return result  # type: ignore[return-value]


def _outputs(
    args: McpInput,
    result: mcp_types.CallToolResult,
    info: mcp_types.Implementation | None,
    log_ref: str | None,
) -> dict[str, Any]:
    text = "\n".join(c.text for c in result.content if isinstance(c, mcp_types.TextContent))
    outputs: dict[str, Any] = {
        "structured": result.structured_content,
        "text": text,
        "content": [
            c.model_dump(mode="json", by_alias=True, exclude_none=True) for c in result.content
        ],
        "is_error": bool(result.is_error),
        "server": info.name if info is not None else None,
    }
    if log_ref is not None:
        outputs["log"] = log_ref
    if result.is_error:
        raise ToolError(
            "tool",
            f"MCP tool '{args.tool}' returned an error{snippet(text)}",
            output=text[-LOG_TAIL:],
            outputs=outputs,
        )
    return outputs


async def _call_tool(
    client: Client, args: McpInput, server: str
) -> tuple[mcp_types.CallToolResult, mcp_types.Implementation | None]:
    tools = await _list_tools(client, server)
    spec = tools.get(args.tool)
    if spec is None:
        raise _unknown_tool(args.tool, server, sorted(tools))
    _check_arguments(args, spec, server)
    try:
        result = await client.call_tool(args.tool, args.arguments)
    except MCPError as e:
        category: Category = "validation" if e.code == mcp_types.INVALID_PARAMS else "tool"
        raise ToolError(
            category, f"{server} rejected the call of tool '{args.tool}': {e.message}"
        ) from None
    return result, client.server_info


async def _cancellable(fn: Callable[[], Awaitable[T]]) -> T:
    """Run ``fn`` in a task of its own; on cancellation, stop it the anyio way and wait.

    See the module's docstring: the SDK's cleanup (stopping a stdio server) is shielded
    from anyio cancellation, not from a native ``Task.cancel``.
    """
    scope = anyio.CancelScope()

    async def run() -> T:
        with scope:
            return await fn()
        raise asyncio.CancelledError  # the scope was cancelled: the activity was

    task = asyncio.create_task(run())
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        scope.cancel()
        while not task.done():  # the SDK's shutdown is bounded (a few seconds)
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([task])
        raise


def _connect_error(args: McpInput, server: str, err: BaseException) -> ToolError:
    """Why the connection or handshake failed, from the innermost errors the SDK raised."""
    leaves = _leaves(err)
    for leaf in leaves:
        if isinstance(leaf, FileNotFoundError | PermissionError) and args.command is not None:
            what = "not found" if isinstance(leaf, FileNotFoundError) else "not executable"
            return ToolError(
                "validation",
                f"command {what}: '{args.command[0]}' (starting {server})",
                hint="install it on the worker, put it on PATH, or give its path",
            )
    for leaf in leaves:
        if isinstance(leaf, httpx2.HTTPStatusError):
            status = leaf.response.status_code
            return ToolError(
                status_category(status),
                f"{server} answered HTTP {status} {leaf.response.reason_phrase}",
                hint="check with.url (the MCP endpoint, often .../mcp) and with.headers",
            )
        if isinstance(leaf, httpx2.TransportError):
            return ToolError(
                "tool",
                f"cannot reach {server}: {error_reason(leaf)}",
                hint="check the URL and that the server is up; the task's retry policy applies",
            )
        if isinstance(leaf, MCPError) and args.command is not None:
            return ToolError(
                "tool",
                f"{server} ended the connection during the MCP handshake ({leaf.message}); "
                "its stderr is in the task's output",
                hint="run the command by hand to see why it stops",
            )
        if isinstance(leaf, MCPError) and leaf.code == mcp_types.METHOD_NOT_FOUND:
            return ToolError(
                "validation",
                f"{server} is not an MCP endpoint (HTTP 404 Not Found)",
                hint="check with.url: the MCP endpoint, often .../mcp",
            )
        if isinstance(leaf, MCPError):
            return ToolError("tool", f"{server} refused the MCP handshake: {leaf.message}")
    first = leaves[0]
    return ToolError(
        "tool", f"cannot connect to {server}: {type(first).__name__}: {error_reason(first)}"
    )


def _leaves(err: BaseException) -> list[BaseException]:
    if isinstance(err, BaseExceptionGroup):
        return [leaf for sub in err.exceptions for leaf in _leaves(sub)]
    return [err]


async def _list_tools(client: Client, server: str) -> dict[str, mcp_types.Tool]:
    tools: dict[str, mcp_types.Tool] = {}
    cursor: str | None = None
    for _ in range(_MAX_PAGES):
        try:
            page = await client.list_tools(cursor=cursor)
        except MCPError as e:
            raise ToolError("tool", f"{server} cannot list its tools: {e.message}") from None
        tools.update((t.name, t) for t in page.tools)
        cursor = page.next_cursor
        if not cursor:
            break
    return tools


def _unknown_tool(name: str, server: str, names: list[str]) -> ToolError:
    close = difflib.get_close_matches(name, names, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    listed = ", ".join(names[:_LISTED]) + (", ..." if len(names) > _LISTED else "")
    has = f"its tools: {listed}" if names else "it has no tools"
    return ToolError(
        "validation",
        f"{server} has no tool '{name}'{hint}; {has}",
        hint="fix with.tool in the plan",
    )


def _check_arguments(args: McpInput, spec: mcp_types.Tool, server: str) -> None:
    """Check the arguments against the tool's input schema, as the server would."""
    schema = spec.input_schema
    try:
        validator = jsonschema.validators.validator_for(schema)(schema)
        errors = sorted(validator.iter_errors(args.arguments), key=lambda e: list(e.path))
    except jsonschema.SchemaError:
        return  # the server's schema is broken: let the server judge the arguments
    if not errors:
        return
    problems = []
    for e in errors[:_LISTED]:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e.path)
        problems.append(f"with.arguments{where}: {e.message}")
    raise ToolError(
        "validation",
        f"arguments do not fit tool '{args.tool}' of {server}: " + "; ".join(problems),
        hint="fix with.arguments in the plan",
    )
