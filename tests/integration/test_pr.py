"""The ``pr`` tool through whole runs, against a fake forge (GitHub's, GitLab's and Gitea's
APIs over a socket) whose repositories are real bare git repositories."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from tests.fakes.forge import FakeForge
from tests.helpers import git, make_repo, plan, sh, ws
from towline.plan.load import check_data
from towline.starter import api
from towline.state import RunState

pytestmark = pytest.mark.timeout(120)

TOKEN = "s3cret-forge-token"
REPO = "acme/api"
FAST = {"poll_interval": "1s", "max_poll_interval": "1s", "wait_timeout": "2m"}


@pytest.fixture
def bare(tmp_path: Path) -> Path:
    """The forge's side of the repository: a bare repository with one commit on main."""
    seed = make_repo(tmp_path / "seed", {"app.py": "print('v1')\n"})
    path = tmp_path / "remote.git"
    git(tmp_path, "clone", "--quiet", "--bare", str(seed), str(path))
    return path


@pytest.fixture
def forge(bare: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeForge]:
    # The worker runs in this process: the token is its secret FORGE_TOKEN.
    monkeypatch.setenv("TOWLINE_SECRET_FORGE_TOKEN", TOKEN)
    with FakeForge({REPO: bare}, token=TOKEN) as server:
        yield server


def _pr(
    tid: str, forge: FakeForge, needs: list[str], kind: str = "github", **with_: Any
) -> dict[str, Any]:
    args = {
        "forge": kind,
        "api_url": forge.api_url(kind),
        "repo": REPO,
        "token": "${{ secrets.FORGE_TOKEN }}",
        **with_,
    }
    return {"id": tid, "tool": "pr", "needs": needs, "with": args, "retry": {"max_attempts": 3}}


def _change(tid: str = "change") -> dict[str, Any]:
    return sh(tid, "echo \"print('v2')\" > app.py && git add app.py")


def _commit(needs: list[str]) -> dict[str, Any]:
    return {
        "id": "commit",
        "tool": "git",
        "needs": needs,
        "with": {"action": "commit", "message": "v2"},
    }


def _ws(bare: Path, *tasks: dict[str, Any], wid: str = "w") -> dict[str, Any]:
    return ws(wid, *tasks, repo={"url": str(bare), "keep": "always"})


async def _start(client: Client, queue: str, tmp_path: Path, spec: dict[str, Any]) -> str:
    return await api.start_run(client, check_data(spec), plan_dir=tmp_path, task_queue=queue)


async def _run(client: Client, queue: str, tmp_path: Path, spec: dict[str, Any]) -> RunState:
    return await api.wait_run(client, await _start(client, queue, tmp_path, spec))


def _outputs(state: RunState, tid: str, wid: str = "w") -> dict[str, Any]:
    task = state.workstreams[wid].tasks[tid]
    assert task.status == "succeeded", (task.status, task.error)
    return task.outputs


async def _history(client: Client, workflow_id: str) -> list[Any]:
    return [e async for e in client.get_workflow_handle(workflow_id).fetch_history_events()]


async def _until(predicate: Any, what: str, timeout: float = 60.0) -> None:
    for _ in range(int(timeout / 0.1)):
        if predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting until {what}")


async def test_opens_a_pull_request_from_the_pushed_branch_and_updates_it_on_a_second_call(
    client: Client, task_queue: str, tmp_path: Path, forge: FakeForge, bare: Path
) -> None:
    spec = plan(
        _ws(
            bare,
            _change(),
            _commit(["change"]),
            _pr("open", forge, ["commit"], labels=["deps"], reviewers=["ana"], draft=True),
            _pr("again", forge, ["open"], title="Bump to v2", body="Second look."),
        ),
        name="bump",
    )
    state = await _run(client, task_queue, tmp_path, spec)

    opened, again = _outputs(state, "open"), _outputs(state, "again")
    branch = f"towline/{state.run_id}/w"
    sha = git(bare, "rev-parse", f"refs/heads/{branch}").strip()
    assert opened["created"] is True
    assert again["created"] is False
    assert opened["number"] == again["number"] == 1
    assert (opened["branch"], opened["base"], opened["sha"]) == (branch, "main", sha)
    assert opened["state"] == "open"
    assert opened["url"].endswith("/acme/api/pull/1")
    [pull] = forge.pulls(REPO)  # one pull request, updated by the second call
    assert (pull.title, pull.body, pull.draft) == ("Bump to v2", "Second look.", True)
    assert (pull.labels, pull.reviewers) == (["deps"], ["ana"])
    assert git(bare, "show", f"{sha}:app.py") == "print('v2')\n"
    # The first call's default title and body name the run.
    assert forge.server.requests  # the token went as a header: never into history
    for wid in (state.run_id, f"{state.run_id}/w"):
        events = json.dumps([str(e) for e in await _history(client, wid)])
        assert TOKEN not in events


async def test_a_create_whose_answer_was_lost_is_retried_without_a_second_pull_request(
    client: Client, task_queue: str, tmp_path: Path, forge: FakeForge, bare: Path
) -> None:
    forge.lose_next_open = True
    spec = plan(_ws(bare, _change(), _commit(["change"]), _pr("open", forge, ["commit"])))
    state = await _run(client, task_queue, tmp_path, spec)

    out = _outputs(state, "open")
    assert state.workstreams["w"].tasks["open"].attempts == 2
    assert out["number"] == 1
    assert out["created"] is False  # the retry found the one the lost answer had opened
    assert len(forge.pulls(REPO)) == 1


