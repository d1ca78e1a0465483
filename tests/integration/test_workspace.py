"""Workspaces through whole towline runs: clones, copies, refs, isolation, retries, cleanup."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.worker import Worker

from tests.conftest import RunPlan
from tests.helpers import echo, git, make_repo, plan, sh, ws
from towline.activities.workspace import CleanupRequest, cleanup_workspace, workspace_path
from towline.plan.spec import RepoSpec
from towline.state import RunState, TaskState, workstream_workflow_id
from towline.worker.devserver import free_port


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """The user's checkout, with an uncommitted change of the user's own."""
    path = make_repo(tmp_path / "repo", {"a.txt": "committed\n"})
    (path / "a.txt").write_text("the user's work in progress\n")
    return path


def _one(*tasks: dict[str, Any], **repo: Any) -> dict[str, Any]:
    return plan(ws("w", *tasks, repo={"keep": "always", **repo}))


def _task(state: RunState, tid: str = "t") -> TaskState:
    return state.workstreams["w"].tasks[tid]


def _stdout(state: RunState, tid: str = "t") -> str:
    task = _task(state, tid)
    assert task.status == "succeeded", task.error
    return str(task.outputs["stdout"])


async def _prepare_failure(client: Client, state: RunState, workstream: str = "w") -> str:
    """The message of the failed prepare_workspace activity, from the workstream's history."""
    handle = client.get_workflow_handle(workstream_workflow_id(state.run_id, workstream))
    history = await handle.fetch_history()
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED:
            failure = event.activity_task_failed_event_attributes.failure
            info = failure.application_failure_info
            assert info.type == "validation"
            assert info.non_retryable
            return failure.message
    raise AssertionError("prepare_workspace did not fail")


async def test_a_local_repository_is_cloned_and_the_checkout_left_alone(
    run_plan: RunPlan, repo: Path
) -> None:
    head = git(repo, "rev-parse", "HEAD")
    state = await run_plan(
        _one(
            sh("t", "pwd -P; cat a.txt; echo changed > a.txt; git remote get-url origin"),
            {
                "id": "commit",
                "tool": "git",
                "needs": ["t"],
                "with": {"action": "commit", "message": "run's change", "all": True},
            },
            path="repo",
        )
    )

    workspace = workspace_path(state.run_id, "w")
    where, content, origin = _stdout(state).splitlines()
    assert Path(where) == workspace.resolve()
    assert content == "committed"  # the committed state, not the user's uncommitted work
    assert Path(origin) == repo
    assert _task(state, "commit").outputs["committed"] is True
    assert (repo / "a.txt").read_text() == "the user's work in progress\n"
    assert git(repo, "rev-parse", "HEAD") == head
    assert git(repo, "branch", "--format=%(refname:short)").split() == ["main"]
    assert not (repo / ".git" / "worktrees").exists()


async def test_two_runs_on_one_repository_do_not_touch_each_other(
    run_plan: RunPlan, repo: Path
) -> None:
    # Each run writes its id, waits long enough for the other to write too, reads it back.
    check = sh("t", "echo ${{ run.id }} > owner.txt; sleep 1; cat owner.txt")
    first, second = await asyncio.gather(
        run_plan(_one(check, path="repo")), run_plan(_one(check, path="repo"))
    )

    assert _stdout(first).strip() == first.run_id
    assert _stdout(second).strip() == second.run_id
    assert workspace_path(first.run_id, "w") != workspace_path(second.run_id, "w")
    assert not (repo / "owner.txt").exists()


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    """A bare repository with a branch ``feature`` and a tag ``v1`` besides ``main``."""
    src = make_repo(tmp_path / "src", {"which.txt": "main\n"})
    git(src, "tag", "v1")
    git(src, "checkout", "--quiet", "-b", "feature")
    (src / "which.txt").write_text("feature\n")
    git(src, "commit", "--quiet", "--all", "--message", "feature")
    git(src, "checkout", "--quiet", "main")
    (src / "which.txt").write_text("main, later\n")
    git(src, "commit", "--quiet", "--all", "--message", "later")
    bare = tmp_path / "origin.git"
    git(tmp_path, "clone", "--quiet", "--bare", str(src), str(bare))
    return bare


