"""``patch.apply`` and ``patch.revert`` through whole towline runs, on real git repositories."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RunPlan
from tests.helpers import diff_of, git, make_repo, plan, sh, ws
from towline.activities.tools.patch import header_paths, unsafe_path
from towline.activities.workspace import workspace_path
from towline.plan.load import PlanError, check_data
from towline.state import RunState, TaskState

LINES = "".join(f"line {i}\n" for i in range(1, 11))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """The user's checkout: a git repository with two files."""
    return make_repo(tmp_path / "repo", {"a.txt": LINES, "b.txt": "bee\n"})


def _patch_plan(*tasks: dict[str, Any], repo: bool = True) -> dict[str, Any]:
    extra: dict[str, Any] = {"repo": {"path": "repo", "keep": "always"}} if repo else {}
    return plan(ws("w", *tasks, **extra))


def _apply(tid: str = "apply", tool: str = "patch.apply", **with_: Any) -> dict[str, Any]:
    extra = {k: with_.pop(k) for k in ("needs",) if k in with_}
    return {"id": tid, "tool": tool, "with": with_, "retry": {"max_attempts": 3}, **extra}


def _task(state: RunState, tid: str = "apply") -> TaskState:
    return state.workstreams["w"].tasks[tid]


def _workspace(state: RunState) -> Path:
    return workspace_path(state.run_id, "w")


def _change_line_2(repo: Path, tmp_path: Path) -> str:
    return diff_of(repo, {"a.txt": LINES.replace("line 2\n", "line TWO\n")}, tmp_path / "mk")


async def test_patch_file_is_applied_in_the_workspace_and_staged(
    run_plan: RunPlan, repo: Path, tmp_path: Path
) -> None:
    (tmp_path / "patches").mkdir()
    (tmp_path / "patches" / "two.diff").write_text(_change_line_2(repo, tmp_path))
    head = git(repo, "rev-parse", "HEAD")

    state = await run_plan(_patch_plan(_apply(patch="patches/two.diff")))

    task = _task(state)
    assert task.status == "succeeded", task.error
    assert task.outputs["files"] == ["a.txt"]
    assert (task.outputs["added"], task.outputs["deleted"]) == (1, 1)
    assert task.outputs["already_applied"] is False
    assert task.outputs["three_way"] is False
    workspace = _workspace(state)
    assert "line TWO\n" in (workspace / "a.txt").read_text()
    assert git(workspace, "diff", "--cached", "--name-only") == "a.txt\n"
    # The user's checkout is untouched.
    assert (repo / "a.txt").read_text() == LINES
    assert git(repo, "status", "--porcelain") == ""
    assert git(repo, "rev-parse", "HEAD") == head


async def test_inline_diff_from_an_earlier_tasks_output(
    run_plan: RunPlan, repo: Path, tmp_path: Path
) -> None:
    make = {"id": "make", "tool": "echo", "with": {"diff": _change_line_2(repo, tmp_path)}}
    state = await run_plan(
        _patch_plan(make, _apply(diff="${{ tasks.make.outputs.diff }}", needs=["make"]))
    )

    assert _task(state).status == "succeeded", _task(state).error
    assert "line TWO\n" in (_workspace(state) / "a.txt").read_text()


async def test_applying_an_applied_patch_succeeds_as_already_applied(
    run_plan: RunPlan, repo: Path, tmp_path: Path
) -> None:
    diff = _change_line_2(repo, tmp_path)
    state = await run_plan(
        _patch_plan(_apply("first", diff=diff), _apply("again", diff=diff, needs=["first"]))
    )

    assert _task(state, "first").outputs["already_applied"] is False
    again = _task(state, "again")
    assert again.status == "succeeded", again.error
    assert again.outputs["already_applied"] is True
    assert (_workspace(state) / "a.txt").read_text().count("line TWO") == 1


