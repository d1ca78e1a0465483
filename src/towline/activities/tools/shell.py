"""``shell``: run a command in the workstream's workspace.

The command runs in a process group of its own, with no stdin. Its output is streamed:
the whole of it goes to a log artifact as it comes, only a bounded tail of each stream is
kept in memory and in the task's outputs, so a command that prints gigabytes costs disk,
not the worker's memory. The tail of the combined output rides on each heartbeat. The
command does not inherit the worker's secrets (only those its plan passes in), and any
secret value it prints is redacted before its output goes anywhere.

No command outlives its task. When the command exits, whatever it left running in its
group is stopped; when the task is cancelled or times out (the SDK then cancels the
activity), the whole group gets SIGTERM, then SIGKILL after :data:`STOP_GRACE` seconds.
On Linux the command's own process also gets SIGKILL if the worker dies abruptly
(``PR_SET_PDEATHSIG``); that cannot reach the processes it started itself, which a
worker killed with SIGKILL leaves behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import os
import re
import shlex
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from pydantic import Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError
from temporalio import activity

from towline.activities.artifacts import artifact_path, artifact_ref
from towline.activities.base import ToolContext, ToolInput, report_progress, tool
from towline.errors import ToolError

DEFAULT_MAX_OUTPUT = 64 * 1024
# stdout and stderr both land in workflow history: stay well under its 2 MB payload limit.
MAX_MAX_OUTPUT = 512 * 1024
STOP_GRACE = 3.0  # seconds between SIGTERM and SIGKILL

_CHUNK = 64 * 1024
_PROGRESS_TAIL = 4 * 1024  # bytes of combined output on heartbeats and in a failure
_POLL = 0.05  # seconds between checks while waiting for processes to go
_SUMMARY = 200  # characters of the command line quoted in messages
_SECRET_PREFIX = "TOWLINE_SECRET_"  # where towline.activities.base reads secrets from
_REDACTED = b"***"  # as towline.activities.base.redact writes it


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
    cwd = _working_dir(ctx.workspace, args.cwd)
    info = activity.info()
    log_ref = artifact_ref(ctx, f"shell-{info.activity_id}-{info.attempt}.log")
    log_path = artifact_path(log_ref)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with log_path.open("wb") as log:
        out = _Output(log, args.max_output)
        proc = await _spawn(args, cwd)
        code = await _supervise(proc, out)
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


class _Tail:
    """The last ``limit`` bytes of a stream, and whether anything before them was dropped."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.total = 0
        self._buf = bytearray()

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        if self.limit == 0:
            return
        self._buf += chunk[-self.limit :]
        if len(self._buf) > self.limit:
            del self._buf[: len(self._buf) - self.limit]

    @property
    def truncated(self) -> bool:
        return self.total > len(self._buf)

    def text(self) -> str:
        data = bytes(self._buf)
        if self.truncated:
            # The cut may fall inside a UTF-8 character: start at the next whole one.
            skip = 0
            while skip < min(3, len(data)) and data[skip] & 0xC0 == 0x80:
                skip += 1
            data = data[skip:]
        return data.decode("utf-8", errors="replace")


class _Output:
    """Where a command's output goes: the log, a tail per stream, and a combined tail."""

    def __init__(self, log: IO[bytes], max_output: int) -> None:
        self.log = log
        self.stdout = _Tail(max_output)
        self.stderr = _Tail(max_output)
        self.combined = _Tail(_PROGRESS_TAIL)

    def add(self, tail: _Tail, data: bytes) -> None:
        if not data:
            return
        self.log.write(data)
        self.log.flush()  # `towline logs` may be reading it live
        tail.add(data)
        self.combined.add(data)
        report_progress(self.combined.text())


class _Redactor:
    """Replaces secret values in a byte stream with ``***``, even one split across chunks.

    What the command prints reaches the log, heartbeats (so workflow history, when an
    attempt times out) and the outputs; a secret must reach none of them. It holds back
    at most the length of the longest secret, less one byte, until more output comes.
    """

    def __init__(self, secrets: list[str]) -> None:
        values = sorted({v.encode() for v in secrets if v}, key=len, reverse=True)
        self._pattern = re.compile(b"|".join(map(re.escape, values))) if values else None
        self._keep = len(values[0]) - 1 if values else 0
        self._pending = b""

    def feed(self, chunk: bytes) -> bytes:
        if self._pattern is None:
            return chunk
        data = self._pending + chunk
        # Any secret starting before `cut` lies wholly inside `data`, so it is found.
        cut = len(data) - self._keep
        out = bytearray()
        pos = 0
        for m in self._pattern.finditer(data):
            if m.start() >= cut:
                break
            out += data[pos : m.start()] + _REDACTED
            pos = m.end()
        cut = max(cut, pos)
        out += data[pos:cut]
        self._pending = data[cut:]
        return bytes(out)

    def flush(self) -> bytes:
        data, self._pending = self._pending, b""
        return self._pattern.sub(_REDACTED, data) if self._pattern is not None else data


def _worker_secrets() -> list[str]:
    """Every secret the worker holds: more than this call uses, so redaction is safe."""
    return [v for k, v in os.environ.items() if k.startswith(_SECRET_PREFIX)]


