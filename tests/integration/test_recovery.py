"""Crash recovery: a worker killed mid-run loses nothing; a new one finishes the run."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.service import RPCError

from tests.helpers import echo, plan, sh, ws
from towline.plan.load import check_data
from towline.starter import api
from towline.state import workstream_workflow_id

pytestmark = [pytest.mark.timeout(150), pytest.mark.slow]


class WorkerProcess:
    """``towline worker`` as a real process of its own, so it can be SIGKILLed."""

    def __init__(self, address: str, queue: str, home: Path, log: Path) -> None:
        self._args = [
            sys.executable,
            "-m",
            "towline",
            "worker",
            "--http-port",
            "0",
            "--address",
            address,
            "--task-queue",
            queue,
        ]
        self._env = {**os.environ, "TOWLINE_HOME": str(home)}
        self._log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self._log, "ab") as log:
            self.proc = subprocess.Popen(
                self._args,
                env=self._env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"the worker exited: {self._log.read_text(errors='replace')}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def worker_process(dev_server: str, towline_home: Path, tmp_path: Path) -> Iterator[WorkerProcess]:
    w = WorkerProcess(
        dev_server, f"crash-{uuid.uuid4().hex[:8]}", towline_home, tmp_path / "worker.log"
    )
    try:
        yield w
    finally:
        w.stop()


async def test_killed_worker_loses_nothing_and_reruns_no_succeeded_task(
    client: Client, worker_process: WorkerProcess, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger"
    names = [f"t{i}" for i in range(6)]
    tasks = [
        # The default retry policy: the attempt cut short by the crash is retried.
        sh(
            n,
            f"echo start {n} >> {ledger}; sleep 0.5; echo done {n} >> {ledger}",
            needs=[names[i - 1]] if i else [],
            retry={"max_attempts": 3, "initial_interval": "100ms"},
        )
        for i, n in enumerate(names)
    ]
    spec = check_data(plan(ws("chain", *tasks), name="crash"))
    worker_process.start()
    queue = worker_process._args[-1]
    rid = await api.start_run(client, spec, plan_dir=tmp_path, task_queue=queue)

    def lines() -> list[str]:
        return ledger.read_text().splitlines() if ledger.exists() else []

    # Kill the worker once the server has recorded t2's success. (A tool that has done its
    # work but whose worker dies before reporting it runs again: activities are
    # at-least-once. What must not run again is what the server knows succeeded.)
    history = client.get_workflow_handle(workstream_workflow_id(rid, "chain"))

    async def recorded() -> int:
        try:
            events = [e async for e in history.fetch_history_events()]
        except RPCError:  # the workstream is not started yet
            return 0
        return sum(e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED for e in events)

    while await recorded() < 3:
        worker_process.check_alive()
        await asyncio.sleep(0.05)
    worker_process.kill()
    succeeded_before = {"t0", "t1", "t2"}
    assert succeeded_before <= {line.split()[1] for line in lines() if line.startswith("done")}

    worker_process.start()
    state = await asyncio.wait_for(api.wait_run(client, rid), 120)

    assert state.status == "succeeded", state.model_dump_json(indent=1)
    starts = [line.split()[1] for line in lines() if line.startswith("start")]
    for name in succeeded_before:
        assert starts.count(name) == 1, f"{name} ran again after the crash: {lines()}"
    assert {line.split()[1] for line in lines() if line.startswith("done")} == set(names)


async def test_an_answer_given_after_a_worker_crash_reaches_the_new_worker(
    client: Client, worker_process: WorkerProcess, tmp_path: Path
) -> None:
    marker = tmp_path / "fixed"
    spec = check_data(
        plan(
            ws(
                "w",
                sh("gate", f"test -f {marker}", on_failure="pause"),
                echo("after", needs=["gate"]),
            )
        )
    )
    worker_process.start()
    queue = worker_process._args[-1]
    rid = await api.start_run(client, spec, plan_dir=tmp_path, task_queue=queue)
    while True:
        gate = (await api.get_status(client, rid)).workstreams["w"].tasks.get("gate")
        if gate is not None and gate.status == "waiting":
            break
        worker_process.check_alive()
        await asyncio.sleep(0.1)
    worker_process.kill()
    worker_process.start()
    marker.touch()
    await api.answer(client, rid, "w.gate", "retry", by="night-shift")
    state = await asyncio.wait_for(api.wait_run(client, rid), 60)
    gate = state.workstreams["w"].tasks["gate"]
    assert state.status == "succeeded"
    assert [(d.answer, d.by) for d in gate.decisions] == [("retry", "night-shift")]
