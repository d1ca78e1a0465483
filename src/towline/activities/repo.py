"""Running git for towline: in a workspace, never prompting, never reaching outside it.

Every git command towline runs goes through :func:`git`, so every one gets the same
settings: no prompt for credentials (a worker has no terminal: a URL that needs one fails
at once instead of hanging), English messages (they are parsed), no search for a
repository above the workspace (a scratch workspace inside someone's checkout must not
act on that checkout), no signing, and a default identity, so nothing depends on the
worker's global git configuration.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from towline.activities.process import Completed, environment, run_captured

DEFAULT_NAME = "towline"
DEFAULT_EMAIL = "towline@localhost"
DEFAULT_BRANCH = "main"  # of a repository towline creates itself

_SETTINGS = (
    f"user.name={DEFAULT_NAME}",
    f"user.email={DEFAULT_EMAIL}",
    "commit.gpgsign=false",
    "tag.gpgsign=false",
    "core.quotepath=off",  # paths in output as they are, not octal-escaped
    "advice.detachedHead=false",
)
_MESSAGE_CHARS = 1500  # of git's error output quoted in a message


async def git(
    cwd: Path,
    *args: str,
    input: bytes | None = None,
    env: dict[str, str] | None = None,
    quick: bool = False,
) -> Completed:
    """Run ``git args`` in ``cwd`` (a workspace's root, or where a clone goes).

    ``quick``: for towline's own short, local git calls (snapshots), which need neither
    a process group of their own nor to die with the worker: started without them, the
    cheaper way (no fork of the worker's whole memory), a few milliseconds less each.
    """
    argv = ["git"]
    for setting in _SETTINGS:
        argv += ["-c", setting]
    base = {
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_SSH_COMMAND": "ssh -o BatchMode=yes",
        "LC_ALL": "C",
        "GIT_CEILING_DIRECTORIES": str(cwd.parent),
    }
    if quick:
        return await _quick([*argv, *args], cwd, environment({**base, **(env or {})}), input)
    return await run_captured([*argv, *args], cwd=cwd, env={**base, **(env or {})}, input=input)


async def _quick(argv: list[str], cwd: Path, env: dict[str, str], input: bytes | None) -> Completed:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await proc.communicate(input)
    assert proc.returncode is not None
    return Completed(proc.returncode, stdout, stderr)


async def ensure_repo(workspace: Path) -> None:
    """Make ``workspace`` a git repository of its own if it is not one yet.

    A scratch workspace, or a copy of a folder that was not a repository, becomes one, so
    patches can be applied and changes committed there like anywhere else.
    """
    if (workspace / ".git").exists():
        return
    done = await git(workspace, "init", "--quiet", f"--initial-branch={DEFAULT_BRANCH}")
    if done.code != 0:
        raise RuntimeError(f"git init in {workspace} failed: {message(done)}")


async def head(workspace: Path) -> str | None:
    """The commit checked out, or None in a repository without commits."""
    done = await git(workspace, "rev-parse", "--verify", "--quiet", "HEAD^{commit}")
    return done.out.strip() if done.code == 0 else None


async def current_branch(workspace: Path) -> str | None:
    """The branch checked out, or None when the HEAD is detached."""
    done = await git(workspace, "symbolic-ref", "--quiet", "--short", "HEAD")
    return done.out.strip() if done.code == 0 else None


def message(done: Completed) -> str:
    """What git said went wrong, in a few lines: its ``fatal:``/``error:`` lines if any."""
    lines = [line for line in done.err.splitlines() if line.strip()]
    important = [line for line in lines if line.startswith(("fatal:", "error:"))]
    text = "; ".join(important or lines) or f"git exited with code {done.code}"
    return text if len(text) <= _MESSAGE_CHARS else text[: _MESSAGE_CHARS - 3] + "..."


def display_url(url: str) -> str:
    """``url`` without a password or token in it, for messages that reach history."""
    parts = urlsplit(url)
    if parts.scheme and parts.netloc and "@" in parts.netloc:
        return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))
    return url


def hide_credentials(text: str, url: str) -> str:
    """``text`` (e.g. what git said about ``url``) without the credentials in ``url``.

    A token alone is often written as the user name (``https://TOKEN@host/...``), so
    without a password the user name is hidden too.
    """
    parts = urlsplit(url)
    if not (parts.scheme and "@" in parts.netloc):
        return text
    userinfo = parts.netloc.rsplit("@", 1)[0]
    hidden = [userinfo, parts.password if parts.password else parts.username]
    for secret in sorted((h for h in hidden if h), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text
