"""Upgrading workers under a running run, the way docs/operations.md says to.

A run is started on version N (today's ``towline worker``, a real process) and waits for
an approval; the worker is stopped and replaced by a process running version N+1
(tests/upgrade/v2.py: a new timer before each task, guarded by ``workflow.patched()``);
the approval is given and the run finishes on N+1, along N's path (``patched()`` is
decided once per workflow), while a run started after the upgrade takes N+1's. Then the
histories replay: this run's and the recorded ones of N on N+1, while the same change
without the guard cannot replay them.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowHistory
from temporalio.worker import Replayer

from tests.helpers import echo, plan, ws
from tests.upgrade.v2 import WorkstreamV2, WorkstreamV2Unguarded, cool_down_summary
from tests.workerproc import start_worker, wait_status
from towline.plan.load import check_data
from towline.starter import api
from towline.worker.plugin import TowlinePlugin, workflow_classes
from towline.workflows.workstream import WorkstreamWorkflow

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
RECORDED = sorted((ROOT / "tests" / "histories").glob("*.json"))


def _replayer(workstream: type) -> Replayer:
    plugin = TowlinePlugin(workflows=workflow_classes(workstream=workstream))
    return Replayer(workflows=[], plugins=[plugin])


async def _until_waiting(client: Client, rid: str, task: str) -> None:
    for _ in range(300):
        w = (await api.get_status(client, rid)).workstreams.get("w")
        if w is not None and task in w.tasks and w.tasks[task].status == "waiting":
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{rid}: {task} never waited")


def _timers(history: WorkflowHistory) -> list[str]:
    """The summaries of the timers started in ``history``."""
    out = []
    for e in history.events:
        if e.HasField("timer_started_event_attributes") and e.user_metadata.HasField("summary"):
            out.append(json.loads(e.user_metadata.summary.data))
    return out


async def test_a_run_waiting_on_version_n_finishes_on_n_plus_1(
    client: Client, dev_server: str, towline_home: Path
) -> None:
    queue = f"upgrade-{uuid.uuid4().hex[:8]}"
    spec = check_data(
        plan(
            ws(
                "w",
                echo("build"),
                echo("gate", needs=["build"], approval=True),
                echo("after", needs=["gate"]),
            ),
            name="upgrade",
        )
    )
    n = start_worker(dev_server, queue, home=towline_home)
    try:
        await wait_status(n, "/readyz", 200)
        rid = await api.start_run(client, spec, plan_dir=towline_home, task_queue=queue)
        await _until_waiting(client, rid, "gate")
    finally:
        n.stop()  # version N goes away with the run in flight
    assert n.proc.returncode == 0, n.output()

    with (towline_home / "v2.log").open("wb") as log:
        n1 = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "tests.upgrade.v2", dev_server, queue),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, "TOWLINE_HOME": str(towline_home)},
        )
        try:
            await api.answer(client, rid, "w.gate", "approve", by="test")
            state = await asyncio.wait_for(api.wait_run(client, rid), 60)
            # a run started after the upgrade
            new = await api.start_run(client, spec, plan_dir=towline_home, task_queue=queue)
            await _until_waiting(client, new, "gate")
            await api.answer(client, new, "w.gate", "approve", by="test")
            new_state = await asyncio.wait_for(api.wait_run(client, new), 60)
        finally:
            n1.terminate()
            await asyncio.wait_for(n1.wait(), 20)
    for s in (state, new_state):
        assert s.status == "succeeded", (towline_home / "v2.log").read_text()
        assert {t: x.status for t, x in s.workstreams["w"].tasks.items()} == dict.fromkeys(
            ["build", "gate", "after"], "succeeded"
        )

    # The run in flight keeps N's behaviour to its end (patched() is decided once per
    # workflow, and this one began without the patch); the run started on N+1 has N+1's.
    history = await client.get_workflow_handle(f"{rid}/w").fetch_history()
    assert _timers(history) == []
    new_history = await client.get_workflow_handle(f"{new}/w").fetch_history()
    assert _timers(new_history) == [cool_down_summary(t) for t in ("build", "gate", "after")]

    # Both runs' histories replay on N+1 (and the run's own, which did not change) ...
    run_history = await client.get_workflow_handle(rid).fetch_history()
    for h in (history, new_history, run_history):
        result = await _replayer(WorkstreamV2).replay_workflow(h, raise_on_replay_failure=False)
        assert result.replay_failure is None, result.replay_failure
    # ... and the unguarded change cannot replay it: the guard is what makes this work.
    # Going back to N after runs took N+1's path is not safe: N cannot replay them.
    back = await _replayer(WorkstreamWorkflow).replay_workflow(
        new_history, raise_on_replay_failure=False
    )
    assert back.replay_failure is not None
    unguarded = await _replayer(WorkstreamV2Unguarded).replay_workflow(
        history, raise_on_replay_failure=False
    )
    assert unguarded.replay_failure is not None
    assert "nondeterminism" in str(unguarded.replay_failure).lower()


@pytest.mark.parametrize("path", RECORDED, ids=[p.stem for p in RECORDED])
async def test_the_recorded_histories_of_n_replay_on_n_plus_1(path: Path) -> None:
    history = WorkflowHistory.from_json(path.stem, json.loads(path.read_text()))
    result = await _replayer(WorkstreamV2).replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"


async def test_without_the_guard_recorded_workstreams_of_n_do_not_replay() -> None:
    failed = []
    for path in RECORDED:
        # The change is in the workstream: its histories are <name>.<ws>; a run's is
        # <name>, an agent's <name>.<ws>.<task>.
        if path.stem.count(".") != 1:
            continue
        history = WorkflowHistory.from_json(path.stem, json.loads(path.read_text()))
        result = await _replayer(WorkstreamV2Unguarded).replay_workflow(
            history, raise_on_replay_failure=False
        )
        failed.append(result.replay_failure is not None)
    assert failed
    assert all(failed)
