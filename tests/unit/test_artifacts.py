"""The artifact store keeps every file inside its root, whatever the ids and references."""

from __future__ import annotations

from pathlib import Path

import pytest

from towline.activities.artifacts import (
    artifact_path,
    artifact_ref,
    read_artifact,
    write_artifact,
)
from towline.toolcall import ToolContext


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "artifacts"
    monkeypatch.setenv("TOWLINE_ARTIFACTS", str(folder))
    return folder.resolve()


def _ctx(run_id: str = "run-1", workstream: str = "api", task: str = "build") -> ToolContext:
    return ToolContext(
        run_id=run_id, workstream=workstream, task=task, workspace="/ws", plan_dir="/plan"
    )


def test_written_artifact_reads_back_by_its_reference(root: Path) -> None:
    ref = write_artifact(_ctx(), "out.log", "hello\n")

    assert ref == "artifact://run-1/api/build/out.log"
    assert read_artifact(ref) == b"hello\n"
    assert artifact_path(ref) == root / "run-1" / "api" / "build" / "out.log"


def test_writing_again_replaces_the_artifact(root: Path) -> None:
    write_artifact(_ctx(), "out.log", b"first attempt")
    ref = write_artifact(_ctx(), "out.log", b"second")

    assert read_artifact(ref) == b"second"
    assert [p.name for p in artifact_path(ref).parent.iterdir()] == ["out.log"]


@pytest.mark.parametrize(
    ("run_id", "task", "name"),
    [
        ("../../outside", "build", "out.log"),
        ("run-1", "..", "out.log"),
        ("run-1", ".", ".."),
        ("/etc", "build", "passwd"),
        ("run-1", "build", "../../../../escape.log"),
        ("run-1", "build", "a/b\\c d%2F.log"),
    ],
)
def test_ids_and_names_cannot_leave_the_root(root: Path, run_id: str, task: str, name: str) -> None:
    ref = write_artifact(_ctx(run_id=run_id, task=task), name, b"x")

    path = artifact_path(ref)
    assert path.resolve().is_relative_to(root)
    assert path.relative_to(root).parts[0] != ".."
    assert len(path.relative_to(root).parts) == 4
    assert read_artifact(ref) == b"x"


def test_distinct_ids_get_distinct_files(root: Path) -> None:
    refs = {
        write_artifact(_ctx(run_id=run_id), "out.log", run_id)
        for run_id in ("a/b", "a_b", "a%2Fb", "a b")
    }

    assert len(refs) == 4
    assert {read_artifact(r).decode() for r in refs} == {"a/b", "a_b", "a%2Fb", "a b"}


@pytest.mark.parametrize(
    "ref",
    [
        "run-1/api/build/out.log",
        "file:///etc/passwd",
        "artifact://run-1/api/out.log",
        "artifact://run-1/api/build/sub/out.log",
        "artifact://../api/build/out.log",
        "artifact://run-1/../build/out.log",
        "artifact://run-1/api/build/..",
        "artifact:///etc/api/build/passwd",
        "artifact://run-1/api/build/",
        "artifact://run-1/api/build/a\\..\\b",
    ],
)
def test_malformed_references_are_rejected(root: Path, ref: str) -> None:
    with pytest.raises(ValueError, match="artifact reference"):
        artifact_path(ref)


def test_a_symlink_out_of_the_root_is_rejected(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("not yours")
    (root / "run-1" / "api").mkdir(parents=True)
    (root / "run-1" / "api" / "build").symlink_to(outside)

    with pytest.raises(ValueError, match="outside the artifacts folder"):
        read_artifact("artifact://run-1/api/build/secret.txt")


def test_reference_of_a_missing_artifact_says_which(root: Path) -> None:
    ref = artifact_ref(_ctx(), "never-written.log")

    with pytest.raises(FileNotFoundError, match=r"never-written\.log"):
        read_artifact(ref)
