"""Workspaces: the folder a workstream's tasks run in, one per workstream and run.

Every workspace is a folder of its own, ``<workspaces root>/<run_id>/<workstream>``, so
two runs on one repository never touch each other or the user's checkout:

- no ``repo``: an empty scratch folder;
- ``repo.url``: a ``git clone`` of the URL, at ``repo.ref`` if given;
- ``repo.path`` naming the root of a git repository: a ``git clone`` of it, at
  ``repo.ref`` or its checked-out commit (uncommitted changes there are not copied);
- ``repo.path`` naming any other folder: a copy of it.

A clone rather than a ``git worktree``: a worktree is registered in the user's
repository (``.git/worktrees``) and locks the branch it has checked out there, so a run
would leave marks in the checkout it must not touch; a local clone is as cheap (git
hard-links the objects) and shares nothing writable with its source.

Preparing is idempotent. The workspace is filled in a temporary folder beside it and
renamed into place when complete, so a worker that dies half-way leaves no half
workspace; the retry removes the leftovers and starts again, and a workspace already in
place is used as it is. :func:`cleanup_workspace` removes it at the workstream's end as
``repo.keep`` says.

The worker that prepares a workspace holds it (:class:`WorkspaceActivities`:
``hold_workspace`` answers with the worker's own task queue, where every call that
touches the workspace then goes; ``release_workspace`` cleans it up there). Held anew
after its holder died, a workspace is rebuilt from its source and its newest snapshot
(:mod:`towline.activities.snapshots`). ``prepare_workspace`` and ``cleanup_workspace``
serve workstreams started before workspaces were held.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from temporalio import activity
from temporalio.exceptions import ApplicationError

from towline.activities import repo as git_repo
from towline.activities import snapshots
from towline.activities.artifacts import safe_component
from towline.config import home, workspaces_root
from towline.errors import hint_for
from towline.holding import HeldWorkspace, HoldRequest
from towline.plan.spec import RepoSpec
from towline.store import StoreError, store_url

DEFAULT_KEEP = "on_failure"  # of a workstream without repo (RepoSpec.keep's default too)


class WorkspaceRequest(BaseModel):
    run_id: str
    workstream: str
    repo: RepoSpec | None = None
    plan_dir: str


class CleanupRequest(BaseModel):
    """Sent by the workstream workflow once its tasks (and rollbacks) are all done."""

    run_id: str
    workstream: str
    repo: RepoSpec | None = None
    succeeded: bool = Field(description="whether the workstream succeeded")
    holder: str | None = Field(
        None, description="release_workspace: the queue of the worker holding it"
    )


def workspace_path(run_id: str, workstream: str) -> Path:
    """Where the workspace of ``workstream`` in run ``run_id`` lives."""
    return workspaces_root() / safe_component(run_id) / safe_component(workstream)


@activity.defn(name="prepare_workspace")
async def prepare_workspace(req: WorkspaceRequest) -> str:
    """Make the workstream's workspace ready and return its absolute path."""
    final = workspace_path(req.run_id, req.workstream)
    if req.repo is None:
        final.mkdir(parents=True, exist_ok=True)
        return str(final)
    if final.is_dir():
        return str(final)  # prepared by an earlier attempt that died before it reported
    async with _staging(final) as tmp:
        await _fill(tmp, req.repo, req.plan_dir, req.workstream)
    return str(final)


