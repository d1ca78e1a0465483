"""A small real MCP server for the ``mcp`` tool's tests, built with the SDK's MCPServer.

    python mcp_server.py stdio          # speak MCP on stdin/stdout
    python mcp_server.py http PORT      # streamable HTTP on 127.0.0.1:PORT/mcp

With ``MCP_TEST_PID_FILE`` set, it appends its pid to that file as it starts, so a test
can check that the server is gone after its task. With ``MCP_TEST_PRINT`` set, it prints
that text on stdout as it starts, as a careless server does: over stdio, a line the
client cannot read as a message.
"""

from __future__ import annotations

import os
import sys

if os.environ.get("MCP_TEST_PID_FILE"):  # first, before the slow imports
    with open(os.environ["MCP_TEST_PID_FILE"], "a") as pid_file:
        pid_file.write(f"{os.getpid()}\n")

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel

server = MCPServer("towline-test-server", log_level="WARNING")


class Point(BaseModel):
    x: int
    y: int


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def point(x: int, y: int) -> Point:
    """A point: structured content."""
    return Point(x=x, y=y)


@server.tool()
def echo(text: str) -> str:
    """Return the text."""
    return text


@server.tool()
def fail(message: str) -> str:
    """Always fails, with the message."""
    raise ToolError(message)


@server.tool()
def environment(name: str) -> str:
    """The value of an environment variable of the server, or '<unset>'."""
    return os.environ.get(name, "<unset>")


@server.tool()
def where() -> str:
    """The server's working folder."""
    return os.getcwd()


@server.tool()
def shout(text: str) -> str:
    """Write the text to stderr (the server's log)."""
    print(f"shouting: {text}", file=sys.stderr, flush=True)
    return "shouted"


@server.tool()
async def sleep(seconds: float) -> str:
    """Answer after a while."""
    await anyio.sleep(seconds)
    return "awake"


def main() -> None:
    if os.environ.get("MCP_TEST_PRINT"):
        print(os.environ["MCP_TEST_PRINT"], flush=True)
    if sys.argv[1] == "stdio":
        server.run("stdio")
    else:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))


if __name__ == "__main__":
    main()
