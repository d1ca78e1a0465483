"""The ``git`` tool through whole towline runs, on real repositories (a bare one as remote)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RunPlan
from tests.helpers import git, make_repo, plan, sh, ws
from towline.activities.artifacts import read_artifact
from towline.activities.workspace import workspace_path
from towline.plan.load import PlanError, check_data
from towline.state import RunState, TaskState


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """The user's checkout."""
    return make_repo(tmp_path / "repo", {"a.txt": "a\n", "gone.txt": "bye\n"})


@pytest.fixture
def bare(tmp_path: Path) -> Path:
    """A bare repository to push to, as a server's would be."""
    path = tmp_path / "remote.git"
    path.mkdir()
    git(path, "init", "--quiet", "--bare")
    return path


def _plan(*tasks: dict[str, Any]) -> dict[str, Any]:
    return plan(ws("w", *tasks, repo={"path": "repo", "keep": "always"}))


def _git(tid: str, needs: list[str] | None = None, **with_: Any) -> dict[str, Any]:
    task: dict[str, Any] = {"id": tid, "tool": "git", "with": with_, "retry": {"max_attempts": 3}}
    if needs:
        task["needs"] = needs
    return task


def _edit(tid: str = "edit", **extra: Any) -> dict[str, Any]:
    """Change a.txt, delete gone.txt and add new/file.txt."""
    script = "echo more >> a.txt && rm gone.txt && mkdir new && echo n > new/file.txt"
    return sh(tid, script, **extra)


def _task(state: RunState, tid: str) -> TaskState:
    return state.workstreams["w"].tasks[tid]


def _ok(state: RunState, tid: str) -> dict[str, Any]:
    task = _task(state, tid)
    assert task.status == "succeeded", task.error
    return task.outputs


def _error(state: RunState, tid: str) -> tuple[str, str]:
    task = _task(state, tid)
    assert task.status == "failed"
    assert task.error is not None
    return task.error.category, task.error.message


async def test_status_lists_changed_and_untracked_files(run_plan: RunPlan, repo: Path) -> None:
    state = await run_plan(
        _plan(
            _git("before", action="status"),
            _edit(needs=["before"]),  # "before" sees the checkout as it was cloned
            _git("after", ["edit"], action="status"),
        )
    )

    before, after = _ok(state, "before"), _ok(state, "after")
    assert before["clean"] is True
    assert before["branch"] == "main"
    assert before["head"] == git(repo, "rev-parse", "HEAD").strip()
    assert after["clean"] is False
    assert sorted(after["changed"]) == ["a.txt", "gone.txt"]
    assert after["staged"] == []
    assert after["untracked"] == ["new/file.txt"]


async def test_commit_all_records_every_change_with_the_given_author(
    run_plan: RunPlan, repo: Path
) -> None:
    head = git(repo, "rev-parse", "HEAD")
    state = await run_plan(
        _plan(
            _edit(),
            _git(
                "commit",
                ["edit"],
                action="commit",
                message="Edit things for ${{ run.id }}",
                all=True,
                author={"name": "Ada Lovelace", "email": "ada@example.com"},
            ),
        )
    )

    out = _ok(state, "commit")
    assert out["committed"] is True
    assert out["branch"] == "main"
    assert sorted(out["files"]) == ["a.txt", "gone.txt", "new/file.txt"]
    workspace = workspace_path(state.run_id, "w")
    assert git(workspace, "rev-parse", "HEAD").strip() == out["sha"]
    log = git(workspace, "log", "-1", "--format=%an <%ae>|%cn <%ce>|%s")
    assert log.strip() == (
        f"Ada Lovelace <ada@example.com>|Ada Lovelace <ada@example.com>|"
        f"Edit things for {state.run_id}"
    )
    assert git(workspace, "status", "--porcelain") == ""
    # The user's checkout did not move.
    assert git(repo, "rev-parse", "HEAD") == head
    assert git(repo, "status", "--porcelain") == ""


