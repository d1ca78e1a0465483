"""``towline worker`` as a real process, and reading what its HTTP endpoint serves."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from towline.worker.devserver import free_port

TOWLINE = str(Path(sys.executable).parent / "towline")


@dataclass
class WorkerProcess:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (a graceful shutdown), then SIGKILL if it lingers."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_worker(
    address: str,
    task_queue: str,
    *,
    home: Path,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    hide: Sequence[Path] = (),
    prefix: Sequence[str] = (),
) -> WorkerProcess:
    """Start ``towline worker`` on a free HTTP port, its output in ``home``/worker.log.

    ``hide``: folders the worker must not see, as if it ran on another machine: it runs
    in a mount namespace of its own (``unshare -m``) with an empty tmpfs over each.
    ``prefix``: a command the worker's command line is given to (it must ``exec`` it,
    keeping the pid), e.g. to run it in a namespace set up otherwise.
    """
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = home / f"worker-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                *prefix,
                *_hiding(hide),
                TOWLINE,
                "worker",
                "--address",
                address,
                "--task-queue",
                task_queue,
                "--http-host",
                "127.0.0.1",
                "--http-port",
                str(port),
                *args,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "TOWLINE_HOME": str(home), **(env or {})},
        )
    return WorkerProcess(proc, port, log)


def _hiding(folders: Sequence[Path]) -> list[str]:
    """A command prefix that runs the rest in a mount namespace where ``folders`` are
    empty (``exec`` keeps the worker's pid: the prefix's own)."""
    if not folders:
        return []
    mounts = " && ".join(f'mount -t tmpfs towline-hidden "${i + 1}"' for i in range(len(folders)))
    script = f'{mounts} && shift {len(folders)} && exec "$@"'
    return ["unshare", "--mount", "--", "sh", "-c", script, "hide", *map(str, folders)]


def get(url: str) -> tuple[int, str]:
    """GET ``url``: the status and body, whatever the status."""
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


async def aget(url: str) -> tuple[int, str]:
    return await asyncio.to_thread(get, url)


async def wait_status(w: WorkerProcess, path: str, status: int, *, timeout: float = 30.0) -> str:
    """Poll ``path`` until it answers ``status``; fails with the worker's output otherwise."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if w.proc.poll() is not None:
            raise AssertionError(f"the worker exited ({w.proc.returncode}):\n{w.output()}")
        try:
            code, body = await aget(w.url(path))
        except OSError as e:
            last = str(e)
        else:
            if code == status:
                return body
            last = f"{code} {body}"
        await asyncio.sleep(0.2)
    raise AssertionError(f"{path} never answered {status} (last: {last}):\n{w.output()}")


def sample(page: str, name: str, **labels: str) -> float | None:
    """The sum of the samples named ``name`` whose labels include ``labels`` (None: none)."""
    values = [
        s.value
        for family in text_string_to_metric_families(page)
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    return sum(values) if values else None


async def metrics(w: WorkerProcess) -> str:
    """The worker's /metrics page."""
    code, page = await aget(w.url("/metrics"))
    assert code == 200, page
    return page


async def until_metric(w: WorkerProcess, name: str, value: float, **labels: str) -> str:
    """Poll /metrics until ``name{labels}`` reads ``value``; return that page."""
    last = None
    for _ in range(300):
        page = await metrics(w)
        last = sample(page, name, **labels)
        if last == value:
            return page
        await asyncio.sleep(0.1)
    raise AssertionError(f"{name}{labels} stayed {last}, never {value}:\n{w.output()}")
