"""Recovery strategies, approvals, run control and rollback, on a real dev server."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from tests.conftest import RunPlan
from tests.helpers import echo, plan, sh, ws
from towline.plan.load import check_data
from towline.starter import api
from towline.state import RunState, TaskState

pytestmark = pytest.mark.timeout(90)


async def _start(client: Client, task_queue: str, tmp_path: Path, data: dict[str, Any]) -> str:
    return await api.start_run(client, check_data(data), plan_dir=tmp_path, task_queue=task_queue)


async def _until(client: Client, rid: str, ref: str, status: str) -> RunState:
    """Poll the run's status until task ``ws.task`` reaches ``status``."""
    ws_id, tid = ref.split(".")
    while True:
        state = await api.get_status(client, rid)
        w = state.workstreams.get(ws_id)
        if w is not None and tid in w.tasks and w.tasks[tid].status == status:
            return state
        await asyncio.sleep(0.1)


def _task(state: RunState, ref: str) -> TaskState:
    ws_id, tid = ref.split(".")
    return state.workstreams[ws_id].tasks[tid]


def _fails_first_time(marker: Path) -> str:
    """A script that fails until ``marker`` exists, then succeeds."""
    return f"test -f {marker}"


async def test_skip_strategy_skips_the_task_and_its_dependents(run_plan: RunPlan) -> None:
    state = await run_plan(
        plan(
            ws(
                "w",
                sh("flaky", "exit 1", on_failure="skip"),
                echo("after", needs=["flaky"]),
                echo("other"),
            )
        )
    )
    t = state.workstreams["w"].tasks
    assert t["flaky"].status == "skipped"
    assert t["flaky"].error is not None
    assert t["flaky"].error.category == "tool"
    assert t["after"].status == "skipped"
    assert t["other"].status == "succeeded"
    assert state.status == "succeeded"


