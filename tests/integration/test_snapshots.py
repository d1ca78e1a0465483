"""Workspace snapshots on real git repositories and folders: what a snapshot restores
is exactly what git (and the file system) showed when it was taken."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import git, make_repo
from towline.activities import snapshots
from towline.holding import SnapshotRequest
from towline.store import FolderStore


def _state(repo: Path) -> dict[str, str]:
    """What git shows of a repository: status, HEAD, branches, staged diff, files."""
    shown = {
        "status": git(repo, "status", "--porcelain=v1", "--branch", "--untracked-files=all"),
        "head": git(repo, "rev-parse", "HEAD"),
        "branches": git(repo, "for-each-ref", "--format=%(refname) %(objectname)", "refs/heads"),
        "staged": git(repo, "diff", "--cached"),
        "unstaged": git(repo, "diff"),
    }
    files = sorted(
        str(p.relative_to(repo))
        for p in repo.rglob("*")
        if p.is_file() and ".git" not in p.parts and not p.name.endswith(".pyc")
    )
    shown["files"] = "\n".join(f"{f}:{(repo / f).read_text()}" for f in files)
    return shown


@pytest.fixture
def store(tmp_path: Path) -> FolderStore:
    return FolderStore(tmp_path / "store")


async def test_a_repository_is_restored_as_it_was_index_branches_and_all(
    tmp_path: Path, store: FolderStore
) -> None:
    source = make_repo(
        tmp_path / "source",
        {"a.txt": "a\n", "gone.txt": "x\n", "sub/b.txt": "b\n", ".gitignore": "*.pyc\n"},
    )
    work = tmp_path / "work"
    git(tmp_path, "clone", "--quiet", str(source), str(work))
    base = git(work, "rev-parse", "HEAD").strip()
    # Committed, staged, unstaged, untracked, deleted, ignored; on a new branch.
    git(work, "checkout", "--quiet", "-b", "feature")
    (work / "a.txt").write_text("a\ncommitted\n")
    git(work, "commit", "--quiet", "-am", "one")
    (work / "sub/b.txt").write_text("b\nstaged\n")
    git(work, "add", "sub/b.txt")
    (work / "sub/b.txt").write_text("b\nstaged\nand not\n")
    (work / "new.txt").write_text("untracked\n")
    (work / "gone.txt").unlink()
    (work / "cache.pyc").write_text("ignored")
    git(work, "tag", "v1")
    before = _state(work)

    snap = await snapshots.take(
        work, SnapshotRequest(run_id="r", workstream="w", base=base), name="t1", store=store
    )
    other = tmp_path / "other"
    git(tmp_path, "clone", "--quiet", str(source), str(other))
    await snapshots.restore(other, snap, store=store)

    assert _state(other) == before
    assert git(other, "tag", "--list").split() == ["v1"]
    assert not (other / "cache.pyc").exists()  # ignored files are not kept
    assert snap.base == base
    # Taking it changed nothing git shows in the workspace itself.
    assert _state(work) == before


async def test_a_snapshot_holds_only_what_changed_since_the_base(
    tmp_path: Path, store: FolderStore
) -> None:
    big = {f"f{i}.txt": "".join(f"{i}-{n}\n" for n in range(2000)) for i in range(50)}
    source = make_repo(tmp_path / "source", big)
    base = git(source, "rev-parse", "HEAD").strip()
    (source / "f1.txt").write_text("changed\n")

    snap = await snapshots.take(
        source, SnapshotRequest(run_id="r", workstream="w", base=base), name="t", store=store
    )

    # One blob and a tree (with the manifest), not 50 files of 20 KB.
    assert len(store.get(snap.key)) < 10_000


async def test_a_scratch_repository_without_commits_is_restored_into_an_empty_folder(
    tmp_path: Path, store: FolderStore
) -> None:
    work = tmp_path / "scratch"
    work.mkdir()
    git(work, "init", "--quiet")
    (work / "x.txt").write_text("x\n")
    git(work, "add", "x.txt")
    (work / "y.txt").write_text("y\n")
    before = _state_no_head(work)

    snap = await snapshots.take(
        work, SnapshotRequest(run_id="r", workstream="w"), name="t", store=store
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    await snapshots.restore(empty, snap, store=store)

    assert _state_no_head(empty) == before


def _state_no_head(repo: Path) -> str:
    return git(repo, "status", "--porcelain=v1", "--untracked-files=all") + "".join(
        f"{p.name}:{p.read_text()}" for p in sorted(repo.glob("*.txt"))
    )


async def test_a_folder_that_is_no_repository_is_saved_whole(
    tmp_path: Path, store: FolderStore
) -> None:
    work = tmp_path / "scratch"
    (work / "deep/er").mkdir(parents=True)
    (work / "deep/er/f.txt").write_text("f\n")
    (work / "run.sh").write_text("#!/bin/sh\n")
    (work / "run.sh").chmod(0o755)
    (work / "link").symlink_to("deep/er/f.txt")

    snap = await snapshots.take(
        work, SnapshotRequest(run_id="r", workstream="w"), name="t", store=store
    )
    other = tmp_path / "other"
    other.mkdir()
    (other / "stale.txt").write_text("left by a task that did not succeed\n")
    await snapshots.restore(other, snap, store=store)

    assert sorted(p.name for p in other.iterdir()) == ["deep", "link", "run.sh"]
    assert (other / "deep/er/f.txt").read_text() == "f\n"
    assert (other / "run.sh").stat().st_mode & 0o111
    assert (other / "link").readlink() == Path("deep/er/f.txt")


async def test_a_missing_snapshot_says_so(tmp_path: Path, store: FolderStore) -> None:
    work = tmp_path / "w"
    work.mkdir()
    snap = await snapshots.take(
        work, SnapshotRequest(run_id="r", workstream="w"), name="t", store=store
    )
    store.delete(snap.key)

    with pytest.raises(snapshots.SnapshotError, match="snapshot is missing"):
        await snapshots.restore(work, snap, store=store)


@pytest.fixture
def full_store(tmp_path: Path) -> Iterator[tuple[FolderStore, Path]]:
    """A store on a tmpfs of its own (1 MiB), and a file taking all its space."""
    folder = tmp_path / "small"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "towline-test-full", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill (needs root): {mounted.stderr.strip()}")
    try:
        filler = folder / "filler"
        with contextlib.suppress(OSError), filler.open("wb") as f:
            while True:
                f.write(b"\0" * 65536)
        yield FolderStore(folder / "store"), filler
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


async def test_a_full_store_is_waited_for_rather_than_failing_the_call(
    tmp_path: Path, full_store: tuple[FolderStore, Path]
) -> None:
    """The soak's finding: a store full for a minute failed every call that changed a
    workspace meanwhile, after its tool had done its work (so the tool ran again)."""
    store, filler = full_store
    work = tmp_path / "w"
    work.mkdir()
    (work / "f.txt").write_text("done\n" * 1000)
    req = SnapshotRequest(run_id="r", workstream="w")

    saving = asyncio.create_task(snapshots.take(work, req, name="t", store=store))
    await asyncio.sleep(1.5)
    assert not saving.done(), "the snapshot was saved (or failed) while the store was full"
    filler.unlink()
    snap = await asyncio.wait_for(saving, 30)

    other = tmp_path / "other"
    other.mkdir()
    await snapshots.restore(other, snap, store=store)
    assert (other / "f.txt").read_text() == "done\n" * 1000


async def test_a_store_full_for_longer_than_the_patience_fails_the_save(
    tmp_path: Path, full_store: tuple[FolderStore, Path]
) -> None:
    store, _ = full_store
    work = tmp_path / "w"
    work.mkdir()
    (work / "f.txt").write_text("x" * 100_000)

    with pytest.raises(OSError, match="No space left"):
        await snapshots.take(
            work, SnapshotRequest(run_id="r", workstream="w"), name="t", store=store, patience=1.0
        )
