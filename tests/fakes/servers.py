"""A real HTTP server on 127.0.0.1 and a free port, run in a thread for one test.

Each test gives it a function from :class:`Request` to :class:`Reply`; the server keeps
every request it got, so a test can check what the tool really sent. A handler that must
be slow waits on :attr:`LocalServer.release`, which closing the server sets, so no
thread outlives its test.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

SLOW_LIMIT = 60.0  # seconds a slow reply waits at most, should a test forget to close


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # names in lower case
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    body: bytes | str = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of_json(cls, value: Any, status: int = 200, **headers: str) -> Reply:
        return cls(status, json.dumps(value), {"Content-Type": "application/json", **headers})


Handler = Callable[[Request], Reply]


class LocalServer:
    """``with LocalServer(handler) as server: ... server.url ...``"""

    def __init__(self, handler: Handler, *, port: int = 0) -> None:
        self.handler = handler
        self.requests: list[Request] = []
        self.release = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), _handler_class(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_slowly(self) -> None:
        """Block a handler until the test ends (or :data:`SLOW_LIMIT`)."""
        self.release.wait(SLOW_LIMIT)

    def __enter__(self) -> LocalServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()


def _handler_class(server: LocalServer) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes; with Nagle's algorithm the second waits
        # for the client's delayed ACK of the first (40 ms on Linux) on a kept-alive
        # connection, which made every reply 40 ms slower than the server is.
        disable_nagle_algorithm = True

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            parts = urlsplit(self.path)
            request = Request(
                method=self.command,
                path=parts.path,
                query=parse_qs(parts.query),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=self.rfile.read(length) if length else b"",
            )
            server.requests.append(request)
            reply = server.handler(request)
            body = reply.body.encode() if isinstance(reply.body, str) else reply.body
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the tests read server.requests, not a log

    return _Handler
