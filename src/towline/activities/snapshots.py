"""Workspace snapshots: what a workspace is, saved to the shared store and restored elsewhere.

After each call that may change a workspace, its holder saves it (:func:`take`), and the
workflow keeps the newest snapshot of a call that succeeded. When the holder dies, the
next one rebuilds the workspace from its source and applies that snapshot
(:func:`restore`): the workspace is then as the last succeeded call left it.

A git repository (every ``repo:`` workspace, and a scratch folder once a tool made it
one) is saved as a git pack of the objects its *base* (the commit it was prepared at,
which a fresh clone has) lacks: only what changed since then travels. It holds the tree
of the working tree (untracked files included; ignored files not: like caches and build
outputs, they are rebuilt), the tree of the index, and the commits of every local
branch and tag; a small manifest names them, and HEAD. Restoring reads the pack in and
sets the refs, HEAD, the working tree and the index as they were. Anything else (a
scratch folder, a copied folder that is not a repository) is saved whole, as a
compressed tar archive.

Taking a snapshot changes nothing git shows in the workspace: the trees are written
from a copy of the index (which keeps git's stat cache, so only changed files are read).

A snapshot object is one JSON line (the manifest) followed by the payload.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import json
import logging
import os
import shutil
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from towline.activities import repo as git_repo
from towline.activities.artifacts import safe_component
from towline.holding import Snapshot, SnapshotRequest
from towline.store import Store, open_store

log = logging.getLogger("towline.worker")

_ARCHIVE_LEVEL = 1  # gzip: fast; a scratch folder is mostly small text


class SnapshotError(RuntimeError):
    """A snapshot could not be taken or restored; the message says which and why."""


def snapshot_key(req: SnapshotRequest, name: str) -> str:
    parts = ("snapshots", req.run_id, req.workstream, f"{name}.snap")
    return "/".join(safe_component(p) for p in parts)


# A store that is full is waited for, this long at most, rather than failing the call
# at once: the tool's work is done, and a failed call runs the tool again (a shell step's
# side effects twice). The worker heartbeats meanwhile; a cancel stops the wait.
FULL_STORE_PATIENCE_S = 120.0
_FULL = (errno.ENOSPC, errno.EDQUOT)


async def take(
    workspace: Path,
    req: SnapshotRequest,
    *,
    name: str,
    store: Store | None = None,
    patience: float = FULL_STORE_PATIENCE_S,
) -> Snapshot:
    """Save ``workspace`` to the store as ``name``; what the workflow keeps of it.

    While the store is full (no space, a quota spent), saving is tried again for up to
    ``patience`` seconds before the ``OSError`` is raised."""
    store = store or open_store()
    taken_ns = time.monotonic_ns()
    if (workspace / ".git").exists():
        manifest, payload = await _git_snapshot(workspace, req.base)
    else:
        manifest = {"kind": "archive"}
        payload = await asyncio.to_thread(_archive, workspace)
    key = snapshot_key(req, name)
    blob = json.dumps(manifest, separators=(",", ":")).encode() + b"\n" + payload
    await _put(store, key, blob, patience)
    return Snapshot(key=key, base=manifest.get("base"), holding=req.holding, taken_ns=taken_ns)


async def _put(store: Store, key: str, blob: bytes, patience: float) -> None:
    deadline = time.monotonic() + patience
    pause = 0.5
    while True:
        try:
            await asyncio.to_thread(store.put, key, blob)
            return
        except OSError as e:
            if e.errno not in _FULL or time.monotonic() + pause > deadline:
                raise
            log.warning("the store is full (%s): saving %s again in %.1fs", e, key, pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 10.0)


async def restore(workspace: Path, snap: Snapshot, *, store: Store | None = None) -> None:
    """Make ``workspace`` (freshly prepared from its source) what ``snap`` saved."""
    store = store or open_store()
    try:
        blob = await asyncio.to_thread(store.get, snap.key)
    except FileNotFoundError as e:
        raise SnapshotError(f"the workspace's snapshot is missing: {e}") from None
    head, _, payload = blob.partition(b"\n")
    manifest = json.loads(head)
    if manifest["kind"] == "archive":
        await asyncio.to_thread(_unarchive, payload, workspace)
    else:
        await _git_restore(workspace, manifest, payload)


# ------------------------------------------------------------------ git repositories


async def _git(
    workspace: Path, *args: str, env: dict[str, str] | None = None, quick: bool = True
) -> str:
    done = await git_repo.git(workspace, *args, env=env, quick=quick)
    if done.code != 0:
        raise SnapshotError(f"git {args[0]} in {workspace} failed: {git_repo.message(done)}")
    return done.out


def _git_dir(workspace: Path) -> Path:
    dot = workspace / ".git"
    if dot.is_file():  # "gitdir: <path>" (a worktree or a separated git dir)
        target = dot.read_text().partition(":")[2].strip()
        return (workspace / target).resolve()
    return dot


def _head(git_dir: Path) -> tuple[str | None, str | None]:
    """HEAD's branch (a full ref name), or its commit when detached; read, not run."""
    text = (git_dir / "HEAD").read_text().strip()
    if text.startswith("ref:"):
        return text[4:].strip(), None
    return None, text


