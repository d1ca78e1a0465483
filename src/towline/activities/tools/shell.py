"""``shell``: run a command in the workstream's workspace.

The command runs as :mod:`towline.activities.process` runs every command: in a process
group of its own, with no stdin, stopped with its task, without the worker's secrets.
Its output is streamed: the whole of it goes to a log artifact as it comes, only a
bounded tail of each stream is kept in the task's outputs, and any secret value it prints
is redacted before its output goes anywhere.
"""

from __future__ import annotations

import shlex
import signal
import time
from typing import Any

from pydantic import Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError
from temporalio import activity

from towline.activities.artifacts import artifact_file, artifact_ref
from towline.activities.base import ToolInput, tool
from towline.activities.process import run_streamed, working_dir
from towline.errors import ToolError
from towline.toolcall import ToolContext

DEFAULT_MAX_OUTPUT = 64 * 1024
# stdout and stderr both land in workflow history: stay well under its 2 MB payload limit.
MAX_MAX_OUTPUT = 512 * 1024
_SUMMARY = 200  # characters of the command line quoted in messages


class ShellInput(ToolInput):
    """Run a command. An argv list is run as is; a string only with ``shell: true``."""

    # Declared before `command`, so the check of `command` can see it.
    shell: bool = Field(False, description="run command, a string, with /bin/sh -c")
    command: list[str] | str = Field(
        description="argv list, e.g. [make, build]; a string (run by /bin/sh) needs shell: true"
    )
    cwd: str | None = Field(
        None, description="working folder, relative to the workspace; must stay inside it"
    )
    env: dict[str, str] = Field(
        default_factory=dict, description="variables added to the worker's environment"
    )
    max_output: int = Field(
        DEFAULT_MAX_OUTPUT,
        ge=0,
        le=MAX_MAX_OUTPUT,
        description="bytes of stdout and of stderr kept in the outputs (the tail); "
        "the full output is always in the log artifact",
    )

    @field_validator("command")
    @classmethod
    def _command_form(cls, command: list[str] | str, info: ValidationInfo) -> list[str] | str:
        shell = info.data.get("shell", False)
        if isinstance(command, str) and not shell:
            raise PydanticCustomError(
                "command_form",
                "a string needs shell: true; give an argv list such as [make, build], "
                "or set shell: true to run the string with /bin/sh -c",
            )
        if isinstance(command, list) and shell:
            raise PydanticCustomError(
                "command_form",
                "with shell: true, give the command as one string, e.g. 'make build && make test'",
            )
        if not command or not command[0]:
            raise PydanticCustomError("command_form", "the command is empty")
        return command


@tool(
    "shell",
    ShellInput,
    "Run a command in the workspace; the tail of its output is kept, all of it in a log.",
)
async def shell(args: ShellInput, ctx: ToolContext) -> dict[str, Any]:
    """Outputs: ``exit_code``, ``stdout``/``stderr`` (tails of at most ``max_output``
    bytes), ``stdout_truncated``/``stderr_truncated``, ``log`` (the reference of the
    artifact holding the full combined output, always written) and ``duration_s``.
    """
    cwd = working_dir(ctx.workspace, args.cwd)
    info = activity.info()
    log_ref = artifact_ref(ctx, f"shell-{info.activity_id}-{info.attempt}.log")
    started = time.monotonic()
    with artifact_file(log_ref) as log_path, log_path.open("wb") as log:
        code, out = await run_streamed(
            args.command, cwd=cwd, env=args.env, log=log, max_output=args.max_output
        )
    outputs = {
        "exit_code": code,
        "stdout": out.stdout.text(),
        "stderr": out.stderr.text(),
        "stdout_truncated": out.stdout.truncated,
        "stderr_truncated": out.stderr.truncated,
        "log": log_ref,
        "duration_s": round(time.monotonic() - started, 3),
    }
    if code != 0:
        raise ToolError("tool", _failure(code, args), output=out.combined.text(), outputs=outputs)
    return outputs


def _failure(code: int, args: ShellInput) -> str:
    text = args.command if isinstance(args.command, str) else shlex.join(args.command)
    if len(text) > _SUMMARY:
        text = text[: _SUMMARY - 3] + "..."
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        return f"command was killed by signal {name}: {text}"
    if code == 127 and args.shell:
        return f"command exited with code 127 (command not found?): {text}"
    return f"command exited with code {code}: {text}"