@pytest.mark.parametrize("kind", ["github", "gitlab", "gitea"])
async def test_waits_until_the_pull_request_is_merged(
    client: Client, task_queue: str, tmp_path: Path, forge: FakeForge, bare: Path, kind: str
) -> None:
    spec = plan(
        _ws(
            bare,
            _change(),
            _commit(["change"]),
            _pr("pr", forge, ["commit"], kind, labels=["deps"], wait="merged", **FAST),
        )
    )
    rid = await _start(client, task_queue, tmp_path, spec)
    await _until(lambda: forge.pulls(REPO), "the pull request is open")
    await asyncio.sleep(2.5)  # a few polls find it open
    status = await api.get_status(client, rid)
    assert status.workstreams["w"].tasks["pr"].status == "running"

    merge = {
        "github": ("PUT", f"{forge.api_url(kind)}/repos/{REPO}/pulls/1/merge", "Bearer "),
        "gitlab": (
            "PUT",
            f"{forge.api_url(kind)}/projects/acme%2Fapi/merge_requests/1/merge",
            "",
        ),
        "gitea": ("POST", f"{forge.api_url(kind)}/repos/{REPO}/pulls/1/merge", "token "),
    }[kind]
    header = "PRIVATE-TOKEN" if kind == "gitlab" else "Authorization"
    async with httpx.AsyncClient() as http:
        reply = await http.request(merge[0], merge[1], headers={header: merge[2] + TOKEN})
    assert reply.status_code == 200, reply.text
    state = await api.wait_run(client, rid)

    out = _outputs(state, "pr")
    assert out["state"] == "merged"
    assert forge.pulls(REPO)[0].labels == ["deps"]
    assert git(bare, "show", "main:app.py") == "print('v2')\n"
    attempts = state.workstreams["w"].tasks["pr"].attempts
    assert attempts >= 3, attempts  # it polled
    # Polls are retries of one activity: one scheduled event for all of them.
    events = await _history(client, f"{rid}/w")
    scheduled = [
        e
        for e in events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and e.activity_task_scheduled_event_attributes.activity_type.name == "pr"
    ]
    assert len(scheduled) == 1


async def test_waits_for_checks_and_fails_when_one_fails(
    client: Client, task_queue: str, tmp_path: Path, forge: FakeForge, bare: Path
) -> None:
    tasks = (
        _change(),
        _commit(["change"]),
        _pr("pr", forge, ["commit"], wait="checks_passed", **FAST),
    )
    rid = await _start(client, task_queue, tmp_path, plan(_ws(bare, *tasks)))
    await _until(lambda: forge.pulls(REPO), "the pull request is open")
    sha = forge.pulls(REPO)[0].sha
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=f"{forge.url}/repos/{REPO}", headers=headers) as http:
        await http.post(f"/statuses/{sha}", json={"state": "pending", "context": "ci/lint"})
        await http.post(
            "/check-runs", json={"name": "tests", "head_sha": sha, "status": "in_progress"}
        )
        await asyncio.sleep(2.5)
        assert (await api.get_status(client, rid)).workstreams["w"].tasks["pr"].status == "running"
        await http.post(f"/statuses/{sha}", json={"state": "success", "context": "ci/lint"})
        await http.post(
            "/check-runs",
            json={"name": "tests", "head_sha": sha, "status": "completed", "conclusion": "failure"},
        )
    state = await api.wait_run(client, rid)

    task = state.workstreams["w"].tasks["pr"]
    assert task.status == "failed"
    assert task.error is not None
    assert task.error.category == "test_failed"
    assert "checks failed" in task.error.message
    assert "tests" in task.error.message


async def test_rollback_closes_the_pull_request_and_deletes_its_branch(
    client: Client, task_queue: str, tmp_path: Path, forge: FakeForge, bare: Path
) -> None:
    pr = _pr("pr", forge, ["commit"])
    pr["rollback"] = {"tool": "pr", "with": {**pr["with"], "action": "close"}}
    spec = plan(_ws(bare, _change(), _commit(["change"]), pr, sh("deploy", "exit 3", needs=["pr"])))
    state = await _run(client, task_queue, tmp_path, spec)

    task = state.workstreams["w"].tasks["pr"]
    assert task.status == "rolled_back", task.rollback_error
    [pull] = forge.pulls(REPO)
    assert (pull.state, pull.merged) == ("closed", False)
    branch = f"towline/{state.run_id}/w"
    assert git(bare, "branch", "--list", branch) == ""


async def test_a_failing_run_opens_one_issue_however_many_workstreams_fail(
    client: Client, task_queue: str, tmp_path: Path, forge: FakeForge, bare: Path
) -> None:
    def failing(wid: str) -> dict[str, Any]:
        report = _pr(
            "report", forge, [], action="issue", title="towline run failed", labels=["ops"]
        )
        report["with"]["body"] = "Workstream ${{ workstream.id }} failed."
        first = {"id": "first", "tool": "echo", "rollback": {"tool": "pr", "with": report["with"]}}
        return ws(wid, first, sh("boom", "exit 1", needs=["first"]), repo={"url": str(bare)})

    spec = plan(failing("a"), failing("b"), failure_policy="continue")
    state = await _run(client, task_queue, tmp_path, spec)

    assert state.status in ("failed", "rolled_back")
    for wid in ("a", "b"):
        assert state.workstreams[wid].tasks["first"].status == "rolled_back"
    [issue] = forge.issues(REPO)
    assert issue.title == "towline run failed"
    assert issue.labels == ["ops"]
    assert f"towline run: {state.run_id}" in issue.body
