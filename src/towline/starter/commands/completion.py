"""``towline completion SHELL``: the shell code that completes towline's command lines."""

from __future__ import annotations

import argparse
import sys

from towline.starter import completion
from towline.starter.registry import OK, arg, command

SHELLS = ("bash", "zsh", "fish", "tcsh")


@command(
    "completion",
    "print the shell code that completes towline's commands, options, run ids and task ids",
    arg("shell", metavar="SHELL", nargs="?", choices=SHELLS, default="bash", help="default bash"),
)
async def _completion(args: argparse.Namespace) -> int:
    sys.stdout.write(completion.shell_code(args.shell))
    return OK
