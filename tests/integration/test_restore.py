"""`towline retry` and `towline rollback` start from the runs' snapshots, not from
whatever folder a worker happens to have (or not have); and a workspace a worker
cannot make says why."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from temporalio.client import Client

from tests.conftest import RunPlan
from tests.helpers import make_repo, sh
from towline.activities.workspace import workspace_path
from towline.plan.load import check_data
from towline.starter import api


def _plan(tasks: list[dict[str, Any]], **repo: object) -> dict[str, Any]:
    return {
        "version": 1,
        "name": "restore",
        "workstreams": [{"id": "w", "repo": {"path": "repo", **repo}, "tasks": tasks}],
    }


async def test_a_retry_starts_from_the_last_succeeded_task_not_a_failed_ones_leftovers(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    make_repo(tmp_path / "repo", {"README.md": "hi\n"})
    marker = tmp_path / "fixed"
    tasks = [
        sh("first", "echo first > first.txt"),
        # Fails, half done, until the marker is there.
        sh("second", f"test -f {marker} || (echo half > half.txt; exit 1)", needs=["first"]),
        sh("check", "ls; test -f first.txt && test ! -e half.txt", needs=["second"]),
    ]
    spec = check_data(_plan(tasks))
    rid = await api.start_run(client, spec, plan_dir=tmp_path, task_queue=task_queue)
    failed = await api.wait_run(client, rid)
    assert failed.status == "failed"
    # The failed run's folder, kept for a person to look at, has the half-done change.
    assert (workspace_path(rid, "w") / "half.txt").exists()

    marker.touch()
    retried = await api.wait_run(client, await api.retry_run(client, rid, task_queue=task_queue))

    assert retried.status == "succeeded", retried.workstreams["w"].tasks["check"].error
    tasks_state = retried.workstreams["w"].tasks
    assert tasks_state["first"].reason == f"reused from run {rid}"
    assert sorted(tasks_state["check"].outputs["stdout"].split()) == [
        "README.md",
        "first.txt",
    ]


async def test_a_rollback_after_the_workspace_is_gone_acts_on_its_snapshot(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    make_repo(tmp_path / "repo", {"README.md": "hi\n"})
    undo = "test -f made.txt && rm made.txt && echo undone"
    tasks = [
        {
            **sh("make", "echo made > made.txt"),
            "rollback": {"tool": "shell", "with": {"command": ["sh", "-c", undo]}},
        }
    ]
    spec = check_data(_plan(tasks, keep="never"))
    rid = await api.start_run(client, spec, plan_dir=tmp_path, task_queue=task_queue)
    done = await api.wait_run(client, rid)
    assert done.status == "succeeded"
    assert not workspace_path(rid, "w").exists()  # removed: keep: never

    wid = await api.rollback_run(client, rid, task_queue=task_queue)
    await client.get_workflow_handle(wid).result()
    state = await api.get_status(client, rid)

    make = state.workstreams["w"].tasks["make"]
    assert make.rollback_error is None, make.rollback_error
    assert make.status == "rolled_back"
    assert state.status == "rolled_back"


async def test_a_repo_path_the_worker_cannot_see_fails_naming_it_and_suggesting_a_url(
    run_plan: RunPlan, tmp_path: Path
) -> None:
    state = await run_plan(_plan([sh("t", "true")]), plan_dir=tmp_path / "elsewhere")

    reason = state.workstreams["w"].reason or ""
    assert state.status == "failed"
    assert "repo.path 'repo' does not exist on this worker" in reason
    assert "give the repository as repo.url" in reason
