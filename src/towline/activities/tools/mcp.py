"""``mcp``: call one tool on an MCP server, with the official ``mcp`` SDK.

The server is a command started for the call and spoken to over stdio (``command``, run
in the workspace like ``shell`` runs commands: same environment, without the worker's
secrets), or an endpoint spoken to over streamable HTTP (``url``). The server's stderr
goes to a log artifact (``outputs.log``), redacted of secrets.

Before calling, the tool lists the server's tools and checks the arguments against the
tool's input schema, so a mistake in the plan fails once, clearly, instead of being
retried. How failures are categorised:

- no tool of that name, or arguments that do not fit its schema: ``validation``, naming
  the tool (and the tools the server has);
- a ``command`` that cannot be run (not found, not executable): ``validation``;
- a server that exits, cannot be reached or does not answer the handshake within
  ``connect_timeout``: ``tool`` (the server's trouble; the task's retries apply);
- the tool answers with ``isError``: ``tool``, its text in the message;
- the server rejects the call with a JSON-RPC error: ``validation`` for invalid
  parameters, ``tool`` otherwise.

No server outlives its task (see :mod:`towline.activities.mcp_session`, which holds the
SDK's part and is imported on the first call: the SDK is slow to import, and the CLI,
which reads this module to check plans, never needs it).
"""

from __future__ import annotations

import shlex
import tempfile
from datetime import timedelta
from typing import Any, TextIO, cast

from pydantic import Field, model_validator
from temporalio import activity

from towline.activities import secrets
from towline.activities.artifacts import artifact_ref, write_artifact
from towline.activities.base import ToolInput, redact, tool
from towline.errors import ToolError
from towline.plan.spec import Duration
from towline.toolcall import ToolContext

LOG_TAIL = 4 * 1024  # characters of a failed tool's text, or else of stderr, kept with it
_SUMMARY = 200  # characters of a command line quoted in messages
_LOG_MAX = 1024 * 1024  # bytes of the server's stderr kept in its log artifact (the end)


class McpInput(ToolInput):
    """A tool call on an MCP server: give ``command`` (stdio) or ``url`` (HTTP)."""

    command: list[str] | None = Field(
        None, min_length=1, description="argv of a server to start and speak to over stdio"
    )
    url: str | None = Field(None, description="a streamable HTTP endpoint, e.g. http://host/mcp")
    env: dict[str, str] = Field(
        default_factory=dict, description="command: variables added to its environment"
    )
    cwd: str | None = Field(
        None, description="command: its working folder, relative to the workspace"
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description="url: HTTP headers sent with each request"
    )
    tool: str = Field(min_length=1, description="the name of the tool to call")
    arguments: dict[str, Any] = Field(default_factory=dict, description="the tool's arguments")
    connect_timeout: Duration = Field(
        timedelta(seconds=30), description="how long the server may take to start and answer"
    )

    @model_validator(mode="after")
    def _one_server(self) -> McpInput:
        if (self.command is None) == (self.url is None):
            raise ValueError("give 'command' (stdio) or 'url' (streamable HTTP), exactly one")
        if self.url is not None and (self.env or self.cwd is not None):
            raise ValueError("'env' and 'cwd' go with 'command', not 'url'")
        if self.command is not None and self.headers:
            raise ValueError("'headers' go with 'url', not 'command'")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError("'url' must start with http:// or https://")
        return self


@tool("mcp", McpInput, "Call a tool on an MCP server (stdio command or streamable HTTP).")
async def mcp(args: McpInput, ctx: ToolContext) -> dict[str, Any]:
    """Outputs: ``structured`` (the tool's structured content, or null), ``text`` (its text
    content, joined), ``content`` (every content item), ``is_error``, ``server`` (its name)
    and, for a ``command``, ``log`` (the artifact holding the server's stderr).
    """
    from towline.activities import mcp_session

    info = activity.info()
    server = _describe(args)
    log_name = f"mcp-{info.activity_id}-{info.attempt}.log"
    log_ref = artifact_ref(ctx, log_name) if args.command is not None else None
    # A real file: the server writes its stderr to it directly.
    with cast(TextIO, tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")) as errlog:
        try:
            return await mcp_session.call(args, ctx, server, errlog, log_ref)
        except ToolError as e:
            if log_ref is not None:
                e.output = e.output or _redacted(_read(errlog))[-LOG_TAIL:]
                e.outputs.setdefault("log", log_ref)
            raise
        finally:
            if log_ref is not None:
                write_artifact(ctx, log_name, _redacted(_read(errlog)))


def _describe(args: McpInput) -> str:
    if args.command is not None:
        line = shlex.join(args.command)
        if len(line) > _SUMMARY:
            line = line[: _SUMMARY - 3] + "..."
        return f"the MCP server `{line}`"
    return f"the MCP server at {args.url}"


def _read(log: TextIO) -> str:
    """The server's stderr so far (about its last :data:`_LOG_MAX` bytes)."""
    log.flush()
    size = log.seek(0, 2)
    log.seek(max(0, size - _LOG_MAX))
    return log.read()


def _redacted(text: str) -> str:
    return str(redact(text, {value: value for value in secrets.values()}))
