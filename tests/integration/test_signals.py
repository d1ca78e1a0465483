"""Knowing when things look wrong, on a real ``towline worker`` process: /readyz checks
the store and the history too, and anomalies (a call past its p99, a failure-rate jump,
a breaker opening) are metrics and log lines while they happen."""

from __future__ import annotations

import contextlib
import shutil
import time
import uuid
from pathlib import Path

import pytest
from temporalio.client import Client

from tests.helpers import echo, plan, sh, ws
from tests.integration.test_breaker import TARGET, failing_then
from tests.s3server import BUCKET, s3_server
from tests.workerproc import (
    WorkerProcess,
    aget,
    metrics,
    sample,
    start_worker,
    until_metric,
    wait_status,
)
from towline import anomalies, history
from towline.history import ToolCallRecord
from towline.plan.load import check_data
from towline.plan.spec import BreakerSpec
from towline.starter import api

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def queue() -> str:
    return f"signals-{uuid.uuid4().hex[:8]}"


async def test_readyz_turns_503_naming_the_store_folder_once_it_is_removed(
    dev_server: str, queue: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    store = tmp_path / "shared-store"  # not there yet: the worker creates it
    w = start_worker(dev_server, queue, home=tmp_path / "home", env={"TOWLINE_STORE": str(store)})
    workers.append(w)
    await wait_status(w, "/readyz", 200)
    assert store.is_dir()
    page = await metrics(w)
    for dependency in ("temporal", "store", "history"):
        assert sample(page, "towline_dependency_up", dependency=dependency) == 1, dependency

    shutil.rmtree(store)
    body = await wait_status(w, "/readyz", 503)
    assert (
        body
        == f"not ready: store: the store folder {store} does not exist (removed, or unmounted?)\n"
    )
    page = await metrics(w)
    assert sample(page, "towline_dependency_up", dependency="store") == 0
    assert sample(page, "towline_dependency_up", dependency="temporal") == 1
    assert sample(page, "towline_dependency_up", dependency="history") == 1
    assert sample(page, "towline_worker_ready") == 0
    assert await aget(w.url("/healthz")) == (200, "ok\n")

    store.mkdir()  # the mount is back
    await wait_status(w, "/readyz", 200)


async def test_readyz_turns_503_while_the_store_folder_is_full(
    dev_server: str, queue: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    """The store is a 4 MiB tmpfs the worker sees in a mount namespace of its own (the
    test fills it through ``/proc/<pid>/root``)."""
    store = tmp_path / "small-store"
    store.mkdir()
    w = start_worker(
        dev_server,
        queue,
        home=tmp_path / "home",
        env={"TOWLINE_STORE": str(store)},
        prefix=_small_tmpfs(store, "4m"),
    )
    workers.append(w)
    await wait_status(w, "/readyz", 200)
    seen = Path(f"/proc/{w.proc.pid}/root{store}")
    filler = seen / "filler"
    with contextlib.suppress(OSError), filler.open("wb") as out:  # ENOSPC: full
        out.write(b"\0" * (8 << 20))
    body = await wait_status(w, "/readyz", 503)
    assert body.startswith(f"not ready: store: the store folder {store} is full ("), body
    assert not (store / "filler").exists(), "the tmpfs is the worker's alone"
    filler.unlink()
    await wait_status(w, "/readyz", 200)


def _small_tmpfs(folder: Path, size: str) -> list[str]:
    """A command prefix: the rest runs where ``folder`` is a tmpfs of ``size``."""
    script = f'mount -t tmpfs -o size={size} towline-small "$1" && shift && exec "$@"'
    return ["unshare", "--mount", "--", "sh", "-c", script, "small", str(folder)]


async def test_readyz_names_a_history_database_that_cannot_be_opened(
    dev_server: str, queue: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    (tmp_path / "not-a-folder").write_text("")
    where = tmp_path / "not-a-folder" / "history.db"
    w = start_worker(dev_server, queue, home=tmp_path / "home", env={"TOWLINE_HISTORY": str(where)})
    workers.append(w)
    body = await wait_status(w, "/readyz", 503)
    assert body.startswith(f"not ready: history: {where}: "), body
    assert "File exists" in body, body  # mkdir of its folder, which is a file
    page = await metrics(w)
    assert sample(page, "towline_dependency_up", dependency="history") == 0
    assert sample(page, "towline_dependency_up", dependency="store") == 1


async def test_an_s3_store_is_ready_while_it_answers_and_named_once_it_does_not(
    dev_server: str, queue: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    url = f"s3://{BUCKET}/ready"
    with s3_server(tmp_path / "s3") as s3:
        w = start_worker(
            dev_server, queue, home=tmp_path / "home", env={"TOWLINE_STORE": url, **s3.env()}
        )
        workers.append(w)
        await wait_status(w, "/readyz", 200)
        assert sample(await metrics(w), "towline_dependency_up", dependency="store") == 1
    body = await wait_status(w, "/readyz", 503)
    assert body.startswith(f"not ready: store: {url} does not answer a listing: "), body
    assert sample(await metrics(w), "towline_dependency_up", dependency="store") == 0


def _past_calls(home: Path, plan_name: str, task: str, seconds: float) -> None:
    """What earlier runs of the plan left in the run history: its task took ``seconds``."""
    store = history.open_store(str(home / "history.db"))
    now = time.time()
    for i in range(anomalies.MIN_SAMPLES):
        store.record(
            ToolCallRecord(
                run_id=f"earlier-{i}",
                plan=plan_name,
                workstream="w",
                task=task,
                tool="shell",
                attempt=1,
                outcome="succeeded",
                category=None,
                started_at=now - 3600 + i,
                duration_s=seconds + i / 100,
            )
        )


async def test_a_call_past_its_tasks_p99_is_counted_and_logged_while_it_runs(
    client: Client, dev_server: str, queue: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    home = tmp_path / "home"
    name = f"slow-{queue}"
    _past_calls(home, name, "build", 0.5)  # p99 about 0.69 s: slow after the 1 s floor
    w = start_worker(dev_server, queue, home=home)
    workers.append(w)
    await wait_status(w, "/readyz", 200)
    spec = check_data(plan(ws("w", sh("build", "sleep 4"), sh("quick", "true")), name=name))
    rid = await api.start_run(client, spec, plan_dir=tmp_path, task_queue=queue)

    page = await until_metric(w, "towline_tool_calls_running_over_p99", 1, tool="shell")
    assert sample(page, "towline_tool_calls_over_p99_total", tool="shell") == 1
    assert "tool shell has run 1" in w.output()
    assert f"past the p99 of this task's {anomalies.MIN_SAMPLES} past calls (0.688s)" in w.output()
    assert (await api.get_status(client, rid)).workstreams["w"].tasks["build"].status == "running"

    assert (await api.wait_run(client, rid)).status == "succeeded"
    page = await until_metric(w, "towline_tool_calls_running_over_p99", 0, tool="shell")
    assert sample(page, "towline_tool_calls_over_p99_total", tool="shell") == 1  # not `quick`
    assert "tool shell ended after 4" in w.output()


async def test_a_jump_in_a_tools_failure_rate_and_a_breaker_opening_are_told(
    client: Client, dev_server: str, queue: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    w = start_worker(dev_server, queue, home=tmp_path / "home")
    workers.append(w)
    await wait_status(w, "/readyz", 200)
    # A breaker opens after its third failure; more calls fail elsewhere (no breaker).
    spec = check_data(failing_then())
    rid = await api.start_run(client, spec, plan_dir=tmp_path, task_queue=queue)
    page = await until_metric(w, "towline_breaker_openings_total", 1, target=TARGET)
    assert sample(page, "towline_breaker_state", target=TARGET) == 2
    failures = BreakerSpec().failures
    assert f"circuit breaker {TARGET} opened after {failures} consecutive failure(s)" in w.output()
    assert (await api.wait_run(client, rid)).status == "failed"

    others = [sh(f"f{i}", "exit 3") for i in range(anomalies.MIN_RECENT)]
    spec = check_data(
        plan(ws("w", echo("ok"), *others), name=f"jump-{queue}", failure_policy="continue")
    )
    await api.wait_run(
        client, await api.start_run(client, spec, plan_dir=tmp_path, task_queue=queue)
    )
    page = await until_metric(w, "towline_tool_failure_rate_jumped", 1, tool="shell")
    assert sample(page, "towline_tool_failure_rate_jumps_total", tool="shell") == 1
    assert sample(page, "towline_tool_failure_ratio_recent", tool="shell") == 1
    assert sample(page, "towline_tool_failure_rate_jumped", tool="echo") is None
    assert "tool shell: 10 of its last 10 calls failed (100%), against 0% of its last" in w.output()
    assert sample(page, "towline_breaker_openings_total", target=TARGET) == 1


async def test_the_cache_hit_rates_and_the_stores_size_are_on_metrics(
    client: Client, dev_server: str, queue: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    store = tmp_path / "shared-store"
    (store / "artifacts" / "r").mkdir(parents=True)
    (store / "artifacts" / "r" / "x.txt").write_bytes(b"12345")
    (store / "snapshots").mkdir()
    w = start_worker(dev_server, queue, home=tmp_path / "home", env={"TOWLINE_STORE": str(store)})
    workers.append(w)
    await wait_status(w, "/readyz", 200)
    # The store, as listed when the page is first asked for (then at most every minute).
    page = await metrics(w)
    assert sample(page, "towline_store_objects", area="artifacts") == 1
    assert sample(page, "towline_store_bytes", area="artifacts") == 5
    assert sample(page, "towline_store_objects", area="snapshots") is None  # empty

    spec = check_data(plan(ws("w", sh("a", "echo hi", cache={"ttl": "1h"})), name=f"cache-{queue}"))
    for _ in range(2):
        rid = await api.start_run(client, spec, plan_dir=tmp_path, task_queue=queue)
        assert (await api.wait_run(client, rid)).status == "succeeded"
    page = await metrics(w)
    lookups = "towline_result_cache_lookups_total"
    assert sample(page, lookups, tool="shell", result="miss") == 1
    assert sample(page, lookups, tool="shell", result="hit") == 1
    # The workflow cache: the SDK's sticky cache counters.
    hits = sample(page, "temporal_sticky_cache_hit_total")
    assert hits is not None
    assert hits > 0
    assert sample(page, "temporal_sticky_cache_size") is not None
