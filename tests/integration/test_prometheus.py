"""A real Prometheus server scrapes ``towline worker`` and answers a query on its metrics.

Prometheus comes from Debian's ``prometheus`` package. When it is not installed and the
test runs as root with apt-get, the test installs it (no service is started: only the
binary is used); otherwise it is skipped, saying why.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from tests.helpers import echo, plan, ws
from tests.workerproc import aget, start_worker, wait_status
from towline.plan.load import check_data
from towline.starter import api
from towline.worker.devserver import free_port

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parents[2]
_INSTALL_TIMEOUT = 240  # seconds; a cold apt cache downloads a few MB


def _find_prometheus() -> str | None:
    return shutil.which("prometheus") or (
        "/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None
    )


def _install_prometheus() -> str:
    """Install Debian's prometheus package; return why it could not be, or ""."""
    if os.geteuid() != 0:
        return "not root, so apt-get cannot install it"
    if shutil.which("apt-get") is None:
        return "there is no apt-get on this machine"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "prometheus"]
    why = ""
    for prepare in ([], [["apt-get", "update"]]):  # the package lists as they are, then fresh
        try:
            for cmd in [*prepare, install]:
                done = subprocess.run(
                    cmd, env=env, capture_output=True, text=True, timeout=_INSTALL_TIMEOUT
                )
        except subprocess.TimeoutExpired:
            return f"`{' '.join(install)}` took more than {_INSTALL_TIMEOUT}s"
        if done.returncode == 0:
            return ""
        why = (done.stderr.strip().splitlines() or ["no output"])[-1]
    return f"`{' '.join(install)}` failed: {why}"


@pytest.fixture(scope="module")
def prometheus_binary() -> str:
    found = _find_prometheus()
    if found is None:
        why = _install_prometheus()
        found = _find_prometheus()
        if found is None:
            pytest.skip(f"Prometheus is not installed and could not be: {why}")
    return found


class _Prometheus:
    """A Prometheus server on a free port, scraping one target every second."""

    def __init__(self, binary: str, folder: Path) -> None:
        self.binary = binary
        self.folder = folder
        self.url = f"http://127.0.0.1:{free_port()}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, target: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        config = self.folder / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, scrape_timeout: 1s}\n"
            "scrape_configs:\n"
            f"  - job_name: towline\n    static_configs: [{{targets: ['{target}']}}]\n"
        )
        with (self.folder / "prometheus.log").open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    self.binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={self.folder / 'data'}",
                    f"--web.listen-address={urllib.parse.urlsplit(self.url).netloc}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def log(self) -> str:
        return (self.folder / "prometheus.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    async def query(self, promql: str) -> list[dict[str, Any]]:
        """The result of an instant query (empty while Prometheus is not listening yet)."""
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"Prometheus exited:\n{self.log()}")
        try:
            code, body = await aget(
                f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
            )
        except OSError:
            return []
        assert code == 200, body
        answer = json.loads(body)
        assert answer["status"] == "success", answer
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result


@pytest.fixture
def prometheus(prometheus_binary: str, tmp_path: Path) -> Iterator[_Prometheus]:
    server = _Prometheus(prometheus_binary, tmp_path / "prometheus")
    yield server
    server.stop()


def _value(result: list[dict[str, Any]]) -> list[float]:
    return [float(r["value"][1]) for r in result]


async def test_prometheus_scrapes_the_worker_and_counts_the_tasks_of_a_run(
    client: Client, dev_server: str, tmp_path: Path, prometheus: _Prometheus
) -> None:
    queue = f"prom-{uuid.uuid4().hex[:8]}"
    worker = start_worker(dev_server, queue, home=tmp_path / "home")
    try:
        await wait_status(worker, "/readyz", 200)
        prometheus.start(f"127.0.0.1:{worker.port}")
        name = f"prom-{queue}"
        spec = check_data(plan(ws("w", echo("a"), echo("b"), echo("c", needs=["a"])), name=name))
        rid = await api.start_run(client, spec, plan_dir=tmp_path, task_queue=queue)
        assert (await api.wait_run(client, rid)).status == "succeeded"

        promql = f'sum(towline_tasks_finished_total{{plan="{name}",status="succeeded"}})'
        seen: list[float] = []
        for _ in range(300):  # scraped every second; give it a while on a busy machine
            seen = _value(await prometheus.query(promql))
            if seen == [3.0]:
                break
            await asyncio.sleep(0.2)
        assert seen == [3.0], f"Prometheus saw {seen}, not 3 finished tasks"
        assert _value(await prometheus.query('up{job="towline"}')) == [1.0]
        # Every query of the Grafana dashboard is valid PromQL, with its variables filled.
        for expr in _dashboard_queries():
            await prometheus.query(expr)
    finally:
        worker.stop()


def _dashboard_queries() -> list[str]:
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "towline-dashboard.json").read_text())
    variables = {"$plan": ".*", "$__rate_interval": "1m", "$__range": "5m"}
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for name, value in variables.items():
        exprs = [e.replace(name, value) for e in exprs]
    assert exprs
    return exprs


def test_promtool_accepts_the_deploy_scrape_config(prometheus_binary: str) -> None:
    promtool = Path(prometheus_binary).with_name("promtool")
    if not promtool.exists():
        pytest.skip(f"no promtool beside {prometheus_binary}")
    done = subprocess.run(
        [str(promtool), "check", "config", str(ROOT / "deploy" / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_checks_and_unit_tests_the_alert_rules(prometheus_binary: str) -> None:
    promtool = Path(prometheus_binary).with_name("promtool")
    if not promtool.exists():
        pytest.skip(f"no promtool beside {prometheus_binary}")
    for args in (
        ["check", "rules", str(ROOT / "deploy" / "alerts.yml")],
        ["test", "rules", str(ROOT / "deploy" / "alerts.test.yml")],
    ):
        done = subprocess.run(
            [str(promtool), *args], capture_output=True, text=True, timeout=60, cwd=ROOT
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "SUCCESS" in done.stdout + done.stderr