async def _git_snapshot(workspace: Path, base: str | None) -> tuple[dict[str, Any], bytes]:
    git_dir = _git_dir(workspace)
    branch, detached = _head(git_dir)
    refs: dict[str, str] = {}
    listed = await _git(
        workspace, "for-each-ref", "--format=%(objectname) %(refname)", "refs/heads", "refs/tags"
    )
    for line in listed.splitlines():
        sha, _, name = line.partition(" ")
        refs[name] = sha
    head = refs.get(branch) if branch else detached
    # The working tree's index is kept between snapshots: its stat cache says which files
    # changed since the last one, so only those are read again (a copy of the real one
    # would re-read every file a fresh clone wrote in the same second as its index).
    kept = git_dir / "towline-snapshot-index"
    with tempfile.TemporaryDirectory(prefix="towline-snapshot-") as tmp:
        index, worktree = Path(tmp) / "index", Path(tmp) / "worktree-index"
        if (git_dir / "index").exists():
            # Copies: git would write the real one (and fail on a tool's lock).
            shutil.copyfile(git_dir / "index", index)
        with contextlib.suppress(FileNotFoundError):
            shutil.copyfile(kept if kept.exists() else index, worktree)
        staged = await git_repo.git(
            workspace, "write-tree", env={"GIT_INDEX_FILE": str(index)}, quick=True
        )
        index_tree = staged.out.strip() if staged.code == 0 else None  # None: unmerged
        env = {"GIT_INDEX_FILE": str(worktree)}
        await _git(workspace, "add", "--all", env=env)
        tree = (await _git(workspace, "write-tree", env=env)).strip()
        os.replace(worktree, kept)
    # Every object these reach that the base does not: trees, blobs, commits made.
    tips = [tree, *([index_tree] if index_tree else []), *sorted(set(refs.values()))]
    if head:
        tips.append(head)
    # The base's tree is named too: rev-list leaves out what a negative commit's tree
    # holds only when that tree is itself named (the trees here hang from no commit).
    revs = "\n".join([*tips, *(["--not", base, f"{base}^{{tree}}"] if base else [])]) + "\n"
    packed = await git_repo.git(
        workspace, "pack-objects", "--revs", "--stdout", "-q", input=revs.encode(), quick=True
    )
    if packed.code != 0:
        raise SnapshotError(f"git pack-objects in {workspace} failed: {git_repo.message(packed)}")
    manifest = {
        "kind": "git",
        "base": base,
        "branch": branch,
        "head": head,
        "refs": refs,
        "tree": tree,
        "index_tree": index_tree,
    }
    return manifest, packed.stdout


async def _git_restore(workspace: Path, manifest: dict[str, Any], payload: bytes) -> None:
    await git_repo.ensure_repo(workspace)
    base = manifest.get("base")
    if base and (await git_repo.git(workspace, "cat-file", "-e", f"{base}^{{commit}}")).code:
        # The source moved on (a force-push): ask it for the commit itself.
        await git_repo.git(workspace, "fetch", "--quiet", "origin", base)
        if (await git_repo.git(workspace, "cat-file", "-e", f"{base}^{{commit}}")).code:
            raise SnapshotError(
                f"the snapshot holds what changed since commit {base}, which the "
                "workspace's source no longer has"
            )
    done = await git_repo.git(workspace, "index-pack", "--stdin", input=payload)
    if done.code != 0:
        raise SnapshotError(f"cannot read the snapshot into {workspace}: {git_repo.message(done)}")
    updates = "".join(f"update {name} {sha}\n" for name, sha in manifest["refs"].items())
    if updates:
        done = await git_repo.git(workspace, "update-ref", "--stdin", input=updates.encode())
        if done.code != 0:
            raise SnapshotError(f"cannot restore the workspace's refs: {git_repo.message(done)}")
    if manifest["branch"]:
        await _git(workspace, "symbolic-ref", "HEAD", manifest["branch"])
    elif manifest["head"]:
        await _git(workspace, "update-ref", "--no-deref", "HEAD", manifest["head"])
    await _git(workspace, "read-tree", "--reset", "-u", manifest["tree"])
    if manifest["index_tree"]:
        await _git(workspace, "read-tree", manifest["index_tree"])
    await git_repo.git(workspace, "update-index", "-q", "--refresh")


# ------------------------------------------------------------------ anything else


def _archive(workspace: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=_ARCHIVE_LEVEL) as tar:
        for entry in sorted(os.listdir(workspace)):
            tar.add(workspace / entry, arcname=entry)
    return buf.getvalue()


def _unarchive(payload: bytes, workspace: Path) -> None:
    for entry in os.listdir(workspace):
        path = workspace / entry
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    with tarfile.open(fileobj=io.BytesIO(payload), mode="r:gz") as tar:
        tar.extractall(workspace, filter="tar")