async def test_revert_undoes_the_patch_and_a_second_revert_is_harmless(
    run_plan: RunPlan, repo: Path, tmp_path: Path
) -> None:
    diff = _change_line_2(repo, tmp_path)
    state = await run_plan(
        _patch_plan(
            _apply("apply", diff=diff),
            _apply("revert", "patch.revert", diff=diff, needs=["apply"]),
            _apply("revert-again", "patch.revert", diff=diff, needs=["revert"]),
        )
    )

    revert, again = _task(state, "revert"), _task(state, "revert-again")
    assert revert.status == "succeeded", revert.error
    assert revert.outputs["already_reverted"] is False
    assert again.status == "succeeded", again.error
    assert again.outputs["already_reverted"] is True
    workspace = _workspace(state)
    assert (workspace / "a.txt").read_text() == LINES
    assert git(workspace, "status", "--porcelain") == ""


async def test_missing_patch_file_is_a_validation_error_naming_the_file(
    run_plan: RunPlan, repo: Path
) -> None:
    state = await run_plan(_patch_plan(_apply(patch="patches/nope.diff")))

    task = _task(state)
    assert task.status == "failed"
    assert task.error is not None
    assert task.error.category == "validation"
    assert "file not found: patches/nope.diff" in task.error.message
    assert task.attempts == 1  # not retried: the same input fails the same way


async def test_three_way_merge_applies_a_diff_made_on_an_older_commit(
    run_plan: RunPlan, repo: Path, tmp_path: Path
) -> None:
    changes = {"a.txt": LINES.replace("line 2\n", "line TWO\n"), "new.txt": "new\n"}
    diff = diff_of(repo, changes, tmp_path / "mk")
    # The checkout moved on: line 4, within the diff's context, changed since.
    (repo / "a.txt").write_text(LINES.replace("line 4\n", "line FOUR\n"))
    git(repo, "commit", "--quiet", "--all", "--message", "four")

    state = await run_plan(_patch_plan(_apply(diff=diff)))

    task = _task(state)
    assert task.status == "succeeded", task.error
    assert task.outputs["three_way"] is True
    assert task.outputs["files"] == ["a.txt", "new.txt"]
    workspace = _workspace(state)
    text = (workspace / "a.txt").read_text()
    assert "line TWO\n" in text
    assert "line FOUR\n" in text
    assert (workspace / "new.txt").read_text() == "new\n"
    assert git(workspace, "diff", "--cached", "--name-only").split() == ["a.txt", "new.txt"]


async def test_conflict_names_the_conflicting_files(
    run_plan: RunPlan, repo: Path, tmp_path: Path
) -> None:
    diff = diff_of(
        repo,
        {"a.txt": LINES.replace("line 2\n", "line TWO\n"), "b.txt": "bumble bee\n"},
        tmp_path / "mk",
    )
    (repo / "a.txt").write_text(LINES.replace("line 2\n", "line deux\n"))
    git(repo, "commit", "--quiet", "--all", "--message", "deux")

    state = await run_plan(_patch_plan(_apply(diff=diff)))

    task = _task(state)
    assert task.status == "failed"
    assert task.error is not None
    assert task.error.category == "conflict"
    assert "a.txt" in task.error.message
    assert "b.txt" not in task.error.message
    assert task.outputs["conflicts"] == ["a.txt"]
    assert task.attempts == 1


async def test_conflict_without_three_way_names_the_file_and_writes_nothing(
    run_plan: RunPlan, repo: Path, tmp_path: Path
) -> None:
    diff = _change_line_2(repo, tmp_path)
    (repo / "a.txt").write_text(LINES.replace("line 2\n", "line deux\n"))
    git(repo, "commit", "--quiet", "--all", "--message", "deux")

    state = await run_plan(_patch_plan(_apply(diff=diff, three_way=False)))

    task = _task(state)
    assert task.error is not None
    assert task.error.category == "conflict"
    assert "does not apply cleanly: conflicts in a.txt" in task.error.message
    assert git(_workspace(state), "status", "--porcelain") == ""


def _new_file_diff(path: str, header: str | None = None) -> str:
    header = header or f"diff --git a/{path} b/{path}\nnew file mode 100644\n"
    return f"{header}--- /dev/null\n+++ b/{path}\n@@ -0,0 +1 @@\n+evil\n"