async def test_commit_without_a_global_identity_uses_towlines(
    run_plan: RunPlan, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The worker runs in this process: take away every identity git could find.
    for var in ("AUTHOR", "COMMITTER"):
        for part in ("NAME", "EMAIL"):
            monkeypatch.delenv(f"GIT_{var}_{part}", raising=False)
    monkeypatch.delenv("EMAIL", raising=False)
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "no-gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))

    state = await run_plan(
        _plan(_edit(), _git("commit", ["edit"], action="commit", message="m", all=True))
    )

    _ok(state, "commit")
    log = git(workspace_path(state.run_id, "w"), "log", "-1", "--format=%an <%ae>")
    assert log.strip() == "towline <towline@localhost>"


async def test_commit_with_nothing_to_commit_succeeds_with_committed_false(
    run_plan: RunPlan, repo: Path
) -> None:
    state = await run_plan(_plan(_git("commit", action="commit", message="nothing", all=True)))

    out = _ok(state, "commit")
    assert out["committed"] is False
    assert out["sha"] == git(repo, "rev-parse", "HEAD").strip()
    assert out["files"] == []


async def test_commit_without_all_takes_only_what_is_staged(run_plan: RunPlan, repo: Path) -> None:
    state = await run_plan(
        _plan(
            _edit(),
            sh("stage", "git add a.txt", needs=["edit"]),
            _git("commit", ["stage"], action="commit", message="only a"),
        )
    )

    assert _ok(state, "commit")["files"] == ["a.txt"]


async def test_branch_is_created_checked_out_and_reused(run_plan: RunPlan, repo: Path) -> None:
    state = await run_plan(
        _plan(
            _git("make", action="branch", name="towline/fix", checkout=True),
            _git("again", ["make"], action="branch", name="towline/fix", checkout=True),
            _git("other", ["again"], action="branch", name="side"),
            _git("status", ["other"], action="status"),
        )
    )

    assert _ok(state, "make")["created"] is True
    assert _ok(state, "again")["created"] is False
    assert _ok(state, "other")["created"] is True
    assert _ok(state, "status")["branch"] == "towline/fix"
    branches = git(workspace_path(state.run_id, "w"), "branch", "--format=%(refname:short)")
    assert sorted(branches.split()) == ["main", "side", "towline/fix"]
    assert git(repo, "branch", "--format=%(refname:short)").split() == ["main"]


async def test_invalid_branch_name_is_a_validation_error(run_plan: RunPlan, repo: Path) -> None:
    state = await run_plan(_plan(_git("make", action="branch", name="bad..name")))

    category, message = _error(state, "make")
    assert category == "validation"
    assert "'bad..name' is not a valid branch name" in message


async def test_push_to_a_bare_repository_and_again(
    run_plan: RunPlan, repo: Path, bare: Path
) -> None:
    state = await run_plan(
        _plan(
            _edit(),
            _git("commit", ["edit"], action="commit", message="pushed", all=True),
            _git("push", ["commit"], action="push", remote=str(bare), branch="feature"),
            _git("again", ["push"], action="push", remote=str(bare), branch="feature"),
        )
    )

    sha = _ok(state, "commit")["sha"]
    out = _ok(state, "push")
    assert out == {"pushed": True, "remote": str(bare), "branch": "feature", "sha": sha}
    assert _ok(state, "again")["sha"] == sha
    assert git(bare, "rev-parse", "refs/heads/feature").strip() == sha


async def test_push_of_the_current_branch_to_origin(run_plan: RunPlan, tmp_path: Path) -> None:
    origin = tmp_path / "origin.git"
    git(
        tmp_path,
        "clone",
        "--quiet",
        "--bare",
        str(make_repo(tmp_path / "src", {"x": "1\n"})),
        str(origin),
    )
    state = await run_plan(
        plan(
            ws(
                "w",
                _git("branch", action="branch", name="work", checkout=True),
                sh("edit", "echo 2 > x", needs=["branch"]),
                _git("commit", ["edit"], action="commit", message="two", all=True),
                _git("push", ["commit"], action="push"),
                repo={"url": f"file://{origin}"},
            )
        )
    )

    assert _ok(state, "push")["branch"] == "work"
    assert git(origin, "rev-parse", "refs/heads/work").strip() == _ok(state, "commit")["sha"]


async def test_push_rejected_by_the_remote_is_a_conflict(
    run_plan: RunPlan, repo: Path, bare: Path, tmp_path: Path
) -> None:
    other = make_repo(tmp_path / "other", {"x.txt": "unrelated\n"})
    git(other, "push", "--quiet", str(bare), "HEAD:refs/heads/main")

    state = await run_plan(_plan(_git("push", action="push", remote=str(bare), branch="main")))

    category, message = _error(state, "push")
    assert category == "conflict"
    assert f"push to {bare} rejected" in message
    assert _task(state, "push").attempts == 1


async def test_push_to_a_missing_remote_is_a_validation_error_naming_it(
    run_plan: RunPlan, repo: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere.git"
    state = await run_plan(_plan(_git("push", action="push", remote=str(missing))))

    category, message = _error(state, "push")
    assert category == "validation"
    assert str(missing) in message


async def test_diff_shows_every_change_without_touching_the_index(
    run_plan: RunPlan, repo: Path
) -> None:
    state = await run_plan(
        _plan(
            _edit(),
            _git("diff", ["edit"], action="diff"),
            _git("short", ["edit"], action="diff", max_output=20),
            _git("status", ["diff", "short"], action="status"),
        )
    )

    out = _ok(state, "diff")
    assert out["changed"] is True
    assert sorted(out["files"]) == ["a.txt", "gone.txt", "new/file.txt"]
    assert "+more" in out["diff"]
    assert "deleted file mode" in out["diff"]
    assert "+++ b/new/file.txt" in out["diff"]
    assert out["diff_truncated"] is False
    assert read_artifact(out["diff_ref"]).decode() == out["diff"]
    short = _ok(state, "short")
    assert short["diff_truncated"] is True
    assert len(short["diff"]) == 20
    assert read_artifact(short["diff_ref"]).decode() == out["diff"]
    assert _ok(state, "status")["staged"] == []  # the index is as it was


async def test_a_diff_from_one_workspace_applies_in_another(run_plan: RunPlan, repo: Path) -> None:
    state = await run_plan(
        plan(
            ws("make", _edit(), _git("diff", ["edit"], action="diff"), repo={"path": "repo"}),
            ws(
                "w",
                {
                    "id": "apply",
                    "tool": "patch.apply",
                    "with": {"patch": "${{ tasks.make.diff.outputs.diff_ref }}"},
                },
                needs=["make"],
                repo={"path": "repo", "keep": "always"},
            ),
        )
    )

    assert sorted(_ok(state, "apply")["files"]) == ["a.txt", "gone.txt", "new/file.txt"]
    workspace = workspace_path(state.run_id, "w")
    assert (workspace / "a.txt").read_text() == "a\nmore\n"
    assert not (workspace / "gone.txt").exists()


def test_keys_of_another_action_are_rejected_before_the_run() -> None:
    cases: dict[str, dict[str, Any]] = {
        "'message' goes with action commit, not push": {"action": "push", "message": "m"},
        "action commit needs a message": {"action": "commit"},
        "action branch needs a name": {"action": "branch"},
        "expected 'status', 'diff', 'commit', 'branch' or 'push', got 'pull'": {"action": "pull"},
        "unknown key 'nam'": {"action": "commit", "message": "m", "author": {"nam": "x"}},
    }
    for message, with_ in cases.items():
        with pytest.raises(PlanError, match=message):
            check_data(_plan(_git("t", **with_)))


async def test_a_scratch_workspace_becomes_a_repository(run_plan: RunPlan) -> None:
    state = await run_plan(
        plan(
            ws(
                "w",
                sh("edit", "echo hello > hello.txt"),
                _git("status", ["edit"], action="status"),
                _git("diff", ["edit"], action="diff"),
                _git("commit", ["diff"], action="commit", message="first", all=True),
            )
        )
    )

    status = _ok(state, "status")
    assert (status["branch"], status["head"], status["untracked"]) == ("main", None, ["hello.txt"])
    assert "+hello" in _ok(state, "diff")["diff"]
    assert _ok(state, "commit")["files"] == ["hello.txt"]