class WorkspaceActivities:
    """Workspaces held by this worker: calls that touch one come to ``holder_queue``,
    the task queue only this worker polls (None: a worker without one, whose workspaces
    every worker on the shared queue can reach, on one shared disk)."""

    def __init__(self, holder_queue: str | None) -> None:
        self.holder_queue = holder_queue

    def activities(self) -> list[Callable[..., Any]]:
        return [self.hold_workspace, self.release_workspace]

    @activity.defn(name="release_workspace")
    async def release_workspace(self, req: CleanupRequest) -> str:
        """Clean up a workspace this worker holds: ``removed`` or ``kept`` (as
        ``repo.keep`` says), or ``elsewhere`` when another worker holds it (a local
        activity may run on a worker that is not the holder)."""
        if req.holder != self.holder_queue:
            return "elsewhere"
        return "removed" if await cleanup_workspace(req) else "kept"

    @activity.defn(name="hold_workspace")
    async def hold_workspace(self, req: HoldRequest) -> HeldWorkspace:
        """Make the workstream's workspace ready here, and say where calls find it.

        With ``restore``, whatever is in place is replaced: the workspace is rebuilt from
        its source and the snapshot applied, in a folder beside it renamed into place
        when complete.
        """
        final = workspace_path(req.run_id, req.workstream)
        if req.restore is None:
            await prepare_workspace(
                WorkspaceRequest(
                    run_id=req.run_id,
                    workstream=req.workstream,
                    repo=req.repo,
                    plan_dir=req.plan_dir,
                )
            )
            base = await _base(final)
        else:
            snap = req.restore.snapshot
            async with _staging(final, replace=True) as tmp:
                if req.repo is not None:
                    await _fill(tmp, req.repo, req.plan_dir, req.workstream)
                base = await _base(tmp)
                if snap is not None:
                    try:
                        await snapshots.restore(tmp, snap)
                    except (snapshots.SnapshotError, StoreError) as e:
                        raise _invalid(f"workstream '{req.workstream}': {e}") from None
                    base = snap.base
        return HeldWorkspace(path=str(final), queue=self.holder_queue, base=base)


async def _base(workspace: Path) -> str | None:
    """The commit a workspace was prepared at; None for a folder that is no repository."""
    if not (workspace / ".git").exists():
        return None
    return await git_repo.head(workspace)


async def _fill(tmp: Path, repo: RepoSpec, plan_dir: str, workstream: str) -> None:
    """Clone or copy the workstream's repository into the empty folder ``tmp``."""
    who = f"workstream '{workstream}'"
    if repo.ref is not None and repo.ref.startswith("-"):
        raise _invalid(f"{who}: repo.ref '{repo.ref}' is not a branch, tag or commit")
    if repo.url is not None:
        url = git_repo.display_url(repo.url)
        await _clone(repo.url, tmp, who=who, what=f"repo.url '{url}'")
        await _checkout(tmp, repo.ref, who=who, where=url)
    else:
        assert repo.path is not None
        source = _local_path(plan_dir, repo.path, who)
        if await _is_repository(source):
            await _clone(str(source), tmp, who=who, what=f"repo.path '{repo.path}'")
            await _checkout(tmp, repo.ref, who=who, where=str(source))
        elif repo.ref is not None:
            raise _invalid(
                f"{who}: repo.ref needs a git repository, and repo.path '{repo.path}' "
                f"({source}) is not the root of one"
            )
        else:
            await asyncio.to_thread(_copy, source, tmp)


@activity.defn(name="cleanup_workspace")
async def cleanup_workspace(req: CleanupRequest) -> bool:
    """Remove the workstream's workspace unless ``repo.keep`` says to keep it.

    Returns whether it was removed. Removing what is already gone is not an error, so a
    retry is harmless.
    """
    keep = req.repo.keep if req.repo is not None else DEFAULT_KEEP
    if keep == "always" or (keep == "on_failure" and not req.succeeded):
        return False
    path = workspace_path(req.run_id, req.workstream)
    await asyncio.to_thread(remove_tree, path)
    with contextlib.suppress(OSError):
        path.parent.rmdir()  # the run's folder, once its last workspace is gone
    return True


