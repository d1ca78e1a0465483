"""``towline dashboard``: serve the dashboard until stopped (``towline up`` starts it too).

It prints one line: the address to open, with the answering token in the link's
fragment (``#token=...``): the page keeps it, and a fragment never reaches a server's
logs or another site's ``Referer`` (towline.dashboard.serve).
"""

from __future__ import annotations

import argparse
import os
import socket

from towline.config import ConfigError
from towline.dashboard import serve
from towline.dashboard.serve import DEFAULT_PORT, TOKEN_FILE_ENV, USER_HEADER_ENV
from towline.starter.registry import CONNECTION, arg, command


@command(
    "dashboard",
    "a web page of runs: their graph of tasks by status, what waits for whom "
    "(answerable there), durations, attempts and costs, logs",
    CONNECTION,
    arg("--port", type=int, default=DEFAULT_PORT, help="default %(default)s"),
    arg(
        "--host",
        default="127.0.0.1",
        help="the address to listen on (default %(default)s: this machine only)",
    ),
    arg(
        "--token-file",
        default=os.environ.get(TOKEN_FILE_ENV),
        help="a file holding the token that answering needs (env "
        f"{TOKEN_FILE_ENV}; default: a new token, printed in the link)",
    ),
    arg(
        "--user-header",
        default=os.environ.get(USER_HEADER_ENV),
        metavar="HEADER",
        help="behind an authenticating proxy: the header naming the signed-in user "
        f"(e.g. X-Forwarded-User), which then may answer (env {USER_HEADER_ENV})",
    ),
    arg(
        "--trusted-proxy",
        action="append",
        default=[],
        metavar="ADDRESS",
        help="an address the proxy connects from; only its --user-header is believed "
        "(repeatable; default 127.0.0.1 and ::1)",
    ),
)
async def _dashboard(args: argparse.Namespace) -> int:
    import uvicorn

    from towline.dashboard.app import Access, Dashboard, build_app
    from towline.starter.local import ui_url_for
    from towline.worker.client import connect

    token = serve.read_token(args.token_file)
    access = Access(
        token=token,
        user_header=args.user_header or None,
        trusted_proxies=frozenset(args.trusted_proxy or ("127.0.0.1", "::1")),
    )
    client = await connect(args.address, args.namespace)
    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as e:
        sock.close()
        raise ConfigError(
            f"--port {args.port}: cannot listen on {args.host}:{args.port}: {e.strerror}"
        ) from None
    port = sock.getsockname()[1]
    dashboard = Dashboard(
        client=client,
        namespace=args.namespace,
        ui_base=ui_url_for(args.address),
        access=access,
    )
    print(f"dashboard: {serve.link(args.host, port, token)}", flush=True)
    if access.user_header:
        print(
            f"answers also from users named by {access.user_header} "
            f"(from {', '.join(sorted(access.trusted_proxies))})",
            flush=True,
        )
    server = uvicorn.Server(
        uvicorn.Config(
            build_app(dashboard),
            log_level="warning",
            access_log=False,
            # An open page keeps a connection: stop without waiting for it to close.
            timeout_graceful_shutdown=2,
        )
    )
    await server.serve(sockets=[sock])
    return 0
