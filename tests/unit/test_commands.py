"""The command registry: a command is declared in one place, with its options and its
handler, and the command line, the docs and the exit codes follow."""

from __future__ import annotations

import argparse
import contextlib
import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from towline.starter import registry
from towline.starter.cli import run_cli
from towline.starter.registry import BAD_INPUT, COMMANDS, OK, RUN, UsageError, arg, command

DOCS = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


@pytest.fixture
def scratch() -> Iterator[list[argparse.Namespace]]:
    """A command ``greet`` registered for the test alone; what it was given."""
    seen: list[argparse.Namespace] = []

    @command("greet", "say hello", RUN, arg("--loud", action="store_true"))
    async def _greet(args: argparse.Namespace) -> int:
        seen.append(args)
        if args.run_id == "nobody":
            raise UsageError("greet: nobody to greet")
        return OK

    try:
        yield seen
    finally:
        del COMMANDS["greet"]


def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run_cli(list(argv))
    return code, out.getvalue(), err.getvalue()


def test_a_registered_command_is_parsed_and_run(scratch: list[argparse.Namespace]) -> None:
    assert _run("greet", "r-1", "--loud")[0] == OK

    (args,) = scratch
    assert (args.command, args.run_id, args.loud, args.profile) == ("greet", "r-1", True, None)


def test_a_registered_command_gets_the_clis_exit_codes_and_messages(
    scratch: list[argparse.Namespace],
) -> None:
    code, _, err = _run("greet", "nobody")
    assert (code, err.strip()) == (BAD_INPUT, "towline: greet: nobody to greet")

    code, _, err = _run("greet")
    assert code == BAD_INPUT
    assert "the following arguments are required: RUN" in err

    code, out, _ = _run("--help")
    assert code == OK
    assert "greet" in out
    assert "say hello" in out


def test_two_commands_cannot_share_a_name(scratch: list[argparse.Namespace]) -> None:
    with pytest.raises(ValueError, match="two commands are named 'greet'"):
        command("greet", "again")(COMMANDS["greet"].run)


def test_every_command_is_in_the_cli_reference() -> None:
    documented = DOCS.read_text()
    missing = [name for name in COMMANDS if f"`towline {name}" not in documented]
    assert not missing, f"docs/cli.md does not describe: {missing}"


def test_help_lists_the_commands_in_registration_order() -> None:
    sub = next(a for a in registry.parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert list(sub.choices) == list(COMMANDS)
    assert list(COMMANDS)[:4] == ["up", "down", "dev", "worker"]
