"""``towline up`` / ``down`` / ``dev``: a local Temporal dev server and worker.

State lives under ``.towline/``: the SQLite database, logs, and the pids of what ``up``
started, so ``down`` stops exactly those processes (never anything found by name).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from towline import config, profiles
from towline.worker import devserver


@dataclass(frozen=True)
class Local:
    root: Path

    @property
    def server_pid(self) -> Path:
        return self.root / "server.pid"

    @property
    def worker_pid(self) -> Path:
        return self.root / "worker.pid"

    @property
    def server_info(self) -> Path:
        return self.root / "server.json"

    @property
    def dashboard_pid(self) -> Path:
        return self.root / "dashboard.pid"

    @property
    def dashboard_token(self) -> Path:
        return self.root / "dashboard.token"


def local() -> Local:
    return Local(config.home())


def _read_pid(path: Path) -> int | None:
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie left by a parent that has not reaped it is not running
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return True


def _ours(pid: int, word: str) -> bool:
    """Guard against a recycled pid: the process's command line must mention ``word``."""
    try:
        return word in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return True  # no /proc: trust the pid file


def ui_url_for(address: str) -> str:
    """The Web UI's base URL for a server address.

    ``TOWLINE_UI_URL`` when set (any server: the UI often has an address of its own);
    else, for the server ``towline up`` or ``towline dev`` runs, the UI port it was
    started with; else the dev server's default UI port on the server's host.
    """
    if env := os.environ.get("TOWLINE_UI_URL"):
        return env.strip().rstrip("/")
    host, _, port = address.rpartition(":")
    try:
        info = json.loads(local().server_info.read_text())
        alive = _alive(int(info["pid"])) if "pid" in info else _read_pid(local().server_pid)
        if alive and int(port) == info["port"] and info.get("ui_port"):
            return f"http://localhost:{info['ui_port']}"
    except (OSError, ValueError, KeyError, TypeError):
        pass
    host = host or "localhost"
    if host in ("127.0.0.1", "0.0.0.0", "[::1]"):
        host = "localhost"
    return f"http://{host}:{config.DEFAULT_UI_PORT}"


def record_server(pid: int, port: int, ui_port: int | None) -> None:
    """Note the local server's ports, so Web UI links use its UI port (:func:`ui_url_for`)."""
    loc = local()
    loc.root.mkdir(parents=True, exist_ok=True)
    loc.server_info.write_text(json.dumps({"pid": pid, "port": port, "ui_port": ui_port}))


def forget_server(pid: int) -> None:
    """Remove the record of the server ``pid``, if it is still the one recorded."""
    try:
        if json.loads(local().server_info.read_text()).get("pid") == pid:
            local().server_info.unlink()
    except (OSError, ValueError, AttributeError):
        pass


def web_ui_link(address: str, namespace: str, run_id: str) -> str:
    return f"{ui_url_for(address)}/namespaces/{namespace}/workflows/{run_id}"


def start_server(port: int, ui_port: int) -> tuple[int, bool]:
    """Start (or reuse) the dev server; returns its pid (0 if not ours) and whether it is new."""
    loc = local()
    loc.root.mkdir(parents=True, exist_ok=True)
    pid = _read_pid(loc.server_pid)
    if pid and devserver.port_open("127.0.0.1", port):
        return pid, False
    if devserver.port_open("127.0.0.1", port):
        return 0, False  # someone else's server already listens there: use it
    opts = devserver.DevServerOptions(
        port=port, ui_port=ui_port, db_filename=loc.root / "temporal.db", ip="127.0.0.1"
    )
    proc = devserver.start(opts, log=loc.root / "server.log", detach=True)
    loc.server_pid.write_text(str(proc.pid))
    record_server(proc.pid, port, ui_port)
    return proc.pid, True


def worker_running() -> bool:
    """Whether the worker ``up`` started still runs."""
    pid = _read_pid(local().worker_pid)
    return pid is not None and _ours(pid, "towline")


def start_worker(
    address: str, namespace: str, task_queue: str, *, http_port: int = config.DEFAULT_HTTP_PORT
) -> tuple[int, bool]:
    """Start (or reuse) a background worker process; returns its pid and whether it is new.

    Its HTTP endpoint (``/metrics``, ``/healthz``, ``/readyz``) listens on localhost only.
    """
    loc = local()
    pid = _read_pid(loc.worker_pid)
    if pid and _ours(pid, "towline"):
        return pid, False
    log = open(loc.root / "worker.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "towline",
            "worker",
            "--address",
            address,
            "--namespace",
            namespace,
            "--task-queue",
            task_queue,
            "--http-host",
            "127.0.0.1",
            "--http-port",
            str(http_port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        env=worker_environment(loc.root),
    )
    loc.worker_pid.write_text(str(proc.pid))
    return proc.pid, True


def dashboard_running() -> bool:
    """Whether the dashboard ``up`` started still runs."""
    pid = _read_pid(local().dashboard_pid)
    return pid is not None and _ours(pid, "dashboard")


def start_dashboard(address: str, namespace: str, port: int) -> tuple[int, bool, str]:
    """Start (or reuse) ``towline dashboard`` in the background, on 127.0.0.1:``port``.

    Its answering token is kept in ``.towline/dashboard.token`` (readable by its owner
    only), so ``towline up`` prints the same link while it runs. Returns its pid, whether
    it is new, and the link to open.
    """
    from towline.dashboard.serve import link, write_token

    loc = local()
    token = write_token(loc.dashboard_token)
    pid = _read_pid(loc.dashboard_pid)
    if pid and _ours(pid, "dashboard"):
        return pid, False, link("127.0.0.1", port, token)
    loc.root.mkdir(parents=True, exist_ok=True)
    log = open(loc.root / "dashboard.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "towline",
            "dashboard",
            "--address",
            address,
            "--namespace",
            namespace,
            "--port",
            str(port),
            "--token-file",
            str(loc.dashboard_token),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        env=worker_environment(loc.root),
    )
    loc.dashboard_pid.write_text(str(proc.pid))
    deadline = time.monotonic() + 20
    while not devserver.port_open("127.0.0.1", port):
        if proc.poll() is not None or time.monotonic() > deadline:
            loc.dashboard_pid.unlink(missing_ok=True)
            raise RuntimeError(
                f"the dashboard did not start on port {port}; see {loc.root / 'dashboard.log'}"
            )
        time.sleep(0.1)
    return proc.pid, True, link("127.0.0.1", port, token)


# How to reach a remote server: the local worker talks plain gRPC to the local server.
_REMOTE = ("TEMPORAL_TLS", "TEMPORAL_API_KEY", "TEMPORAL_PROFILE", "TOWLINE_API_KEY_FILE")


def worker_environment(root: Path) -> dict[str, str]:
    """The local worker's environment: this one, with towline's own ``bin`` first on PATH.

    So that plans run on the local default find the Python (and pytest) that towline runs
    with, as the examples expect. Settings for reaching a remote server (TLS, API key,
    Temporal's and towline's profiles, which this process has already applied) are left out.
    """
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(_REMOTE) and k != profiles.PROFILE_ENV
    }
    return {**env, "TOWLINE_HOME": str(root), "PATH": path, "TEMPORAL_CONFIG_FILE": os.devnull}


def stop_pid(path: Path, word: str, *, timeout: float = 15.0) -> int | None:
    """SIGTERM the process recorded in ``path``, SIGKILL it if it lingers; return its pid."""
    pid = _read_pid(path)
    path.unlink(missing_ok=True)
    if pid is None or not _ours(pid, word):
        return None
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
    return pid
