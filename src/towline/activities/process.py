"""Running a command as towline does: in a process group of its own, stopped with its task.

A command has its own process group, and no stdin unless it is given input.
:func:`run_streamed` streams its output: the whole of it goes to a log as it comes, only
a bounded tail of each stream is kept in memory, and the tail of the combined output
rides on each heartbeat, so a command that prints gigabytes costs disk, not the worker's
memory. :func:`run_captured` keeps all the output, for short commands whose output is
small (git's). A command does not inherit the worker's secrets (only those its plan
passes in), and a streamed command's output has any secret value redacted before it
goes anywhere.

No command outlives its task. When a streamed command exits, whatever it left running in
its group is stopped; when the task is cancelled or times out (the SDK then cancels the
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
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from towline.activities import secrets
from towline.activities.base import report_progress
from towline.errors import ToolError

STOP_GRACE = 3.0  # seconds between SIGTERM and SIGKILL

_CHUNK = 64 * 1024
_PROGRESS_TAIL = 4 * 1024  # bytes of combined output on heartbeats and in a failure
_POLL = 0.05  # seconds between checks while waiting for processes to go
_REDACTED = b"***"  # as towline.activities.base.redact writes it


class Tail:
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


class Output:
    """Where a command's output goes: the log, a tail per stream, and a combined tail."""

    def __init__(self, log: IO[bytes], max_output: int) -> None:
        self.log = log
        self.stdout = Tail(max_output)
        self.stderr = Tail(max_output)
        self.combined = Tail(_PROGRESS_TAIL)

    def add(self, tail: Tail, data: bytes) -> None:
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
    only the end of a chunk that could be the start of a secret (at most the length of
    the longest one, less one byte), until more output comes: the rest passes at once,
    so stdout and stderr keep their order in the combined log.
    """

    def __init__(self, secrets: list[str]) -> None:
        values = sorted({v.encode() for v in secrets if v}, key=len, reverse=True)
        self._values = values
        self._firsts = frozenset(v[0] for v in values)
        self._pattern = re.compile(b"|".join(map(re.escape, values))) if values else None
        self._keep = len(values[0]) - 1 if values else 0
        self._pending = b""

    def feed(self, chunk: bytes) -> bytes:
        if self._pattern is None:
            return chunk
        data = self._pending + chunk
        # Any secret starting before `cut` lies wholly inside `data`, so it is found.
        cut = self._could_start_a_secret(data)
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

    def _could_start_a_secret(self, data: bytes) -> int:
        """Where the end of ``data`` that is the beginning of a secret starts, if any."""
        for i in range(max(0, len(data) - self._keep), len(data)):
            if data[i] in self._firsts:
                tail = data[i:]
                if any(v.startswith(tail) for v in self._values):
                    return i
        return len(data)

    def flush(self) -> bytes:
        data, self._pending = self._pending, b""
        return self._pattern.sub(_REDACTED, data) if self._pattern is not None else data


def working_dir(workspace: str, cwd: str | None) -> Path:
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


_WORKER_CREDENTIALS = ("TEMPORAL_API_KEY", "TEMPORAL_TLS_CLIENT_KEY_DATA")


def environment(extra: dict[str, str]) -> dict[str, str]:
    """The worker's environment without towline's secrets, plus ``extra``.

    A command sees a secret only when its plan asks for it with ``${{ secrets.NAME }}``;
    the worker's own credential for Temporal (``TEMPORAL_API_KEY``) it never sees.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(secrets.ENV_PREFIX) and k not in _WORKER_CREDENTIALS
    }
    env.update(extra)
    return env


async def _spawn(
    command: Sequence[str] | str, cwd: Path, env: dict[str, str], **pipes: Any
) -> asyncio.subprocess.Process:
    """Start ``command`` (a string runs with /bin/sh -c) in a process group of its own.

    A command that cannot start is a mistake in the plan: category ``validation``.
    """
    options: dict[str, Any] = {
        "cwd": cwd,
        "env": environment(env),
        "stdin": asyncio.subprocess.DEVNULL,
        "stdout": asyncio.subprocess.PIPE,
        "stderr": asyncio.subprocess.PIPE,
        "start_new_session": True,  # its own process group, so it can be stopped as one
        "preexec_fn": _die_with_worker(),
        **pipes,
    }
    if isinstance(command, str):
        return await asyncio.create_subprocess_shell(command, **options)
    program = command[0]
    try:
        return await asyncio.create_subprocess_exec(*command, **options)
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


async def run_streamed(
    command: Sequence[str] | str,
    *,
    cwd: Path,
    env: dict[str, str],
    log: IO[bytes],
    max_output: int,
) -> tuple[int, Output]:
    """Run ``command`` to its end, streaming its output to ``log``; its exit code and tails.

    ``env`` is added to the worker's environment (without its secrets); ``max_output``
    bytes of the tail of stdout and of stderr are kept. A negative exit code is the
    signal that killed the command.
    """
    out = Output(log, max_output)
    proc = await _spawn(command, cwd, env)
    return await _supervise(proc, out), out


@dataclass(frozen=True)
class Completed:
    """A finished command and all it printed."""

    code: int
    stdout: bytes
    stderr: bytes

    @property
    def err(self) -> str:
        return self.stderr.decode("utf-8", errors="replace").strip()

    @property
    def out(self) -> str:
        return self.stdout.decode("utf-8", errors="replace")


async def run_captured(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: dict[str, str] | None = None,
    input: bytes | None = None,
) -> Completed:
    """Run a short command and keep all its output; ``input`` is fed to its stdin.

    For commands whose output is small. If the caller is cancelled, the command's group
    is stopped before the cancellation goes on.
    """
    stdin = asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL
    proc = await _spawn(argv, cwd, env or {}, stdin=stdin)
    try:
        stdout, stderr = await proc.communicate(input)
    except BaseException:
        await _uninterruptible(_stop_group(proc.pid))
        raise
    assert proc.returncode is not None
    return Completed(proc.returncode, stdout, stderr)


async def _supervise(proc: asyncio.subprocess.Process, out: Output) -> int:
    """Stream the output until the command exits; stop its group however this ends."""
    assert proc.stdout is not None
    assert proc.stderr is not None
    # Every secret the worker holds, more than this call uses, so redaction is safe.
    held = secrets.values()
    pumps = [
        asyncio.create_task(_pump(proc.stdout, out, out.stdout, _Redactor(held))),
        asyncio.create_task(_pump(proc.stderr, out, out.stderr, _Redactor(held))),
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


async def _pump(stream: asyncio.StreamReader, out: Output, tail: Tail, redactor: _Redactor) -> None:
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