@contextlib.asynccontextmanager
async def _staging(final: Path, *, replace: bool = False) -> AsyncIterator[Path]:
    """A temporary folder beside ``final``, renamed to ``final`` when the block succeeds
    (``replace``: in place of what ``final`` holds; else only if it holds nothing)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(f".{final.name}.tmp-*"):
        await asyncio.to_thread(remove_tree, stale)  # left by an attempt that died
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.tmp-"))
    try:
        yield tmp
        if replace:
            await asyncio.to_thread(remove_tree, final)
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():
                raise
            remove_tree(tmp)  # another attempt got there first; its workspace stands
    except BaseException:
        remove_tree(tmp)
        raise


def remove_tree(path: Path) -> None:
    """Remove ``path`` and everything in it, read-only folders included; gone is fine."""

    def make_writable(fn: Callable[..., Any], target: str, _: Any) -> None:
        parent = os.path.dirname(target)
        os.chmod(parent, os.stat(parent).st_mode | stat.S_IWUSR | stat.S_IXUSR)
        fn(target)

    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.exists():
        shutil.rmtree(path, onerror=make_writable)


def _local_path(plan_dir: str, path: str, who: str) -> Path:
    """A folder that already exists, given relative to the plan's folder (or absolute)."""
    resolved = (Path(plan_dir) / path).resolve()
    if not resolved.exists():
        raise _invalid(
            f"{who}: repo.path '{path}' does not exist on this worker (resolved to "
            f"{resolved}, relative to the plan's folder {plan_dir}); a worker sees only its "
            "own disk and shared mounts: give the repository as repo.url (a git URL every "
            "worker can clone)"
        )
    if not resolved.is_dir():
        raise _invalid(f"{who}: repo.path '{path}' is not a directory ({resolved})")
    return resolved


async def _is_repository(folder: Path) -> bool:
    """Whether ``folder`` is the root of a git repository (a work tree or a bare one).

    A ``.git`` settles it even when git would refuse to work there (a repository owned
    by another user): the clone then fails with git's reason, rather than the folder
    being copied as if it were not a repository.
    """
    if (folder / ".git").exists():
        return True
    done = await git_repo.git(folder, "rev-parse", "--git-dir")
    return done.code == 0


def _copy(source: Path, dest: Path) -> None:
    """Copy a folder that is not a repository; links are copied as links, not followed."""
    own = {home(), workspaces_root()}
    for folder in (os.environ.get("TOWLINE_ARTIFACTS"), store_url()):
        if folder and "://" not in folder:
            own.add(Path(folder).resolve())

    def skip(folder: str, names: list[str]) -> set[str]:
        # towline's own folders may sit inside the source: never copy a workspace into itself.
        here = Path(folder)
        return {n for n in names if here / n in own}

    shutil.copytree(source, dest, symlinks=True, ignore=skip, dirs_exist_ok=True)


async def _clone(source: str, dest: Path, *, who: str, what: str) -> None:
    done = await git_repo.git(dest.parent, "clone", "--quiet", "--", source, str(dest))
    if done.code != 0:
        said = git_repo.hide_credentials(git_repo.message(done), source)
        raise _invalid(f"{who}: cannot clone {what}: {said}")


async def _checkout(clone: Path, ref: str | None, *, who: str, where: str) -> None:
    """Check out ``ref`` in a fresh clone: a branch as a local branch, else detached."""
    if ref is None:
        return
    branch = f"refs/remotes/origin/{ref}"
    if (await git_repo.git(clone, "rev-parse", "--verify", "--quiet", branch)).code == 0:
        done = await git_repo.git(clone, "checkout", "--quiet", "-B", ref, branch)
    else:
        found = await git_repo.git(clone, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
        if found.code != 0:
            raise _invalid(f"{who}: repo.ref '{ref}' not found in {where}")
        done = await git_repo.git(clone, "checkout", "--quiet", "--detach", found.out.strip())
    if done.code != 0:
        raise _invalid(f"{who}: cannot check out repo.ref '{ref}': {git_repo.message(done)}")


def _invalid(message: str) -> ApplicationError:
    """A plan mistake: the same attempt would fail the same way, so it is not retried."""
    details = {"category": "validation", "message": message, "hint": hint_for("validation")}
    return ApplicationError(message, details, type="validation", non_retryable=True)
