"""The run history in a real PostgreSQL server, for fleets of workers.

The test starts its own server (Debian's ``postgresql`` package: ``initdb``, ``pg_ctl``)
on a free port and stops it after; without those binaries or ``psycopg`` it is skipped
with the reason. As root, the server runs as the ``postgres`` user (it refuses root).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import RunPlan
from tests.helpers import plan, sh, ws
from towline import history
from towline.worker.devserver import free_port

pytestmark = pytest.mark.timeout(120)


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """The DSN of a PostgreSQL server started for these tests."""
    pytest.importorskip("psycopg", reason="psycopg is not installed: pip install '.[postgres]'")
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("PostgreSQL's initdb and pg_ctl are not installed (Debian: postgresql)")
    as_user: list[str] = []
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server")
        as_user = ["runuser", "-u", "postgres", "--"]
    folder = Path(tempfile.mkdtemp(prefix="towline-pg-"))
    if as_user:
        os.chown(folder, user.pw_uid, user.pw_gid)
    data, port, log = folder / "data", free_port(), folder / "log"
    started = False
    try:
        subprocess.run(
            [*as_user, initdb, "-D", str(data), "-A", "trust", "-U", "towline", "--no-sync"],
            check=True,
            capture_output=True,
        )
        options = f"-p {port} -k {folder} -h 127.0.0.1 -F"
        start = [*as_user, pg_ctl, "-D", str(data), "-o", options, "-l", str(log), "-w", "start"]
        if subprocess.run(start, capture_output=True).returncode != 0:
            pytest.fail(f"PostgreSQL did not start:\n{log.read_text(errors='replace')}")
        started = True
        yield f"postgresql://towline@127.0.0.1:{port}/postgres"
    finally:
        if started:
            stop = [*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"]
            subprocess.run(stop, capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def pg_history(postgres: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Workers built after this fixture record into PostgreSQL."""
    monkeypatch.setenv("TOWLINE_HISTORY", postgres)
    return postgres


def test_the_store_works_the_same_on_postgresql(postgres: str) -> None:
    store = history.open_store(postgres)
    run = f"pg-{time.time_ns()}"
    rec = history.ToolCallRecord(
        run_id=run,
        plan="p",
        workstream="w",
        task="t",
        tool="shell",
        attempt=2,
        outcome="failed",
        category="timeout",
        started_at=time.time(),
        duration_s=1.25,
        tokens=7,
        cost_usd=0.5,
    )
    store.record(rec)
    assert store.calls(run_id=run) == [rec]
    assert store.calls(run_id=run, succeeded_only=True) == []
    key = f"key-{run}"
    store.cache_put(key, tool="shell", result={"outputs": {"x": [1]}}, ttl_s=60, now=1000.0)
    store.cache_put(key, tool="shell", result={"outputs": {"x": [2]}}, ttl_s=60, now=1010.0)
    hit = store.cache_get(key, ttl_s=60, now=1050.0)
    assert hit is not None
    assert hit.result == {"outputs": {"x": [2]}}
    assert store.cache_get(key, ttl_s=60, now=1070.0) is None


async def test_a_worker_records_and_caches_in_postgresql(
    pg_history: str, run_plan: RunPlan, tmp_path: Path
) -> None:
    counter = tmp_path / "counter"
    task = sh("count", f"echo ran >> {counter}", cache={"ttl": "1h"})
    first = await run_plan(plan(ws("w", task), name="on-postgres"))
    second = await run_plan(plan(ws("w", task), name="on-postgres"))
    assert counter.read_text().splitlines() == ["ran"]
    assert second.workstreams["w"].tasks["count"].cached
    store = history.open_store(pg_history)
    rows = store.calls(run_id=first.run_id) + store.calls(run_id=second.run_id)
    assert [(r.plan, r.task, r.outcome, r.cached) for r in rows] == [
        ("on-postgres", "count", "succeeded", False),
        ("on-postgres", "count", "succeeded", True),
    ]
