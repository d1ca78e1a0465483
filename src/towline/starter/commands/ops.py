"""The operator's commands: ``towline config show``, ``gc`` and ``codec-server``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from rich.console import Console

from towline import config, history, profiles
from towline.durations import parse_duration
from towline.retention import policy
from towline.starter.registry import CONNECTION, PROFILE, arg, command, options
from towline.worker import client as temporal_client
from towline.worker import encryption

# ---------------------------------------------------------------- config show


def _source(variable: str, *, flag: str | None = None, given: object = None) -> str:
    if given:
        return f"flag {flag}"
    activation = profiles.active()
    if variable in activation.applied:
        return f"profile {activation.profile}"
    if os.environ.get(variable):
        return f"env {variable}"
    return "default"


def effective_settings(args: argparse.Namespace) -> list[tuple[str, str, str]]:
    """(setting, value, where it comes from), secrets masked."""
    env = os.environ
    rows: list[tuple[str, str, str]] = []
    activation = profiles.active()
    where = f"{activation.file}" if activation.file else "no towline.toml found"
    rows.append(("profile", activation.profile or "(none)", where))

    conn = temporal_client.settle(args.address, args.namespace)
    for name, var, flag, value in (
        ("address", "TEMPORAL_ADDRESS", "--address", conn.address),
        ("namespace", "TEMPORAL_NAMESPACE", "--namespace", conn.namespace),
    ):
        src = _source(var, flag=flag, given=getattr(args, name))
        if src == "default" and value not in (config.DEFAULT_ADDRESS, config.DEFAULT_NAMESPACE):
            src = "temporal.toml"
        rows.append((name, value, src))
    queue = env.get("TOWLINE_TASK_QUEUE") or config.DEFAULT_TASK_QUEUE
    rows.append(("task_queue", queue, _source("TOWLINE_TASK_QUEUE")))

    if conn.tls is False:
        rows.append(("tls", "off", "default"))
    else:
        rows.append(("tls", "on", _tls_source(conn)))
        for key, var in (
            ("tls.server_ca_cert", "TEMPORAL_TLS_SERVER_CA_CERT_PATH"),
            ("tls.server_name", "TEMPORAL_TLS_SERVER_NAME"),
            ("tls.client_cert", "TEMPORAL_TLS_CLIENT_CERT_PATH"),
            ("tls.client_key", "TEMPORAL_TLS_CLIENT_KEY_PATH"),
        ):
            if env.get(var):
                rows.append((key, env[var], _source(var)))
    if conn.api_key:
        src = "env TEMPORAL_API_KEY" if env.get("TEMPORAL_API_KEY") else ""
        if not src and env.get(temporal_client.API_KEY_FILE_ENV):
            src = (
                f"file {env[temporal_client.API_KEY_FILE_ENV]} "
                f"({_source(temporal_client.API_KEY_FILE_ENV)})"
            )
        rows.append(("api_key", "**** (set)", src or "temporal.toml"))
    else:
        rows.append(("api_key", "(none)", "default"))

    keys = encryption.keys_from_environment(env)
    if keys is None:
        rows.append(("encryption", "off", "default"))
    else:
        rows.append(
            (
                "encryption",
                f"AES-256-GCM, encrypting with '{keys.current}'; decrypting with "
                + ", ".join(f"'{k}'" for k in keys.ids),
                f"{env[encryption.KEYS_ENV]} ({_source(encryption.KEYS_ENV)})",
            )
        )

    rows.append(("home", str(config.home()), _source("TOWLINE_HOME")))
    if env.get("TOWLINE_STORE"):
        rows.append(
            ("store", history.without_password(env["TOWLINE_STORE"]), _source("TOWLINE_STORE"))
        )
    rows.append(
        ("history", history.without_password(history.location()), _source("TOWLINE_HISTORY"))
    )
    rows.append(
        ("log_format", env.get("TOWLINE_LOG_FORMAT", "text"), _source("TOWLINE_LOG_FORMAT"))
    )
    rows.append(("log_level", env.get("TOWLINE_LOG_LEVEL", "info"), _source("TOWLINE_LOG_LEVEL")))
    retention = policy.from_environment(env)
    for kind, text in retention.describe().items():
        kind_var = policy.variable(kind)  # type: ignore[arg-type]
        rows.append((f"retention.{kind}", text, _source(kind_var)))
    daily = env.get("TOWLINE_GC_DAILY_AT")
    rows.append(
        (
            "retention.daily_at",
            f"{daily} UTC" if daily else "(no schedule)",
            _source("TOWLINE_GC_DAILY_AT"),
        )
    )
    return rows


def _tls_source(conn: temporal_client.Connection) -> str:
    for var in (
        "TEMPORAL_TLS_SERVER_CA_CERT_PATH",
        "TEMPORAL_TLS_CLIENT_CERT_PATH",
        "TEMPORAL_TLS",
    ):
        if os.environ.get(var):
            return _source(var)
    return "api key (system CAs)" if conn.api_key else "temporal.toml"


def _show(c: argparse.ArgumentParser) -> None:
    show = c.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    options(
        show.add_parser(
            "show", help="print the effective settings and where each comes from; secrets masked"
        ),
        PROFILE,
        CONNECTION,
        arg("--json", action="store_true", help="one JSON object"),
    )


@command(
    "config",
    "the settings in effect (profile, connection, storage, retention)",
    _show,
    connection="own",
)
async def _config(args: argparse.Namespace) -> int:
    rows = effective_settings(args)
    if args.json:
        out = {name: {"value": value, "from": src} for name, value, src in rows}
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
        return 0
    from rich.table import Table

    grid = Table(show_edge=False)
    for col in ("setting", "value", "from"):
        grid.add_column(col, overflow="fold")
    for row in rows:
        grid.add_row(*row)
    console = Console(highlight=False, soft_wrap=True)
    if not console.is_terminal:
        console.width = max(console.width, 160)
    console.print(grid)
    return 0


# ---------------------------------------------------------------- gc


@command(
    "gc",
    "remove what finished runs left behind (workspaces, artifacts, history rows, cache "
    "entries) past their retention; never what an open run needs",
    CONNECTION,
    arg(
        "--older-than",
        metavar="D",
        help="one retention for every kind, e.g. 3d (default: the profile's, per kind)",
    ),
    arg("--dry-run", action="store_true", help="say what would go; remove nothing"),
    arg("--json", action="store_true", help="one JSON object"),
)
async def _gc(args: argparse.Namespace) -> int:
    from towline.retention import collect

    older_than = None
    if args.older_than is not None:
        try:
            older_than = parse_duration(args.older_than)
        except ValueError as e:
            raise config.ConfigError(f"--older-than: {e}") from None
    retention = policy.from_environment(older_than=older_than)
    client = await temporal_client.connect(args.address, args.namespace)
    report = await collect.collect(client, retention, dry_run=args.dry_run)
    if args.json:
        sys.stdout.write(json.dumps(report.as_json(), indent=2) + "\n")
        return 0
    console = Console(highlight=False, soft_wrap=True)
    for line in report.lines():
        console.print(line, markup=False)
    return 0


# ---------------------------------------------------------------- codec server


@command(
    "codec-server",
    "decode encrypted payloads for the Temporal Web UI and CLI (the codec server protocol)",
    arg("--port", type=int, default=8888, help="default %(default)s"),
    arg("--host", default="127.0.0.1", help="default %(default)s"),
    arg(
        "--allow-origin",
        action="append",
        default=[],
        metavar="URL",
        help="a Web UI origin allowed to call it (CORS), e.g. https://temporal.example.com; "
        f"repeatable (default http://localhost:{config.DEFAULT_UI_PORT})",
    ),
    arg(
        "--token-file",
        default=os.environ.get("TOWLINE_CODEC_TOKEN_FILE"),
        help="a file holding a token callers must send as 'Authorization: Bearer <token>' "
        "(env TOWLINE_CODEC_TOKEN_FILE; default: no token asked)",
    ),
)
async def _codec_server(args: argparse.Namespace) -> int:
    from towline.worker import codec_server

    token = None
    if args.token_file:
        try:
            token = Path(args.token_file).read_text().strip()
        except OSError as e:
            raise config.ConfigError(f"--token-file {args.token_file}: {e.strerror}") from None
        if not token:
            raise config.ConfigError(f"--token-file {args.token_file}: the file is empty")
    origins = args.allow_origin or [f"http://localhost:{config.DEFAULT_UI_PORT}"]
    keys = encryption.keys_from_environment()
    await codec_server.serve(keys, host=args.host, port=args.port, origins=origins, token=token)
    return 0