ESCAPES = {
    "dotdot": _new_file_diff("../escaped.txt"),
    "absolute": "--- /dev/null\n+++ {outside}/escaped.txt\n@@ -0,0 +1 @@\n+evil\n",
    "symlink": _new_file_diff("link/escaped.txt"),
    "git-dir": _new_file_diff(".git/hooks/pre-commit"),
}


@pytest.mark.parametrize("kind", sorted(ESCAPES))
async def test_paths_leaving_the_workspace_are_rejected_before_anything_is_written(
    run_plan: RunPlan, tmp_path: Path, kind: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    repo = make_repo(tmp_path / "repo", {"a.txt": LINES})
    (repo / "link").symlink_to(outside)
    git(repo, "add", "link")
    git(repo, "commit", "--quiet", "--message", "a link out")
    legit = diff_of(repo, {"a.txt": LINES.replace("line 2\n", "line TWO\n")}, tmp_path / "mk")
    # A legitimate change first: it must not be written either.
    diff = legit + ESCAPES[kind].format(outside=outside)

    state = await run_plan(_patch_plan(_apply(diff=diff)))

    task = _task(state)
    assert task.status == "failed"
    assert task.error is not None
    assert task.error.category == "validation", task.error.message
    assert "outside the workspace" in task.error.message
    assert "nothing was applied" in task.error.message
    assert task.attempts == 1
    assert list(outside.iterdir()) == []
    assert not (tmp_path / "escaped.txt").exists()
    workspace = _workspace(state)
    assert (workspace / "a.txt").read_text() == LINES
    assert not (workspace / ".git" / "hooks" / "pre-commit").exists()


async def test_a_scratch_workspace_becomes_a_repository(run_plan: RunPlan) -> None:
    # A scratch workspace is removed when its workstream succeeds: look from inside it.
    look = sh("look", "cat docs/new.txt; git diff --cached --name-only", needs=["apply"])
    state = await run_plan(
        _patch_plan(_apply(diff=_new_file_diff("docs/new.txt")), look, repo=False)
    )

    task = _task(state)
    assert task.status == "succeeded", task.error
    assert task.outputs["files"] == ["docs/new.txt"]
    assert _task(state, "look").outputs["stdout"] == "evil\ndocs/new.txt\n"


async def test_text_that_is_not_a_diff_is_a_validation_error(run_plan: RunPlan) -> None:
    state = await run_plan(_patch_plan(_apply(diff="hello, not a diff\n"), repo=False))

    task = _task(state)
    assert task.error is not None
    assert task.error.category == "validation"
    assert "not a valid diff" in task.error.message


def test_patch_and_diff_together_are_rejected_before_the_run() -> None:
    with pytest.raises(PlanError, match=r"tasks\[0\]\.with: give exactly one of 'patch'"):
        check_data(_patch_plan(_apply(patch="x.diff", diff="y")))
    with pytest.raises(PlanError, match=r"tasks\[0\]\.with: give exactly one of 'patch'"):
        check_data(_patch_plan(_apply()))


def test_header_paths_skip_hunk_lines_that_look_like_headers() -> None:
    diff = (
        b"--- a/notes.txt\n+++ b/notes.txt\n@@ -1 +1 @@\n"
        b"--- /etc/passwd\n+++ /etc/shadow\n"  # a removed line "-- /etc/passwd", an added one
        b"--- a/other.txt\n+++ b/other.txt\n@@ -1 +1 @@\n-x\n+y\n"
    )
    assert header_paths(diff) == ["a/notes.txt", "b/notes.txt", "a/other.txt", "b/other.txt"]
    assert header_paths(b'--- "a/sp ace\\303\\251"\n+++ /dev/null\n') == ["a/sp aceé"]


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("src/ok.py", None),
        ("../x", "it climbs out with '..'"),
        ("a/../../x", "it climbs out with '..'"),
        ("/etc/passwd", "it is absolute"),
        (".git/config", "it is inside .git"),
        ("sub/.GIT/hooks/x", "it is inside .git"),
    ],
)
def test_unsafe_path(name: str, problem: str | None) -> None:
    assert unsafe_path(name) == problem
