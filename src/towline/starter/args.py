"""The CLI's checks of its arguments and environment values, each with a message naming it.

Each check is an argparse ``type=``: a bad argument is reported by argparse, naming the
option, with exit code 2. An option that falls back to an environment variable has no
argparse default: :func:`settle` fills it from the variable (or the built-in default)
with the same check, and a bad value raises :class:`BadArgument` naming the variable.
An empty variable counts as unset, as in Temporal's own CLI.
"""

from __future__ import annotations

import argparse
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from towline import config
from towline.plan.limits import MAX_INTEGER

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
UI_URL_ENV = "TOWLINE_UI_URL"
MAX_CONCURRENT = 100_000  # activities a worker runs at once, at most


class BadArgument(ValueError):
    """An argument or environment value that cannot work (exit 2)."""


def _fail(message: str) -> argparse.ArgumentTypeError:
    return argparse.ArgumentTypeError(message)


def port(text: str) -> int:
    """A TCP port a server listens on: 1-65535."""
    return _port(text, low=1)


def port_or_off(text: str) -> int:
    """A TCP port, or 0 to turn the endpoint off."""
    return _port(text, low=0)


def _port(text: str, *, low: int) -> int:
    value = text.strip()
    if not value.isdigit() or not low <= int(value) <= 65535:
        raise _fail(f"not a port number: {_show(text)} (use {low}-65535)")
    return int(value)


def positive(text: str) -> int:
    """A whole number from 1 to :data:`MAX_CONCURRENT`."""
    value = text.strip()
    if not value.isdigit() or not 1 <= int(value) <= MAX_CONCURRENT:
        raise _fail(f"not a whole number from 1 to {MAX_CONCURRENT:,}: {_show(text)}")
    return int(value)


_HOST = re.compile(r"\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+")


def address(text: str) -> str:
    """A Temporal frontend's ``host:port`` (an IPv6 host in brackets: ``[::1]:7233``)."""
    host, sep, number = text.strip().rpartition(":")
    if not sep or not _HOST.fullmatch(host) or not number.isdigit():
        raise _fail(f"not host:port: {_show(text)} (e.g. localhost:7233)")
    if not 1 <= int(number) <= 65535:
        raise _fail(f"not a port number in {_show(text)} (use 1-65535)")
    return text.strip()


def name(text: str) -> str:
    """A namespace or task queue name: not empty, no surrounding spaces, not huge."""
    if not text.strip():
        raise _fail("must not be empty")
    if text != text.strip() or len(text) > 1000 or any(c in text for c in "\r\n\t\0"):
        raise _fail(f"not a usable name: {_show(text)}")
    return text


def plan_path(text: str) -> str:
    """A plan file's path: not empty (the loader says what else is wrong with it)."""
    if not text.strip():
        raise _fail("the path of a plan file must not be empty")
    return text


def run_ref(text: str) -> str:
    """A run id given to look a run up: not empty (the server says whether it exists)."""
    if not text.strip():
        raise _fail("a run id must not be empty")
    return text


def new_run_id(text: str) -> str:
    """A run id for a new run (``--id``), as the contract allows them."""
    from towline.starter.api import BadInput, check_run_id

    try:
        check_run_id(text)
    except BadInput as e:
        raise _fail(str(e)) from None
    return text


def host(text: str) -> str:
    """An address to listen on."""
    if not text.strip() or any(c.isspace() for c in text):
        raise _fail(f"not a host to listen on: {_show(text)}")
    return text


def log_level(text: str) -> str:
    value = text.strip().lower()
    if value not in LOG_LEVELS:
        raise _fail(f"not a log level: {_show(text)} (use {', '.join(LOG_LEVELS)})")
    return value


def log_format(text: str) -> str:
    value = text.strip().lower()
    if value not in LOG_FORMATS:
        raise _fail(f"not a log format: {_show(text)} (use {' or '.join(LOG_FORMATS)})")
    return value


def ui_url(text: str) -> str:
    if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", text.strip()):
        raise _fail(f"not an http(s) URL: {_show(text)} (e.g. http://localhost:8233)")
    return text.strip().rstrip("/")


def amount(text: str) -> float:
    """A finite number, 0 or more (a budget)."""
    try:
        value = float(text)
    except ValueError:
        raise _fail(f"{_show(text)} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise _fail(f"{_show(text)} must be a finite number, 0 or more")
    return value


def token_count(text: str) -> int:
    """A whole number of tokens, 0 or more."""
    value = amount(text)
    if not value.is_integer() or value > MAX_INTEGER:
        raise _fail(f"{_show(text)} must be a whole number of tokens")
    return int(value)


def rate(text: str) -> float:
    """Calls per second: a finite number above 0."""
    value = amount(text)
    if value <= 0:
        raise _fail(f"{_show(text)}: the rate must be above 0")
    return value


@dataclass(frozen=True)
class _FromEnv:
    variable: str
    check: Callable[[str], Any]
    default: Any


# Options that fall back to an environment variable, by argparse dest.
FROM_ENV: dict[str, _FromEnv] = {
    # No default here: unset, they come from the profile or temporal.toml, then the
    # defaults (towline.worker.client.settle); set, they are checked here.
    "address": _FromEnv("TEMPORAL_ADDRESS", address, None),
    "namespace": _FromEnv("TEMPORAL_NAMESPACE", name, None),
    "task_queue": _FromEnv("TOWLINE_TASK_QUEUE", name, config.DEFAULT_TASK_QUEUE),
    "http_port": _FromEnv("TOWLINE_HTTP_PORT", port_or_off, config.DEFAULT_HTTP_PORT),
    "http_host": _FromEnv("TOWLINE_HTTP_HOST", host, "0.0.0.0"),
    "log_format": _FromEnv("TOWLINE_LOG_FORMAT", log_format, "text"),
    "log_level": _FromEnv("TOWLINE_LOG_LEVEL", log_level, "info"),
}


def env_help(dest: str) -> str:
    """``(env X; default Y)`` for an option's help."""
    spec = FROM_ENV[dest]
    return f"(env {spec.variable}; default {spec.default})"


def settle(args: argparse.Namespace, *, links: bool = False) -> None:
    """Fill the options left unset from their environment variables, checked.

    ``links``: the command prints Web UI links, so ``TOWLINE_UI_URL`` is checked too.
    """
    for dest, spec in FROM_ENV.items():
        if getattr(args, dest, "absent") is None:
            setattr(args, dest, from_env(spec.variable, spec.check, spec.default))
    if links:
        from_env(UI_URL_ENV, ui_url, None)


def from_env(variable: str, check: Callable[[str], Any], default: Any) -> Any:
    raw = os.environ.get(variable, "")
    if not raw:
        return default
    try:
        return check(raw)
    except argparse.ArgumentTypeError as e:
        raise BadArgument(f"{variable}={_show(raw)}: {e}") from None


def _show(text: str) -> str:
    shown = repr(text)
    return shown if len(shown) <= 60 else shown[:57] + "..."