async def test_a_url_is_cloned_at_its_ref(run_plan: RunPlan, origin: Path) -> None:
    url = f"file://{origin}"
    sha = git(origin, "rev-parse", "feature~1").strip()
    show = "cat which.txt; git rev-parse --abbrev-ref HEAD"
    state = await run_plan(
        plan(
            ws("default", sh("t", show), repo={"url": url}),
            ws("branch", sh("t", show), repo={"url": url, "ref": "feature"}),
            ws("tag", sh("t", show), repo={"url": url, "ref": "v1"}),
            ws("sha", sh("t", show), repo={"url": url, "ref": sha}),
        )
    )

    seen = {
        wid: w.tasks["t"].outputs.get("stdout", w.tasks["t"].error)
        for wid, w in state.workstreams.items()
    }
    assert seen == {
        "default": "main, later\nmain\n",
        "branch": "feature\nfeature\n",  # a branch is checked out as a branch
        "tag": "main\nHEAD\n",  # a tag or a commit is checked out detached
        "sha": "main\nHEAD\n",
    }


async def test_an_unknown_ref_fails_the_workstream_naming_the_repo(
    run_plan: RunPlan, client: Client, origin: Path
) -> None:
    url = f"file://{origin}"
    state = await run_plan(_one(sh("t", "true"), url=url, ref="no-such-branch"))

    assert state.workstreams["w"].status == "failed"
    assert _task(state).status != "succeeded"
    message = await _prepare_failure(client, state)
    assert message == f"workstream 'w': repo.ref 'no-such-branch' not found in {url}"


async def test_an_unreachable_url_fails_the_workstream_naming_it(
    run_plan: RunPlan, client: Client, tmp_path: Path
) -> None:
    url = f"file://{tmp_path}/missing.git"
    state = await run_plan(_one(sh("t", "true"), url=url))

    assert state.workstreams["w"].status == "failed"
    message = await _prepare_failure(client, state)
    assert message.startswith(f"workstream 'w': cannot clone repo.url '{url}': ")


async def test_a_password_in_a_url_stays_out_of_messages(
    run_plan: RunPlan, client: Client, tmp_path: Path
) -> None:
    url = f"http://user:hunter2@127.0.0.1:{free_port()}/repo.git"
    state = await run_plan(_one(sh("t", "true"), url=url))

    message = await _prepare_failure(client, state)
    assert "hunter2" not in message
    assert "***@127.0.0.1" in message


async def test_a_missing_path_fails_the_workstream_naming_it(
    run_plan: RunPlan, client: Client
) -> None:
    state = await run_plan(_one(sh("t", "true"), path="not-here"))

    message = await _prepare_failure(client, state)
    assert "workstream 'w': repo.path 'not-here' does not exist" in message


async def test_a_folder_that_is_not_a_repository_is_copied(
    run_plan: RunPlan, tmp_path: Path
) -> None:
    folder = tmp_path / "plain"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "data.txt").write_text("data\n")
    (folder / "link").symlink_to("sub/data.txt")

    state = await run_plan(
        _one(sh("t", "readlink link; cat link; echo new > sub/data.txt"), path="plain")
    )

    assert _stdout(state) == "sub/data.txt\ndata\n"  # links stay links
    assert (folder / "sub" / "data.txt").read_text() == "data\n"
    copy = workspace_path(state.run_id, "w")
    assert (copy / "sub" / "data.txt").read_text() == "new\n"


