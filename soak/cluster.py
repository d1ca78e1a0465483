"""The processes under test: one dev server, workers, a webhook receiver, a store folder
on a tmpfs of its own. Every process started here is stopped by its pid in :meth:`close`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.workerproc import WorkerProcess, start_worker

from towline.worker import devserver
from towline.worker.devserver import DevServerOptions, free_port


def rss_kb(pid: int) -> int | None:
    """The resident set of process ``pid`` in KiB (None: it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


@dataclass
class Worker:
    name: str
    proc: WorkerProcess | None = None
    stopped: bool = False  # SIGSTOPped
    starts: int = 0


@dataclass
class Cluster:
    root: Path
    queue: str
    n_workers: int = 3
    store_mb: int = 256
    port: int = field(default_factory=free_port)
    server: subprocess.Popen[bytes] | None = None
    workers: dict[str, Worker] = field(default_factory=dict)
    store_mounted: bool = False

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def store(self) -> Path:
        return self.root / "store"

    def home(self, name: str) -> Path:
        return self.root / "homes" / name

    def env(self) -> dict[str, str]:
        return {"TOWLINE_STORE": str(self.store)}

    # ------------------------------------------------------------------ the store

    def mount_store(self) -> None:
        """A tmpfs of its own under the shared store folder, so it can be filled up: all
        workers see the same filesystem (their namespaces copy this mount)."""
        self.store.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "mount",
                "-t",
                "tmpfs",
                "-o",
                f"size={self.store_mb}m",
                "towline-soak-store",
                str(self.store),
            ],
            check=True,
        )
        self.store_mounted = True

    def fill_store(self) -> int:
        """Take all the store's free space with one file; the bytes taken."""
        filler = self.store / ".soak-filler"
        st = os.statvfs(self.store)
        free = st.f_bavail * st.f_frsize
        subprocess.run(
            ["fallocate", "-l", str(free), str(filler)], check=False, capture_output=True
        )
        # fallocate may leave a few pages; dd takes the rest.
        subprocess.run(
            ["dd", "if=/dev/zero", f"of={self.store}/.soak-filler-2", "bs=64k"],
            check=False,
            capture_output=True,
        )
        st = os.statvfs(self.store)
        return free - st.f_bavail * st.f_frsize

    def free_store(self) -> None:
        for name in (".soak-filler", ".soak-filler-2"):
            with contextlib.suppress(FileNotFoundError):
                (self.store / name).unlink()

    # ------------------------------------------------------------------ the server

    def start_server(self) -> None:
        opts = DevServerOptions(port=self.port, ui_port=None, db_filename=self.root / "temporal.db")
        self.server = devserver.start(opts, log=self.root / "server.log")

    def kill_server(self) -> None:
        if self.server is not None and self.server.poll() is None:
            self.server.kill()
            self.server.wait()

    # ------------------------------------------------------------------ workers

    def start_workers(self) -> None:
        for i in range(self.n_workers):
            name = f"w{i + 1}"
            self.home(name).mkdir(parents=True, exist_ok=True)
            self.workers[name] = Worker(name)
        for name in self.workers:
            self.start_worker(name)

    def start_worker(self, name: str) -> None:
        w = self.workers[name]
        others = [self.home(n) for n in self.workers if n != name]
        w.proc = start_worker(
            self.address, self.queue, home=self.home(name), env=self.env(), hide=others
        )
        w.stopped = False
        w.starts += 1

    def alive(self, name: str) -> bool:
        p = self.workers[name].proc
        return p is not None and p.proc.poll() is None

    def kill_worker(self, name: str) -> None:
        p = self.workers[name].proc
        if p is not None and p.proc.poll() is None:
            if self.workers[name].stopped:
                os.kill(p.proc.pid, signal.SIGCONT)
            p.proc.kill()
            p.proc.wait()
        self.workers[name].stopped = False

    def stop_worker(self, name: str) -> None:
        p = self.workers[name].proc
        if p is not None and p.proc.poll() is None:
            os.kill(p.proc.pid, signal.SIGSTOP)
            self.workers[name].stopped = True

    def cont_worker(self, name: str) -> None:
        p = self.workers[name].proc
        if p is not None and p.proc.poll() is None and self.workers[name].stopped:
            os.kill(p.proc.pid, signal.SIGCONT)
        self.workers[name].stopped = False

    def sample_rss(self) -> dict[str, int | None]:
        out: dict[str, int | None] = {}
        for name, w in self.workers.items():
            out[name] = rss_kb(w.proc.proc.pid) if w.proc is not None and self.alive(name) else None
        if self.server is not None and self.server.poll() is None:
            out["server"] = rss_kb(self.server.pid)
        return out

    # ------------------------------------------------------------------ the end

    def leftovers(self) -> list[tuple[int, str]]:
        """Processes still running in a folder of the soak (tools a dead worker left)."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                cwd = os.readlink(entry / "cwd")
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if cwd.startswith(str(self.root)):
                found.append((int(entry.name), cmd.strip()))
        return found

    def close(self) -> list[tuple[int, str]]:
        """Stop every process started here, by pid; the leftover tool processes killed."""
        for name, w in self.workers.items():
            if w.proc is not None and self.alive(name):
                self.cont_worker(name)
                w.proc.stop(timeout=15)
        if self.server is not None:
            devserver.stop(self.server)
        left = self.leftovers()
        for pid, _ in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.store_mounted:
            time.sleep(0.5)
            subprocess.run(["umount", "-l", str(self.store)], check=False)
            self.store_mounted = False
        return left


class Webhook:
    """A webhook receiver: it records each POST (its idempotency key and when), and can be
    slow (answers after a long pause) or dead (not listening at all)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[tuple[float, str]] = []
        self.slow_for = 0.0
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> None:
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if hook.slow_for:
                    time.sleep(hook.slow_for)
                key = self.headers.get("Idempotency-Key") or ""
                with contextlib.suppress(ValueError):
                    key = key or str(json.loads(body).get("idempotency_key"))
                with hook.lock:
                    hook.received.append((time.time(), key))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
