"""The ``towline`` command line: a thin layer over :mod:`towline.starter.api`.

Its contract with users is docs/cli.md (commands, options, exit codes, ``--json``) and
docs/plan.md (the plan file): extend them, never break them.

Each command lives with its options in a module of :mod:`towline.starter.commands`
(registered through :mod:`towline.starter.registry`); this module runs one: it reads
the profile, parses, settles the connection, runs the command and turns every expected
failure into its message and exit code (0 success, 1 a run that did not succeed, 2
invalid input, 3 no server). The process leaves through ``os._exit`` after flushing, so
its exit code never depends on interpreter finalisation (temporalio 1.35 sometimes
aborts there: sdk-python#300).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from temporalio.service import RPCError, RPCStatusCode

from towline import config
from towline.plan.load import PlanError
from towline.starter import api, completion
from towline.starter import args as checks
from towline.starter.commands import common  # importing the package registers every command
from towline.starter.registry import (
    BAD_INPUT,
    COMMANDS,
    NO_SERVER,
    NOT_SUCCEEDED,
    OK,
    Connection,
    UsageError,
    activate_profile,
    parser,
)
from towline.starter.schedules import ScheduleError
from towline.store import StoreError
from towline.worker import client as temporal_client
from towline.worker.client import BadAddress, ServerUnreachable, UnknownNamespace


def run_cli(argv: Sequence[str] | None = None) -> int:
    """Run one command and return its exit code (never raises for expected failures)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    err = common.err()
    try:
        activate_profile(argv)  # before the parser: a profile sets its defaults
        p = parser()
        completion.complete(p)  # when the shell asks for completions: answer, and exit
        args = p.parse_args(argv)
    except SystemExit as e:  # argparse already printed the problem
        return OK if e.code in (0, None) else BAD_INPUT
    except config.ConfigError as e:
        err.print(f"towline: {e}", markup=False)
        return BAD_INPUT
    try:
        command = COMMANDS[args.command]
        checks.settle(args, links=command.links)  # the environment's values, checked
        _settle_connection(args, command.connection)  # the profile's, temporal.toml's...
        return asyncio.run(command.run(args))
    except PlanError as e:
        err.print(str(e), markup=False)
        return BAD_INPUT
    except (
        api.UnknownRun,
        api.RunExists,
        api.Refused,
        api.BadInput,
        checks.BadArgument,
        BadAddress,
        UnknownNamespace,
        UsageError,
        config.ConfigError,
        ScheduleError,
        StoreError,
    ) as e:
        err.print(f"towline: {e}", markup=False)
        return BAD_INPUT
    except ServerUnreachable as e:
        err.print(f"towline: {e}\n  {_unreachable_hint(e)}", markup=False)
        return NO_SERVER
    except api.NoWorker as e:
        err.print(f"towline: {e}", markup=False)
        return NO_SERVER
    except RPCError as e:
        code, message = _refused(e, args.address if "address" in args else None)
        err.print(f"towline: {message}", markup=False)
        return code
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        if os.environ.get("TOWLINE_DEBUG"):
            raise
        err.print(
            f"towline: unexpected error: {type(e).__name__}: {e} (set TOWLINE_DEBUG=1 for details)",
            markup=False,
        )
        return NOT_SUCCEEDED


def _settle_connection(args: argparse.Namespace, how: Connection) -> None:
    """Fill in ``--address`` and ``--namespace`` when not given, from the lower sources
    (the profile, temporal.toml, the defaults): see :class:`~towline.starter.registry.Command`."""
    if not hasattr(args, "address") or how == "own":
        return
    local = how == "local"
    conn = temporal_client.settle(args.address, args.namespace, plain=local)
    if not local:
        args.address = conn.address
    args.namespace = conn.namespace


def _unreachable_hint(e: ServerUnreachable) -> str:
    text = str(e)
    if "TLS" in text or "credentials" in text:
        return "see `towline config show` for the settings in use"
    return "start a local one with `towline up`, or pass --address (or --profile)"


# What the server says about a request, as input that cannot work (2); any other
# refusal (unavailable, overloaded, not allowed, timed out) is the server's (3).
_INPUT_REFUSED = (
    RPCStatusCode.INVALID_ARGUMENT,
    RPCStatusCode.NOT_FOUND,
    RPCStatusCode.ALREADY_EXISTS,
    RPCStatusCode.FAILED_PRECONDITION,
    RPCStatusCode.OUT_OF_RANGE,
)


def _refused(error: RPCError, address: str | None) -> tuple[int, str]:
    """The exit code and message for a request the Temporal server refused."""
    where = f" at {address}" if address else ""
    reason = f"{error.status.name.lower()}: {error.message}"
    if error.status in _INPUT_REFUSED:
        return BAD_INPUT, f"the Temporal server{where} rejected the request ({reason})"
    return NO_SERVER, f"the Temporal server{where} refused the request ({reason})"


def main() -> NoReturn:
    code = run_cli()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
