"""The worker's HTTP endpoint: ``/metrics``, ``/healthz`` and ``/readyz`` on one port.

A deliberately small HTTP/1.1 server on the worker's event loop (GET and HEAD, one
request per connection): it is what Prometheus, Docker, Kubernetes and systemd probes
need, and serving it from the loop means ``/healthz`` answers only while the loop runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus

log = logging.getLogger("towline.worker.http")

_REQUEST_TIMEOUT = 10.0  # seconds a client gets to send its request
_MAX_HEADER_LINES = 100
_TEXT = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class Readiness:
    """Whether the worker is ready, and why not when it is not."""

    ready: bool
    reason: str = ""


@dataclass(frozen=True)
class Probes:
    """What the endpoint reports: the metrics page (body, content type) and readiness."""

    metrics: Callable[[], Awaitable[tuple[bytes, str]]]
    readiness: Callable[[], Awaitable[Readiness]]


class EndpointError(Exception):
    """The endpoint cannot serve on the port it was given (e.g. the port is taken)."""


class HttpEndpoint:
    """Serves :class:`Probes` on ``host:port`` (port 0: any free port) while entered."""

    def __init__(self, probes: Probes, *, host: str, port: int) -> None:
        self._probes = probes
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """The port actually bound (useful when asked for port 0)."""
        if self._server is None:
            raise RuntimeError("the endpoint is not serving")
        return int(self._server.sockets[0].getsockname()[1])

    async def __aenter__(self) -> HttpEndpoint:
        try:
            self._server = await asyncio.start_server(self._handle, self._host, self._port)
        except OSError as e:
            raise EndpointError(
                f"cannot serve /metrics on {self._host}:{self._port}: {e.strerror}; "
                "pass --http-port with a free port, or 0 to turn the endpoint off",
            ) from None
        log.info("serving /metrics, /healthz and /readyz on %s:%d", self._host, self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            method, path = await asyncio.wait_for(_read_request(reader), _REQUEST_TIMEOUT)
            status, body, content_type = await self._route(method, path)
            head = (
                f"HTTP/1.1 {status.value} {status.phrase}\r\n"
                f"Content-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\n"
                "Cache-Control: no-store\r\n"
                "Connection: close\r\n\r\n"
            )
            writer.write(head.encode() + (b"" if method == "HEAD" else body))
            await writer.drain()
        except (TimeoutError, ConnectionError, _BadRequest, asyncio.IncompleteReadError):
            pass  # a client that went away or spoke nonsense gets nothing more
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _route(self, method: str, path: str) -> tuple[HTTPStatus, bytes, str]:
        if method not in ("GET", "HEAD"):
            return HTTPStatus.METHOD_NOT_ALLOWED, b"only GET and HEAD\n", _TEXT
        path = path.split("?", 1)[0]
        if path == "/healthz":
            return HTTPStatus.OK, b"ok\n", _TEXT
        if path == "/readyz":
            r = await self._probes.readiness()
            if r.ready:
                return HTTPStatus.OK, b"ready\n", _TEXT
            return HTTPStatus.SERVICE_UNAVAILABLE, f"not ready: {r.reason}\n".encode(), _TEXT
        if path == "/metrics":
            try:
                body, content_type = await self._probes.metrics()
            except Exception as e:
                log.warning("cannot collect metrics: %s", e)
                return HTTPStatus.INTERNAL_SERVER_ERROR, f"{e}\n".encode(), _TEXT
            return HTTPStatus.OK, body, content_type
        return HTTPStatus.NOT_FOUND, b"try /metrics, /healthz or /readyz\n", _TEXT


class _BadRequest(Exception):
    pass


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str]:
    """The method and path of one request; its headers are read and ignored."""
    parts = (await reader.readline()).decode("latin-1").split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise _BadRequest
    for _ in range(_MAX_HEADER_LINES):
        if (await reader.readline()) in (b"\r\n", b"\n", b""):
            return parts[0], parts[1]
    raise _BadRequest