def _working_dir(workspace: str, cwd: str | None) -> Path:
    root = Path(workspace).resolve()
    if not root.is_dir():
        raise ToolError("system", f"the workspace {workspace} does not exist")
    if cwd is None:
        return root
    # resolve() follows symlinks, so a link pointing outside is caught like '..' is.
    path = (root / cwd).resolve()
    if not path.is_relative_to(root):
        raise ToolError(
            "validation",
            f"with.cwd: '{cwd}' is outside the workspace {root}",
            hint="give a folder inside the workspace, relative to it",
        )
    if not path.is_dir():
        raise ToolError("validation", f"with.cwd: '{cwd}' is not a folder in the workspace")
    return path


def _environment(extra: dict[str, str]) -> dict[str, str]:
    """The worker's environment without towline's secrets, plus ``extra``.

    A command sees a secret only when its plan asks for it with ``${{ secrets.NAME }}``.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SECRET_PREFIX)}
    env.update(extra)
    return env


async def _spawn(args: ShellInput, cwd: Path) -> asyncio.subprocess.Process:
    options: dict[str, Any] = {
        "cwd": cwd,
        "env": _environment(args.env),
        "stdin": asyncio.subprocess.DEVNULL,
        "stdout": asyncio.subprocess.PIPE,
        "stderr": asyncio.subprocess.PIPE,
        "start_new_session": True,  # its own process group, so it can be stopped as one
        "preexec_fn": _die_with_worker(),
    }
    if isinstance(args.command, str):
        return await asyncio.create_subprocess_shell(args.command, **options)
    program = args.command[0]
    try:
        return await asyncio.create_subprocess_exec(*args.command, **options)
    except FileNotFoundError:
        raise ToolError(
            "validation",
            f"command not found: '{program}'",
            hint="install it on the worker, put it on PATH, or give its path",
        ) from None
    except PermissionError:
        raise ToolError("validation", f"command is not executable: '{program}'") from None
    except OSError as e:
        raise ToolError("validation", f"cannot run '{program}': {e.strerror}") from None


async def _supervise(proc: asyncio.subprocess.Process, out: _Output) -> int:
    """Stream the output until the command exits; stop its group however this ends."""
    assert proc.stdout is not None
    assert proc.stderr is not None
    secrets = _worker_secrets()
    pumps = [
        asyncio.create_task(_pump(proc.stdout, out, out.stdout, _Redactor(secrets))),
        asyncio.create_task(_pump(proc.stderr, out, out.stderr, _Redactor(secrets))),
    ]
    try:
        # The output usually closes when the command exits; but a process it started in
        # the background may hold it open, so watch the exit status too.
        while proc.returncode is None and not all(p.done() for p in pumps):
            await asyncio.wait(pumps, timeout=_POLL * 2)
        code = proc.returncode if proc.returncode is not None else await proc.wait()
        await _stop_group(proc.pid)  # what it left running goes with it
        # A process that left the group may still hold the output: do not wait for it.
        await asyncio.wait(pumps, timeout=STOP_GRACE)
        for p in pumps:
            if p.done():
                p.result()  # a failed pump (e.g. a full disk) fails the task
            else:
                p.cancel()
        return code
    except BaseException:
        try:
            await _uninterruptible(_stop_group(proc.pid))
            await asyncio.wait(pumps, timeout=1.0)  # the last words, for the log
        finally:
            for p in pumps:
                p.cancel()
        raise


async def _pump(
    stream: asyncio.StreamReader, out: _Output, tail: _Tail, redactor: _Redactor
) -> None:
    while chunk := await stream.read(_CHUNK):
        out.add(tail, redactor.feed(chunk))
    out.add(tail, redactor.flush())


def _group_alive(pgid: int) -> bool:
    """Whether any process of the group is still running (zombies do not count)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not sys.platform.startswith("linux"):
        return True
    # A zombie waits for a parent (or an init that may never come) to reap it: it is
    # already dead, so scan /proc for live members.
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            return True
    return False


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def _stop_group(pgid: int) -> None:
    """SIGTERM the process group, then SIGKILL what is left after :data:`STOP_GRACE`."""
    if not _group_alive(pgid):
        return
    _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE
    while time.monotonic() < deadline:
        await asyncio.sleep(_POLL)
        if not _group_alive(pgid):
            return
    _signal_group(pgid, signal.SIGKILL)


_cleanups: set[asyncio.Task[None]] = set()


async def _uninterruptible(coro: Any) -> None:
    """Run ``coro`` to its end even if the caller is cancelled again while it runs."""
    task: asyncio.Task[None] = asyncio.ensure_future(coro)
    _cleanups.add(task)
    task.add_done_callback(_cleanups.discard)
    await asyncio.shield(task)


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


_PR_SET_PDEATHSIG = 1


@functools.cache
def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    fn.restype = ctypes.c_int
    return fn


def _die_with_worker() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to SIGKILL the command if the worker dies first.

    Linux sends the signal when the *thread* that started the child exits: here the
    event loop's thread, which lives as long as the worker. The function runs between
    fork and exec, so it does nothing but two system calls.
    """
    prctl = _prctl()
    if prctl is None:
        return None
    worker = os.getpid()
    kill = int(signal.SIGKILL)

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, kill, 0, 0, 0)
        if os.getppid() != worker:  # the worker died before prctl took effect
            os.kill(os.getpid(), kill)

    return preexec
