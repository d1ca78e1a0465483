"""A worker frozen (SIGSTOP) holding a call it was handed: when it thaws, after the
server timed the attempt out and another worker made the call, it must not run the tool
again. Found by the soak (``make soak``): a wide run's tasks ran twice, the second time
on the worker SIGCONTed a moment before."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from tests.helpers import sh
from tests.workerproc import start_worker, wait_status
from towline.activities.base import expired_for
from towline.plan.load import check_data
from towline.starter import api

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


def test_an_attempt_is_expired_only_past_its_heartbeat_timeout() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    beat = timedelta(seconds=10)
    assert expired_for(t0, beat, t0 + timedelta(seconds=9)) is None
    assert expired_for(t0, beat, t0 + timedelta(seconds=12)) == pytest.approx(2.0)
    assert expired_for(t0, None, t0 + timedelta(days=1)) is None


def _lines(ledger: Path, tid: str) -> list[str]:
    text = ledger.read_text() if ledger.exists() else ""
    return [line for line in text.splitlines() if line.split()[0] == tid]


async def test_a_thawed_worker_does_not_run_a_call_another_worker_made(
    client: Client, dev_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOWLINE_STORE", str(tmp_path / "store"))
    env = {"TOWLINE_STORE": str(tmp_path / "store")}
    ledger = tmp_path / "ledger"
    step = 'echo "{0} ${{TOWLINE_HOME##*/}}" >> ' + str(ledger)
    spec = check_data(
        {
            "version": 1,
            "name": "frozen",
            "settings": {"takeover": "3s"},  # 1 s heartbeat and schedule-to-start timeouts
            "workstreams": [
                {
                    "id": "w",
                    "tasks": [
                        sh("first", step.format("first")),
                        sh("second", step.format("second"), needs=["first"], approval=True),
                    ],
                }
            ],
        }
    )
    queue = f"frozen-{uuid.uuid4().hex[:8]}"
    homes = {n: tmp_path / n for n in ("a", "b")}
    for h in homes.values():
        h.mkdir()
    a = start_worker(dev_server, queue, home=homes["a"], env=env, hide=[homes["b"]])
    b = None
    try:
        await wait_status(a, "/readyz", 200)
        rid = await api.start_run(client, spec, plan_dir=tmp_path, task_queue=queue)
        for _ in range(300):
            st = await api.get_status(client, rid)
            if st.workstreams["w"].tasks.get("second", None) and (
                st.workstreams["w"].tasks["second"].waiting_for == "approval"
            ):
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"the second task never waited for approval:\n{a.output()}")
        # Frozen while its pollers wait: the approved call, sent to the queue of the
        # worker holding the workspace, is handed to it, and sits there.
        os.kill(a.proc.pid, signal.SIGSTOP)
        b = start_worker(dev_server, queue, home=homes["b"], env=env, hide=[homes["a"]])
        await wait_status(b, "/readyz", 200)
        for _ in range(10):  # the workflow moves to b once a's sticky queue times out
            try:
                await api.answer(client, rid, "w.second", "approve", by="test")
                break
            except api.NoWorker:
                continue
        # Asked of the history once the run closed: the frozen worker answers no query.
        handle = client.get_workflow_handle(rid)
        for _ in range(600):
            if (await handle.describe()).status != WorkflowExecutionStatus.RUNNING:
                break
            await asyncio.sleep(0.1)
        state = await api.get_status(client, rid)
        assert state.status == "succeeded", state.model_dump_json(indent=1)
        assert [line.split()[1] for line in _lines(ledger, "second")] == ["b"]

        os.kill(a.proc.pid, signal.SIGCONT)
        await asyncio.sleep(4.0)

        ran = [line.split()[1] for line in _lines(ledger, "second")]
        assert ran == ["b"], f"the thawed worker ran the call again:\n{a.output()[-3000:]}"
    finally:
        if a.proc.poll() is None:
            os.kill(a.proc.pid, signal.SIGCONT)
        a.stop()
        if b is not None:
            b.stop()
