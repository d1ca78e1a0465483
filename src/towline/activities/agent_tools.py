"""The workspace tools an agent's model may call, confined to the workspace.

``list_files``, ``read_file``, ``search``, ``write_file``, ``apply_patch`` and ``run``
(:data:`towline.agent.spec.WORKSPACE_TOOLS`). Each takes the model's JSON arguments and
answers with text for the model. What the model got wrong (a path outside the
workspace, a file that does not exist, a patch that does not apply, bad arguments) is a
:class:`~towline.errors.ToolError` whose message goes back to the model, which can try
again; the conversation goes on.

Confinement as the other tools have it: a path is taken relative to the workspace and
resolved (symbolic links followed) before use, and must stay inside; ``.git`` is never
read or written; commands run in a process group of their own, killed at their timeout,
with their output capped (:mod:`towline.activities.process`, which also redacts the
worker's secrets from it).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from towline.activities.artifacts import artifact_file, artifact_ref
from towline.activities.process import run_streamed
from towline.errors import ToolError
from towline.toolcall import ToolContext

MAX_LISTED = 500  # files list_files names at most
MAX_READ = 64 * 1024  # characters read_file returns at most
MAX_MATCHES = 200  # lines search returns at most
MAX_SEARCHED = 2 * 1024 * 1024  # bytes of one file search reads at most
MAX_WRITE = 4 * 1024 * 1024  # bytes write_file writes at most
RUN_OUTPUT = 16 * 1024  # bytes of a command's output tail the model gets
RUN_TIMEOUT = 300  # seconds, unless timeout_s says
MAX_RUN_TIMEOUT = 3600

Handler = Callable[[Path, dict[str, Any], ToolContext, str], Awaitable[str]]


def _bad(message: str) -> ToolError:
    return ToolError("validation", message)


def confined(root: Path, rel: Any, *, what: str = "path") -> Path:
    """``rel`` inside ``root`` (resolved, links followed); ToolError if it leaves it."""
    if not isinstance(rel, str):
        raise _bad(f"{what} must be a string (a path relative to the workspace)")
    root = root.resolve()
    path = (root / rel).resolve()
    if not path.is_relative_to(root):
        raise _bad(f"{what} '{rel}' is outside the workspace")
    if ".git" in path.relative_to(root).parts:
        raise _bad(f"{what} '{rel}' is inside .git, which the agent may not touch")
    return path


def _shown(root: Path, path: Path) -> str:
    return path.relative_to(root.resolve()).as_posix() or "."


def _walk(root: Path, top: Path) -> list[Path]:
    """Files under ``top``, sorted, without .git, not following links out of the root."""
    found: list[Path] = []
    for folder, dirs, files in os.walk(top):
        dirs[:] = sorted(d for d in dirs if d != ".git")
        for name in sorted(files):
            path = Path(folder) / name
            if path.resolve().is_relative_to(root.resolve()):
                found.append(path)
    return found


async def list_files(root: Path, args: dict[str, Any], ctx: ToolContext, key: str) -> str:
    top = confined(root, args.get("path", "."))
    if not top.exists():
        raise _bad(f"no such folder: {args.get('path')}")
    if top.is_file():
        return _shown(root, top)
    files = _walk(root, top)
    lines = [_shown(root, p) for p in files[:MAX_LISTED]]
    if len(files) > MAX_LISTED:
        lines.append(f"... and {len(files) - MAX_LISTED} more files")
    return "\n".join(lines) if lines else "(no files)"


async def read_file(root: Path, args: dict[str, Any], ctx: ToolContext, key: str) -> str:
    path = confined(root, args.get("path"))
    if not path.is_file():
        raise _bad(f"no such file: {args.get('path')}")
    text = path.read_text(encoding="utf-8", errors="replace")
    start, end = args.get("start_line"), args.get("end_line")
    if start is not None or end is not None:
        lines = text.splitlines(keepends=True)
        first = max(int(start or 1), 1)
        last = min(int(end or len(lines)), len(lines))
        text = "".join(lines[first - 1 : last])
    if len(text) > MAX_READ:
        return text[:MAX_READ] + f"\n... (cut at {MAX_READ} characters: use start_line/end_line)"
    return text


async def search(root: Path, args: dict[str, Any], ctx: ToolContext, key: str) -> str:
    pattern = args.get("pattern")
    if not isinstance(pattern, str) or not pattern:
        raise _bad("pattern must be a non-empty regular expression")
    try:
        regex = re.compile(pattern)
    except re.error as e:
        raise _bad(f"pattern is not a regular expression: {e}") from None
    top = confined(root, args.get("path", "."))
    files = [top] if top.is_file() else _walk(root, top)
    hits: list[str] = []
    for path in files:
        with path.open("rb") as f:
            data = f.read(MAX_SEARCHED)
        if b"\0" in data[:8192]:
            continue  # binary
        for n, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
            if regex.search(line):
                hits.append(f"{_shown(root, path)}:{n}: {line[:300]}")
                if len(hits) >= MAX_MATCHES:
                    return "\n".join([*hits, f"... (stopped at {MAX_MATCHES} matches)"])
    return "\n".join(hits) if hits else "no matches"


async def write_file(root: Path, args: dict[str, Any], ctx: ToolContext, key: str) -> str:
    path = confined(root, args.get("path"))
    content = args.get("content")
    if not isinstance(content, str):
        raise _bad("content must be a string (the whole file)")
    data = content.encode()
    if len(data) > MAX_WRITE:
        raise _bad(f"content is larger than {MAX_WRITE} bytes")
    if path.is_dir():
        raise _bad(f"'{args.get('path')}' is a folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return f"wrote {_shown(root, path)} ({len(data)} bytes)"


async def apply_patch(root: Path, args: dict[str, Any], ctx: ToolContext, key: str) -> str:
    from towline.activities.tools.patch import PatchInput, apply_diff

    patch = args.get("patch")
    if not isinstance(patch, str) or not patch.strip():
        raise _bad("patch must be a unified diff (as git diff prints it)")
    if not patch.endswith("\n"):
        patch += "\n"
    done = await apply_diff(PatchInput(diff=patch), ctx)
    files = ", ".join(done["files"]) or "no files"
    how = " (with a 3-way merge)" if done["three_way"] else ""
    if done["already_applied"]:
        return f"the patch was already applied ({files})"
    return f"applied{how}: {files} (+{done['added']} -{done['deleted']} lines)"


async def run(root: Path, args: dict[str, Any], ctx: ToolContext, key: str) -> str:
    command = args.get("command")
    if not isinstance(command, list) or not command or not all(isinstance(a, str) for a in command):
        raise _bad('command must be a list of strings, e.g. ["python", "-m", "pytest", "-q"]')
    timeout = args.get("timeout_s", RUN_TIMEOUT)
    if not isinstance(timeout, int | float) or not 0 < timeout <= MAX_RUN_TIMEOUT:
        raise _bad(f"timeout_s must be a number of seconds, 1 to {MAX_RUN_TIMEOUT}")
    log_ref = artifact_ref(ctx, f"agent-{key}.log")
    with artifact_file(log_ref) as log_path, log_path.open("wb") as log:
        try:
            code, out = await asyncio.wait_for(
                run_streamed(command, cwd=root.resolve(), env={}, log=log, max_output=RUN_OUTPUT),
                timeout,
            )
        except TimeoutError:
            return f"$ {shlex.join(command)}\nstopped after {timeout:g}s (timeout_s); killed"
    tail = out.combined.text()
    cut = " (output cut: its end follows)" if out.combined.truncated else ""
    return f"$ {shlex.join(command)}\nexit code {code}{cut}\n{tail}"


HANDLERS: dict[str, Handler] = {
    "list_files": list_files,
    "read_file": read_file,
    "search": search,
    "write_file": write_file,
    "apply_patch": apply_patch,
    "run": run,
}


def parse_arguments(raw: Any) -> dict[str, Any]:
    """The model's arguments (a JSON object as text); ToolError when they are not one."""
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw) if isinstance(raw, str) and raw.strip() else {}
    except ValueError as e:
        raise _bad(f"the arguments are not JSON: {e}") from None
    if not isinstance(value, dict):
        raise _bad("the arguments must be a JSON object")
    return value
