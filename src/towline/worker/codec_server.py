"""``towline codec-server``: Temporal's codec server protocol, for the Web UI and the CLI.

The Web UI (and ``temporal workflow show --codec-endpoint``) sends the payloads it shows
to ``POST /decode`` and those a person types (a signal's input) to ``POST /encode``, as
the JSON of ``temporal.api.common.v1.Payloads``; the answer is the same shape. Payloads
never leave the machine that serves this: the UI calls it from the browser.

- CORS: only the UI origins given may call it from a browser (``--allow-origin``).
- An optional bearer token (``--token-file``): callers must send
  ``Authorization: Bearer <token>`` (in the UI's codec settings, "pass access token", or
  ``--codec-auth`` of the Temporal CLI).
"""

from __future__ import annotations

import hmac
import logging
import socket
from collections.abc import Sequence

from google.protobuf import json_format
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from temporalio.api.common.v1 import Payloads

from towline.config import ConfigError
from towline.worker import converter
from towline.worker.encryption import Keys

log = logging.getLogger("towline.codec_server")
_MAX_BODY = 8 * 1024 * 1024  # a page of the UI's payloads, with room to spare


def app(keys: Keys | None, *, origins: Sequence[str], token: str | None = None) -> Starlette:
    """The codec server as an ASGI application."""
    codec = converter.codec(keys)

    async def handle(request: Request) -> Response:
        if token is not None:
            sent = request.headers.get("authorization", "")
            if not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
                return JSONResponse({"error": "a bearer token is required"}, status_code=401)
        body = await request.body()
        if len(body) > _MAX_BODY:
            return JSONResponse({"error": "too large"}, status_code=413)
        try:
            payloads = json_format.Parse(body, Payloads())
        except json_format.ParseError as e:
            return JSONResponse({"error": f"not a Payloads JSON object: {e}"}, status_code=400)
        work = codec.encode if request.url.path == "/encode" else codec.decode
        try:
            done = await work(list(payloads.payloads))
        except ConfigError as e:  # a key it does not hold: say which
            return JSONResponse({"error": str(e)}, status_code=400)
        return Response(
            json_format.MessageToJson(Payloads(payloads=done)), media_type="application/json"
        )

    return Starlette(
        routes=[
            Route("/encode", handle, methods=["POST"]),
            Route("/decode", handle, methods=["POST"]),
        ],
        middleware=[
            Middleware(
                CORSMiddleware,
                allow_origins=list(origins),
                allow_methods=["POST", "OPTIONS"],
                allow_headers=["Content-Type", "X-Namespace", "Authorization"],
                allow_credentials=True,
            )
        ],
    )


async def serve(
    keys: Keys | None,
    *,
    host: str,
    port: int,
    origins: Sequence[str],
    token: str | None = None,
) -> None:
    """Serve until SIGINT or SIGTERM; :class:`ConfigError` when the port cannot be bound."""
    import uvicorn

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise ConfigError(f"--port {port}: cannot listen on {host}:{port}: {e.strerror}") from None
    what = (
        f"decrypting with keys {', '.join(keys.ids)} ({keys.source})"
        if keys
        else "no TOWLINE_ENCRYPTION_KEYS: decompressing only"
    )
    bound = sock.getsockname()[1]
    print(  # the one line a person starting it needs
        f"codec server on http://{host}:{bound} ({what}); Web UI origins: {', '.join(origins)}"
        + ("; bearer token required" if token else ""),
        flush=True,
    )
    config = uvicorn.Config(
        app(keys, origins=origins, token=token), log_level="warning", lifespan="off"
    )
    await uvicorn.Server(config).serve(sockets=[sock])