async def test_paused_task_is_retried_by_an_operator(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    marker = tmp_path / "fixed"
    rid = await _start(
        client,
        task_queue,
        tmp_path,
        plan(
            ws(
                "w",
                sh("gate", _fails_first_time(marker), on_failure="pause"),
                echo("next", needs=["gate"]),
            )
        ),
    )
    state = await _until(client, rid, "w.gate", "waiting")
    gate = _task(state, "w.gate")
    assert gate.waiting_for == "operator"
    assert f"towline retry|skip|abort {rid} w.gate" in (gate.reason or "")
    assert state.status == "waiting"
    assert state.workstreams["w"].status == "waiting"
    with pytest.raises(api.Refused):
        await api.answer(client, rid, "w.gate", "approve")  # not waiting for an approval
    marker.touch()
    await api.answer(client, rid, "w.gate", "retry", by="ops", note="fixed the env")
    final = await api.wait_run(client, rid)
    gate = _task(final, "w.gate")
    assert final.status == "succeeded"
    assert gate.status == "succeeded"
    assert gate.runs == 2
    assert [(d.answer, d.by, d.note) for d in gate.decisions] == [("retry", "ops", "fixed the env")]
    assert _task(final, "w.next").status == "succeeded"


async def test_pause_timeout_applies_the_default_answer(run_plan: RunPlan) -> None:
    state = await run_plan(
        plan(
            ws(
                "w",
                sh(
                    "gate",
                    "exit 1",
                    on_failure={"strategy": "pause", "timeout": "1s", "default": "skip"},
                ),
            )
        )
    )
    gate = state.workstreams["w"].tasks["gate"]
    assert gate.status == "skipped"
    assert [(d.answer, d.by) for d in gate.decisions] == [("skip", "timeout")]


async def test_operator_abort_fails_the_task(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    rid = await _start(
        client, task_queue, tmp_path, plan(ws("w", sh("gate", "exit 2", on_failure="pause")))
    )
    await _until(client, rid, "w.gate", "waiting")
    await api.answer(client, rid, "w.gate", "abort")
    final = await api.wait_run(client, rid)
    assert final.status == "failed"
    gate = _task(final, "w.gate")
    assert gate.status == "failed"
    assert gate.error is not None
    assert gate.error.category == "tool"


async def test_fix_strategy_repairs_and_reruns_the_task(run_plan: RunPlan, tmp_path: Path) -> None:
    marker = tmp_path / "fixed"
    seen = tmp_path / "seen"
    fix = {
        "tool": "shell",
        "with": {
            "command": [
                "sh",
                "-c",
                "echo '${{ failure.category }}: ${{ failure.message }}' "
                f"> {seen}; touch {marker}",
            ]
        },
    }
    state = await run_plan(
        plan(
            ws(
                "w",
                sh(
                    "gate",
                    _fails_first_time(marker),
                    on_failure={"strategy": "fix", "fix": fix, "max_fixes": 2},
                ),
            )
        )
    )
    gate = state.workstreams["w"].tasks["gate"]
    assert gate.status == "succeeded"
    assert gate.fixes == 1
    assert gate.runs == 2
    assert seen.read_text().startswith("tool: command exited with code 1")


async def test_fix_strategy_gives_up_after_max_fixes(run_plan: RunPlan, tmp_path: Path) -> None:
    fix = {"tool": "shell", "with": {"command": ["sh", "-c", f"echo x >> {tmp_path / 'fixes'}"]}}
    state = await run_plan(
        plan(
            ws(
                "w",
                sh("gate", "exit 1", on_failure={"strategy": "fix", "fix": fix, "max_fixes": 2}),
            )
        )
    )
    gate = state.workstreams["w"].tasks["gate"]
    assert gate.status == "failed"
    assert gate.fixes == 2
    assert gate.runs == 3
    assert gate.error is not None
    assert "still failing after 2 fix(es)" in gate.error.message
    assert len((tmp_path / "fixes").read_text().splitlines()) == 2


async def test_approval_given_from_the_api_is_recorded(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    ledger = tmp_path / "ran"
    rid = await _start(
        client,
        task_queue,
        tmp_path,
        plan(ws("w", sh("deploy", f"touch {ledger}", approval=True))),
    )
    state = await _until(client, rid, "w.deploy", "waiting")
    assert _task(state, "w.deploy").waiting_for == "approval"
    assert not ledger.exists()  # nothing runs before the approval
    await api.answer(client, rid, "w.deploy", "approve", by="ana")
    final = await api.wait_run(client, rid)
    deploy = _task(final, "w.deploy")
    assert deploy.status == "succeeded"
    assert ledger.exists()
    assert [(d.answer, d.by) for d in deploy.decisions] == [("approve", "ana")]
    assert deploy.decisions[0].at is not None


async def test_rejected_approval_fails_the_task_without_running_it(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    ledger = tmp_path / "ran"
    rid = await _start(
        client, task_queue, tmp_path, plan(ws("w", sh("deploy", f"touch {ledger}", approval=True)))
    )
    await _until(client, rid, "w.deploy", "waiting")
    await api.answer(client, rid, "w.deploy", "reject", by="ana", note="not today")
    final = await api.wait_run(client, rid)
    deploy = _task(final, "w.deploy")
    assert deploy.status == "failed"
    assert deploy.error is not None
    assert deploy.error.message == "rejected by ana: not today"
    assert not ledger.exists()


async def test_approval_timeout_applies_on_timeout(run_plan: RunPlan) -> None:
    state = await run_plan(
        plan(
            ws(
                "w",
                echo(
                    "deploy", approval={"required": True, "timeout": "1s", "on_timeout": "approve"}
                ),
            )
        )
    )
    deploy = state.workstreams["w"].tasks["deploy"]
    assert deploy.status == "succeeded"
    assert [(d.answer, d.by) for d in deploy.decisions] == [("approve", "timeout")]


async def test_failed_workstream_rolls_back_succeeded_tasks_newest_first(
    run_plan: RunPlan, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger"

    def undoable(tid: str, **extra: object) -> dict[str, Any]:
        return sh(
            tid,
            f"echo do {tid} >> {ledger}",
            rollback={
                "tool": "shell",
                "with": {"command": ["sh", "-c", f"echo undo {tid} >> {ledger}"]},
            },
            **extra,
        )

    state = await run_plan(
        plan(
            ws(
                "w",
                undoable("first"),
                undoable("second", needs=["first"]),
                echo("no-rollback", needs=["second"]),
                sh("breaks", "exit 1", needs=["no-rollback"]),
            )
        )
    )
    t = state.workstreams["w"].tasks
    assert ledger.read_text().splitlines() == ["do first", "do second", "undo second", "undo first"]
    assert t["first"].status == "rolled_back"
    assert t["second"].status == "rolled_back"
    assert t["no-rollback"].status == "succeeded"
    assert t["breaks"].status == "failed"
    assert state.workstreams["w"].status == "rolled_back"
    assert state.status == "rolled_back"


async def test_manual_rollback_policy_leaves_done_tasks_alone(
    run_plan: RunPlan, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger"
    undo = {"tool": "shell", "with": {"command": ["sh", "-c", f"echo undo >> {ledger}"]}}
    state = await run_plan(
        plan(
            ws(
                "w",
                echo("done", rollback=undo),
                sh("breaks", "exit 1", needs=["done"]),
                settings={"rollback": "manual"},
            )
        )
    )
    assert state.status == "failed"
    assert state.workstreams["w"].tasks["done"].status == "succeeded"
    assert not ledger.exists()


async def test_cancel_stops_the_run_and_rolls_back(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger"
    undo = {"tool": "shell", "with": {"command": ["sh", "-c", f"echo undo >> {ledger}"]}}
    rid = await _start(
        client,
        task_queue,
        tmp_path,
        plan(ws("w", echo("done", rollback=undo), sh("slow", "sleep 60", needs=["done"]))),
    )
    await _until(client, rid, "w.slow", "running")
    await api.cancel_run(client, rid)
    final = await api.wait_run(client, rid)
    assert final.status == "cancelled"
    assert _task(final, "w.slow").status == "cancelled"
    assert _task(final, "w.done").status == "rolled_back"
    assert ledger.read_text().splitlines() == ["undo"]


async def test_paused_run_starts_no_new_tasks_until_resumed(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    gate = tmp_path / "go"
    rid = await _start(
        client,
        task_queue,
        tmp_path,
        plan(
            ws(
                "w",
                sh("first", f"while [ ! -f {gate} ]; do sleep 0.05; done"),
                echo("second", needs=["first"]),
            )
        ),
    )
    await _until(client, rid, "w.first", "running")
    await api.pause_run(client, rid, by="ops")
    gate.touch()
    state = await _until(client, rid, "w.first", "succeeded")
    for _ in range(10):  # it stays paused: "second" does not start
        state = await api.get_status(client, rid)
        assert _task(state, "w.second").status == "pending"
        await asyncio.sleep(0.1)
    assert state.status == "waiting"
    assert state.reason == "paused by ops"
    await api.resume_run(client, rid)
    final = await api.wait_run(client, rid)
    assert final.status == "succeeded"
    assert _task(final, "w.second").status == "succeeded"


async def test_failure_policy_pause_waits_for_an_operator(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    data = plan(ws("w", sh("gate", "exit 1")), failure_policy="pause")
    rid = await _start(client, task_queue, tmp_path, data)
    state = await _until(client, rid, "w.gate", "waiting")
    assert _task(state, "w.gate").waiting_for == "operator"
    await api.answer(client, rid, "w.gate", "skip")
    final = await api.wait_run(client, rid)
    assert _task(final, "w.gate").status == "skipped"


async def test_retry_of_a_failed_run_reuses_succeeded_outputs(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger"
    marker = tmp_path / "fixed"
    data = plan(
        ws(
            "api",
            sh("build", f"echo build >> {ledger}; echo v1"),
            sh("gate", f"echo gate >> {ledger}; {_fails_first_time(marker)}", needs=["build"]),
        ),
        ws(
            "web",
            echo(
                "use",
                needs=["api.build"],
                **{"with": {"v": "${{ tasks.api.build.outputs.stdout }}"}},
            ),
            sh("after", f"echo after >> {ledger}", needs=["api.gate"]),
        ),
        failure_policy="continue",
    )
    rid = await _start(client, task_queue, tmp_path, data)
    first = await api.wait_run(client, rid)
    assert first.status == "failed"
    with pytest.raises(api.Refused):
        await api.answer(client, rid, "api.x", "retry")  # no such task
    marker.touch()
    new_id = await api.retry_run(client, rid, task_queue=task_queue)
    second = await api.wait_run(client, new_id)
    assert second.status == "succeeded"
    assert second.retry_of == rid
    assert _task(second, "api.build").reason == f"reused from run {rid}"
    assert _task(second, "web.use").outputs == {"v": "v1\n"}
    # build ran once in all; the gate ran in both runs; "after" only in the retry.
    assert ledger.read_text().splitlines() == ["build", "gate", "gate", "after"]
    with pytest.raises(api.Refused):
        await api.retry_run(client, new_id, task_queue=task_queue)  # it succeeded


async def test_rollback_command_undoes_a_finished_run_newest_first(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger"

    def undoable(tid: str, **extra: object) -> dict[str, Any]:
        return echo(
            tid,
            rollback={
                "tool": "shell",
                "with": {"command": ["sh", "-c", f"echo undo {tid} >> {ledger}"]},
            },
            **extra,
        )

    rid = await _start(
        client,
        task_queue,
        tmp_path,
        plan(
            ws("a", undoable("one"), undoable("two", needs=["one"])),
            ws("b", undoable("three"), needs=["a"]),
        ),
    )
    assert (await api.wait_run(client, rid)).status == "succeeded"
    wid = await api.rollback_run(client, rid, task_queue=task_queue)
    await client.get_workflow_handle(wid).result()
    state = await api.get_status(client, rid)
    assert ledger.read_text().splitlines() == ["undo three", "undo two", "undo one"]
    assert state.status == "rolled_back"
    assert _task(state, "a.one").status == "rolled_back"
    assert state.workstreams["b"].status == "rolled_back"
    with pytest.raises(api.Refused):
        await api.rollback_run(client, rid, task_queue=task_queue)  # only once


async def test_a_retried_run_works_in_the_workspace_of_the_run_it_retries(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    marker = tmp_path / "fixed"
    data = plan(
        ws(
            "w",
            sh("apply", "echo patched > change.txt"),
            sh("gate", f"test -f change.txt && test -f {marker}", needs=["apply"]),
        )
    )
    rid = await _start(client, task_queue, tmp_path, data)
    assert (await api.wait_run(client, rid)).status == "failed"
    marker.touch()
    second = await api.wait_run(client, await api.retry_run(client, rid, task_queue=task_queue))
    assert _task(second, "w.apply").reason == f"reused from run {rid}"
    assert _task(second, "w.gate").status == "succeeded"  # it found apply's change
