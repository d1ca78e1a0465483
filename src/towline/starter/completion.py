"""Shell completion for ``towline`` (argcomplete): commands and options come from the
parser; run ids and task ids from the Temporal server the command would talk to.

``towline completion bash`` (or zsh, fish, tcsh) prints the shell's hook. A completer
asks the server named by the command line so far (``--address``, ``--namespace``,
``--profile``, then the environment, the profile and temporal.toml, as the command
would), within :data:`TIMEOUT`. Whatever goes wrong (no server, a bad flag, a slow
answer) completes nothing: a completion never prints an error into the shell.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
from collections.abc import Awaitable, Callable
from typing import Any

from temporalio.client import Client

from towline import profiles

# Seconds a completion may wait for the server, connecting included.
TIMEOUT = 2.0
# Run ids offered when nothing is typed yet: the newest.
NEWEST = 200
_RUN_ID = re.compile(r"[A-Za-z0-9._-]*")


def run_ids(prefix: str, parsed_args: argparse.Namespace, **_: Any) -> list[str]:
    """The ids of runs starting with ``prefix``, newest first."""

    async def ask(client: Client) -> list[str]:
        from towline.starter import api

        query = f'WorkflowId STARTS_WITH "{prefix}"' if prefix else None
        return [r.run_id async for r in api.list_runs(client, query=query, limit=NEWEST)]

    if not _RUN_ID.fullmatch(prefix):  # no run id looks like that
        return []
    return _asked(parsed_args, ask)


def task_ids(prefix: str, parsed_args: argparse.Namespace, **_: Any) -> list[str]:
    """The run's tasks (``workstream.task``); for an answer (``approve``, ``retry``...,
    ``answer`` to an agent's question), only the tasks waiting for it."""
    run_id = getattr(parsed_args, "run_id", None)
    if not run_id:
        return []

    async def ask(client: Client) -> list[str]:
        from towline.starter import api
        from towline.starter.views import ANSWERS

        # A wide run's status leaves tasks out: once a workstream is typed, ask for its.
        typed = [prefix.split(".", 1)[0]] if "." in prefix else None
        state = await api.get_status(client, run_id, workstreams=typed)
        command = getattr(parsed_args, "command", None)
        answers = {"answer": ("answer",), **ANSWERS}  # what each wait takes
        if not any(command in taken for taken in answers.values()):
            return [f"{w}.{t}" for w, ws in state.workstreams.items() for t in ws.tasks]
        return [
            f"{wid}.{tid}"
            for wid, ws in state.workstreams.items()
            for tid, t in ws.tasks.items()
            if t.status == "waiting" and command in answers.get(t.waiting_for or "", ())
        ]

    return [t for t in _asked(parsed_args, ask) if t.startswith(prefix)]


def _asked(
    parsed_args: argparse.Namespace, ask: Callable[[Client], Awaitable[list[str]]]
) -> list[str]:
    try:
        return asyncio.run(asyncio.wait_for(_with_client(parsed_args, ask), TIMEOUT))
    except Exception:  # nothing to offer: never a message in the middle of a command line
        return []


async def _with_client(
    parsed_args: argparse.Namespace, ask: Callable[[Client], Awaitable[list[str]]]
) -> list[str]:
    from towline.worker.client import connect

    profiles.activate(getattr(parsed_args, "profile", None))
    # Flags first, then the environment, the profile, temporal.toml and the defaults.
    address = getattr(parsed_args, "address", None)
    namespace = getattr(parsed_args, "namespace", None)
    return await ask(await connect(address, namespace, timeout=TIMEOUT))


def complete(p: argparse.ArgumentParser) -> None:
    """When the shell asks (argcomplete's ``_ARGCOMPLETE``), print the completions of the
    command line it gives and exit; otherwise return at once."""
    if "_ARGCOMPLETE" not in os.environ:
        return
    import argcomplete

    # Options when a "-" is typed: after `towline approve RUN `, the tasks alone.
    argcomplete.autocomplete(p, always_complete_options=False)


def shell_code(shell: str) -> str:
    """The hook that makes ``shell`` complete ``towline``'s command lines."""
    from argcomplete.shell_integration import shellcode

    return shellcode(["towline"], shell=shell)
