"""The processes a benchmark run needs: one dev server and the two workers.

The server is towline's embedded default (:mod:`towline.worker.devserver`, SQLite file),
fresh for each invocation. Each worker is its own process, as in production, so its peak
memory can be read from ``/proc`` and it competes with the server for the same cores.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from temporalio.client import Client

from towline.worker import devserver
from towline.worker.client import has_poller


@dataclass
class Process:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def peak_rss_mb(self) -> float | None:
        """The process's peak resident memory (VmHWM), in MB."""
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return None
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return None

    def cpu_seconds(self) -> float:
        """User plus system CPU time the process has used so far."""
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
        except OSError:
            return 0.0
        fields = stat[stat.rfind(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def reset_peak_rss(self) -> bool:
        """Restart VmHWM from the current RSS (Linux ``clear_refs`` 5); False if refused."""
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        except OSError:
            return False
        return True

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"the {self.name} exited with code {self.proc.returncode}:\n{tail}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_server(folder: Path, extra_args: tuple[str, ...] = ()) -> tuple[Process, str]:
    opts = devserver.DevServerOptions(
        port=devserver.free_port(),
        ui_port=None,
        db_filename=folder / "temporal.db",
        extra_args=extra_args,
    )
    log = folder / "server.log"
    proc = devserver.start(opts, log=log)
    return Process("dev server", proc, log), f"{opts.ip}:{opts.port}"


def _spawn(name: str, argv: list[str], log: Path, env: dict[str, str]) -> Process:
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, *argv],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
    return Process(name, proc, log)


def start_towline_worker(folder: Path, address: str, task_queue: str, marks: Path) -> Process:
    env = {**os.environ, "TOWLINE_HOME": str(folder / "towline-home")}
    argv = ["-m", "bench.towline_worker", "--marks", str(marks)]
    argv += ["--address", address, "--task-queue", task_queue]
    # Its metrics endpoint on, as by default, on a port of its own: another worker on
    # this machine may hold the default one.
    argv += ["--http-port", str(devserver.free_port())]
    return _spawn("towline worker", argv, folder / "towline-worker.log", env)


def start_bare_worker(folder: Path, address: str, task_queue: str, marks: Path) -> Process:
    argv = ["-m", "bench.bare", "--address", address, "--task-queue", task_queue]
    argv += ["--marks", str(marks)]
    return _spawn("bare worker", argv, folder / "bare-worker.log", dict(os.environ))


async def wait_polling(client: Client, task_queue: str, worker: Process, timeout: float) -> None:
    """Until a worker polls ``task_queue`` for workflow tasks (it has started)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        worker.check_alive()
        if await has_poller(client, task_queue):
            return
        await asyncio.sleep(0.2)
    raise TimeoutError(f"the {worker.name} did not poll {task_queue} within {timeout:g}s")