async def test_a_ref_needs_a_repository(run_plan: RunPlan, client: Client, tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    state = await run_plan(_one(sh("t", "true"), path="plain", ref="main"))

    message = await _prepare_failure(client, state)
    assert "repo.ref needs a git repository" in message


async def test_preparing_again_after_a_crash_is_harmless(run_plan: RunPlan, repo: Path) -> None:
    """What a worker dying mid-way leaves: a half-made clone beside the workspace."""
    run_id = "crashed-once"
    final = workspace_path(run_id, "w")
    half = final.parent / f".{final.name}.tmp-dead"
    (half / ".git").mkdir(parents=True)
    (half / "a.txt").write_text("half\n")

    state = await run_plan(_one(sh("t", "cat a.txt"), path="repo"), run_id=run_id)

    assert _stdout(state) == "committed\n"
    assert not half.exists()


async def test_a_workspace_already_in_place_is_used_as_it_is(run_plan: RunPlan, repo: Path) -> None:
    """An attempt that finished but died before reporting: the retry keeps its work."""
    run_id = "prepared-before"
    final = workspace_path(run_id, "w")
    final.mkdir(parents=True)
    (final / "a.txt").write_text("already here\n")

    state = await run_plan(_one(sh("t", "cat a.txt"), path="repo"), run_id=run_id)

    assert _stdout(state) == "already here\n"


@workflow.defn(name="CleanupProbe", sandboxed=False)
class CleanupProbe:
    """Calls cleanup_workspace as the workstream workflow does at its end."""

    @workflow.run
    async def run(self, req: CleanupRequest) -> bool:
        return await workflow.execute_activity(
            cleanup_workspace, req, start_to_close_timeout=timedelta(minutes=1)
        )


@pytest.mark.parametrize(
    ("keep", "succeeded", "removed"),
    [
        ("always", True, False),
        ("always", False, False),
        ("on_failure", True, True),
        ("on_failure", False, False),
        ("never", True, True),
        ("never", False, True),
        (None, True, True),  # no repo: a scratch workspace, kept only on failure
        (None, False, False),
    ],
)
async def test_cleanup_follows_keep(
    client: Client, towline_home: Path, keep: str | None, succeeded: bool, removed: bool
) -> None:
    path = workspace_path("run-1", "w")
    (path / "sub").mkdir(parents=True)
    (path / "sub" / "f").write_text("x")
    (path / "sub").chmod(0o500)  # a read-only folder, as tests and tools leave them
    repo = RepoSpec(path=".", keep=keep) if keep else None
    req = CleanupRequest(run_id="run-1", workstream="w", repo=repo, succeeded=succeeded)
    queue = f"cleanup-{uuid.uuid4().hex[:8]}"

    async def cleanup() -> bool:
        return await client.execute_workflow(
            CleanupProbe.run, req, id=f"{queue}-{uuid.uuid4().hex[:6]}", task_queue=queue
        )

    async with Worker(
        client, task_queue=queue, workflows=[CleanupProbe], activities=[cleanup_workspace]
    ):
        assert await cleanup() is removed
        assert path.exists() is not removed
        if removed:
            assert not path.parent.exists()  # the run's folder went with its last workspace
            assert await cleanup() is True  # again: harmless
        else:
            (path / "sub").chmod(0o700)


async def _local_activities(client: Client, run_id: str, workstream: str) -> int:
    handle = client.get_workflow_handle(workstream_workflow_id(run_id, workstream))
    return sum(
        e.marker_recorded_event_attributes.marker_name == "core_local_activity"
        for e in (await handle.fetch_history()).events
    )


async def test_only_workstreams_whose_tools_use_a_folder_get_one(
    run_plan: RunPlan, client: Client
) -> None:
    state = await run_plan(plan(ws("quiet", echo("a")), ws("busy", sh("t", "pwd"))))

    assert state.status == "succeeded"
    assert state.workstreams["quiet"].tasks["a"].status == "succeeded"
    busy = state.workstreams["busy"].tasks["t"]
    assert str(busy.outputs["stdout"]).strip() == str(workspace_path(state.run_id, "busy"))
    # busy: prepared and removed (local activities); quiet: neither.
    assert await _local_activities(client, state.run_id, "busy") == 2
    assert await _local_activities(client, state.run_id, "quiet") == 0
    assert not workspace_path(state.run_id, "quiet").exists()
