"""How a ``towline`` command is declared: its name, its options and its handler, together.

Each command module (``towline.starter.commands.*``) registers its commands with
:func:`command`, the options written right above the code that reads them:

    @command(
        "status",
        "the run, its workstreams and tasks",
        CONNECTION,
        RUN,
        arg("--json", action="store_true"),
        links=True,
    )
    async def _status(args: argparse.Namespace) -> int:
        ...
        return OK

An option is anything that adds arguments to the command's parser: :func:`arg` (one
argument, with an optional shell completer), a shared group (:func:`CONNECTION`,
:func:`LOCAL_SERVER`, :func:`ENDPOINT`, :func:`RUN`, :func:`TASK`), or a function of the
parser for what needs more (sub-commands, mutually exclusive flags). Every command also
takes ``--profile``.
:func:`parser` builds the whole command line from what is registered, in the order the
modules registered it (``towline --help`` lists them so).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from towline import config, profiles
from towline.starter import args as checks
from towline.starter.completion import run_ids, task_ids

# Exit codes (docs/cli.md): success, a run that did not succeed, invalid input, no server.
OK, NOT_SUCCEEDED, BAD_INPUT, NO_SERVER = 0, 1, 2, 3

Handler = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]
Option = Callable[[argparse.ArgumentParser], object]
# What a completer gets from argcomplete: the word so far, and the arguments parsed so far.
Completer = Callable[..., Iterable[str]]
Connection = Literal["settled", "local", "own"]


class UsageError(Exception):
    """A bad argument: exit 2 with the message."""


@dataclass(frozen=True)
class Command:
    """A registered command.

    ``connection`` says how ``--address`` and ``--namespace`` are filled in before it
    runs, for a command that takes them: ``settled`` from the environment, the profile,
    temporal.toml, then the defaults; ``local`` a local dev server's (only the namespace
    is settled, and the connection is plain); ``own`` the command settles them itself.
    ``links``: it prints Web UI links, so ``TOWLINE_UI_URL`` is checked first.
    """

    name: str
    help: str
    run: Handler
    options: tuple[Option, ...] = ()
    description: str | None = None
    connection: Connection = "settled"
    links: bool = False


COMMANDS: dict[str, Command] = {}


def command(
    name: str,
    help: str,
    *options: Option,
    description: str | None = None,
    connection: Connection = "settled",
    links: bool = False,
) -> Callable[[Handler], Handler]:
    """Register the decorated coroutine as ``towline NAME``; it returns the exit code."""

    def register(run: Handler) -> Handler:
        if name in COMMANDS:
            raise ValueError(f"two commands are named {name!r}")
        COMMANDS[name] = Command(name, help, run, options, description, connection, links)
        return run

    return register


def arg(*names: str, completer: Completer | None = None, **kwargs: Any) -> Option:
    """One argument (``argparse.add_argument``'s), with a shell completer if given."""

    def add(p: argparse.ArgumentParser) -> argparse.Action:
        action = p.add_argument(*names, **kwargs)
        if completer is not None:
            action.completer = completer  # type: ignore[attr-defined]  # read by argcomplete
        return action

    return add


def options(p: argparse.ArgumentParser, *given: Option) -> argparse.ArgumentParser:
    """Add ``given`` to ``p`` (a command's parser, or a sub-command's); return ``p``."""
    for option in given:
        option(p)
    return p


# ---------------------------------------------------------------- shared option groups
# Options that fall back to an environment variable default to None here: checked and
# filled in by towline.starter.args.settle, so a bad value names its variable (exit 2).


def PROFILE(p: argparse.ArgumentParser) -> None:
    """``--profile``, which every command takes."""
    p.add_argument(
        "--profile",
        help=f"the profile of {profiles.FILE_NAME} to use (env {profiles.PROFILE_ENV}); "
        "its settings are defaults: flags and environment variables win",
    )


def CONNECTION(p: argparse.ArgumentParser) -> None:
    """Where the Temporal server is, and the task queue of towline's workers."""
    p.add_argument(
        "--address",
        type=checks.address,
        help="Temporal frontend host:port (env TEMPORAL_ADDRESS, else the profile, else "
        f"temporal.toml; default {config.DEFAULT_ADDRESS})",
    )
    p.add_argument(
        "--namespace",
        type=checks.name,
        help="Temporal namespace (env TEMPORAL_NAMESPACE, else the profile, else "
        f"temporal.toml; default {config.DEFAULT_NAMESPACE})",
    )
    p.add_argument(
        "--task-queue",
        type=checks.name,
        help=f"task queue of towline's workers {checks.env_help('task_queue')}",
    )


def LOCAL_SERVER(p: argparse.ArgumentParser) -> None:
    """The ports of the local dev server ``towline up`` and ``towline dev`` start."""
    p.add_argument("--port", type=checks.port, default=7233, help="the local server's port")
    p.add_argument(
        "--ui-port", type=checks.port, default=config.DEFAULT_UI_PORT, help="Web UI port"
    )


def ENDPOINT(p: argparse.ArgumentParser) -> None:
    """The worker's HTTP endpoint."""
    p.add_argument(
        "--http-port",
        type=checks.port_or_off,
        help="the worker's /metrics, /healthz and /readyz port; 0 turns it off "
        + checks.env_help("http_port"),
    )


def RUN(p: argparse.ArgumentParser) -> None:
    """A run id (``RUN``), completed from the server's runs."""
    arg("run_id", metavar="RUN", type=checks.run_ref, completer=run_ids)(p)


def TASK(p: argparse.ArgumentParser) -> None:
    """A task of that run (``TASK``: ``workstream.task``), completed from the run's tasks."""
    arg("task", metavar="TASK", help="workstream.task", completer=task_ids)(p)


# ---------------------------------------------------------------- the whole command line


def parser(commands: Iterable[Command] | None = None) -> argparse.ArgumentParser:
    """``towline``'s parser: each command (default: all registered) with its options."""
    p = argparse.ArgumentParser(prog="towline", description="Durable automation runs on Temporal.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for c in COMMANDS.values() if commands is None else commands:
        cp = sub.add_parser(c.name, help=c.help, description=c.description or c.help)
        options(cp, PROFILE, *c.options)
    return p


def activate_profile(argv: Sequence[str]) -> profiles.Activation:
    """Activate the profile ``--profile`` (or ``TOWLINE_PROFILE``) names, before parsing:
    a profile sets the defaults the parser reads."""
    p = argparse.ArgumentParser(add_help=False)
    PROFILE(p)
    known, _ = p.parse_known_args(argv)
    return profiles.activate(known.profile)
