"""``git``: look at and record the workspace's changes: status, diff, commit, branch, push.

One tool, its ``action`` choosing what it does; each action takes only its own keys, so
a key given to the wrong action is an error in the plan, not silently ignored. Commits
carry the ``author`` given (default ``towline <towline@localhost>``), never the worker's
global git identity, and are not signed. Every action is safe to retry: a commit with
nothing (left) to commit succeeds with ``committed: false``, an existing branch is
reused, and pushing a commit the remote already has succeeds. A workspace that is not a
git repository yet (a scratch one) becomes one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError
from temporalio import activity

from towline.activities import repo as git_repo
from towline.activities.artifacts import artifact_file, artifact_ref
from towline.activities.base import ToolInput, tool
from towline.errors import ToolError
from towline.toolcall import ToolContext

Action = Literal["status", "diff", "commit", "branch", "push"]
DEFAULT_MAX_DIFF = 64 * 1024
MAX_MAX_DIFF = 512 * 1024  # the diff lands in workflow history: well under its 2 MB limit

# The keys each action takes, beyond `action`.
_KEYS: dict[str, set[str]] = {
    "status": set(),
    "diff": {"base", "max_output"},
    "commit": {"message", "all", "author"},
    "branch": {"name", "checkout"},
    "push": {"remote", "branch", "force"},
}
_REJECTED = ("[rejected]", "non-fast-forward", "fetch first", "stale info")
_NO_REMOTE = ("does not appear to be a git repository", "No such remote", "repository not found")


class GitAuthor(ToolInput):
    name: str = Field(git_repo.DEFAULT_NAME, min_length=1, description="the author's name")
    email: str = Field(git_repo.DEFAULT_EMAIL, min_length=1, description="the author's email")


class GitInput(ToolInput):
    """One git action on the workspace, with the keys that action takes."""

    action: Action = Field(description="status, diff, commit, branch or push")
    message: str | None = Field(None, min_length=1, description="commit: the commit message")
    all: bool = Field(
        False,
        description="commit: stage every change first (git add --all), untracked files "
        "included; otherwise only what is staged (patch.apply stages what it changes)",
    )
    author: GitAuthor = Field(
        default_factory=GitAuthor,
        description="commit: {name, email} of the author and committer "
        f"(default {git_repo.DEFAULT_NAME} <{git_repo.DEFAULT_EMAIL}>)",
    )
    name: str | None = Field(None, min_length=1, description="branch: the branch's name")
    checkout: bool = Field(False, description="branch: also switch to the branch")
    remote: str = Field(
        "origin", min_length=1, description="push: a remote's name or a git URL (default origin)"
    )
    branch: str | None = Field(
        None,
        min_length=1,
        description="push: the remote branch to push the checked-out commit to "
        "(default: the current branch's name)",
    )
    force: bool = Field(False, description="push: overwrite the remote branch (--force)")
    base: str | None = Field(
        None,
        min_length=1,
        description="diff: the commit to compare the workspace with (default HEAD)",
    )
    max_output: int = Field(
        DEFAULT_MAX_DIFF,
        ge=0,
        le=MAX_MAX_DIFF,
        description="diff: bytes of the diff kept in the outputs; all of it is in the "
        "diff_ref artifact",
    )

    @model_validator(mode="after")
    def _keys_fit_the_action(self) -> GitInput:
        for key in sorted(self.model_fields_set - {"action"} - _KEYS[self.action]):
            owner = next(a for a, keys in _KEYS.items() if key in keys)
            raise PydanticCustomError(
                "git_key",
                "'{key}' goes with action {owner}, not {action}",
                {"key": key, "owner": owner, "action": self.action},
            )
        if self.action == "commit" and self.message is None:
            raise PydanticCustomError("git_key", "action commit needs a message")
        if self.action == "branch" and self.name is None:
            raise PydanticCustomError("git_key", "action branch needs a name")
        for key in ("name", "branch", "remote", "base"):
            value = getattr(self, key)
            if isinstance(value, str) and value.startswith("-"):
                raise PydanticCustomError(
                    "git_key", "{key} may not start with '-': {value}", {"key": key, "value": value}
                )
        return self


@tool("git", GitInput, "Git in the workspace: status, diff, commit, branch or push.")
async def git(args: GitInput, ctx: ToolContext) -> dict[str, Any]:
    """Outputs by action. status: ``branch``, ``head``, ``clean``, ``changed``,
    ``staged``, ``untracked``. diff: ``diff`` (at most ``max_output`` bytes),
    ``diff_truncated``, ``diff_ref`` (the whole diff), ``files``, ``changed``, ``base``.
    commit: ``committed``, ``sha``, ``branch``, ``files``. branch: ``branch``,
    ``created``, ``head``. push: ``pushed``, ``remote``, ``branch``, ``sha``."""
    workspace = Path(ctx.workspace).resolve()
    await git_repo.ensure_repo(workspace)
    if args.action == "status":
        return await _status(workspace)
    if args.action == "diff":
        return await _diff(workspace, args, ctx)
    if args.action == "commit":
        return await _commit(workspace, args)
    if args.action == "branch":
        return await _branch(workspace, args)
    return await _push(workspace, args)


async def _run(workspace: Path, *argv: str, env: dict[str, str] | None = None) -> str:
    """Run git; its stdout, or a ``tool`` error with what git said."""
    done = await git_repo.git(workspace, *argv, env=env)
    if done.code != 0:
        raise ToolError("tool", f"git {argv[0]} failed: {git_repo.message(done)}")
    return done.out


def _names(raw: str) -> list[str]:
    return [n for n in raw.split("\0") if n]


async def _status(workspace: Path) -> dict[str, Any]:
    raw = await _run(workspace, "status", "--porcelain=v1", "-z", "--untracked-files=all")
    changed: list[str] = []
    staged: list[str] = []
    untracked: list[str] = []
    entries = raw.split("\0")
    i = 0
    while i < len(entries) and entries[i]:
        entry = entries[i]
        code, path = entry[:2], entry[3:]
        i += 2 if code[0] in "RC" else 1  # a rename or copy is followed by its old name
        if code == "??":
            untracked.append(path)
            continue
        changed.append(path)
        if code[0] not in " ?":
            staged.append(path)
    return {
        "branch": await git_repo.current_branch(workspace),
        "head": await git_repo.head(workspace),
        "clean": not (changed or untracked),
        "changed": changed,
        "staged": staged,
        "untracked": untracked,
    }


async def _diff(workspace: Path, args: GitInput, ctx: ToolContext) -> dict[str, Any]:
    """Every change since ``base``, untracked files included, without touching the index.

    The changes are staged into a copy of the index, which is then compared with
    ``base``: the real index stays as it was, and the diff can be applied elsewhere
    (binary changes included).
    """
    base = await _base(workspace, args.base)
    info = activity.info()
    ref = artifact_ref(ctx, f"git-diff-{info.activity_id}-{info.attempt}.diff")
    index = Path((await _run(workspace, "rev-parse", "--git-path", "index")).strip())
    index = index if index.is_absolute() else workspace / index
    fd, scratch = tempfile.mkstemp(prefix="towline-index-")
    os.close(fd)
    with artifact_file(ref) as path:
        try:
            if index.exists():
                shutil.copyfile(index, scratch)
            else:
                os.unlink(scratch)  # git makes a fresh index where none is
            env = {"GIT_INDEX_FILE": scratch}
            await _run(workspace, "add", "--all", env=env)
            await _run(workspace, "diff", "--cached", "--binary", f"--output={path}", base, env=env)
            files = _names(
                await _run(workspace, "diff", "--cached", "--name-only", "-z", base, env=env)
            )
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(scratch)
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(args.max_output)
    return {
        "diff": head.decode("utf-8", errors="replace"),
        "diff_truncated": size > args.max_output,
        "diff_ref": ref,
        "files": files,
        "changed": bool(files),
        "base": base,
    }


async def _base(workspace: Path, base: str | None) -> str:
    """The commit to compare with, as a sha; the empty tree in a repository without one."""
    if base is None:
        sha = await git_repo.head(workspace)
        if sha is not None:
            return sha
        done = await git_repo.git(workspace, "hash-object", "-t", "tree", "--stdin", input=b"")
        return done.out.strip()
    done = await git_repo.git(workspace, "rev-parse", "--verify", "--quiet", f"{base}^{{commit}}")
    if done.code != 0:
        raise ToolError("validation", f"with.base: unknown commit '{base}'")
    return done.out.strip()


async def _commit(workspace: Path, args: GitInput) -> dict[str, Any]:
    assert args.message is not None
    if args.all:
        await _run(workspace, "add", "--all")
    nothing = await git_repo.git(workspace, "diff", "--cached", "--quiet")
    if nothing.code == 0:
        return {
            "committed": False,
            "sha": await git_repo.head(workspace),
            "branch": await git_repo.current_branch(workspace),
            "files": [],
        }
    who = args.author
    env = {
        "GIT_AUTHOR_NAME": who.name,
        "GIT_AUTHOR_EMAIL": who.email,
        "GIT_COMMITTER_NAME": who.name,
        "GIT_COMMITTER_EMAIL": who.email,
    }
    await _run(workspace, "commit", "--quiet", "--no-edit", "--message", args.message, env=env)
    files = await _run(
        workspace, "diff-tree", "--no-commit-id", "--name-only", "-r", "--root", "-z", "HEAD"
    )
    return {
        "committed": True,
        "sha": await git_repo.head(workspace),
        "branch": await git_repo.current_branch(workspace),
        "files": _names(files),
    }


async def _branch(workspace: Path, args: GitInput) -> dict[str, Any]:
    assert args.name is not None
    name = args.name
    valid = await git_repo.git(workspace, "check-ref-format", "--branch", name)
    if valid.code != 0:
        raise ToolError("validation", f"with.name: '{name}' is not a valid branch name")
    exists = await git_repo.git(workspace, "rev-parse", "--verify", "--quiet", f"refs/heads/{name}")
    created = exists.code != 0
    if args.checkout:
        await _run(workspace, "checkout", "--quiet", *(["-b"] if created else []), name)
    elif created:
        if await git_repo.head(workspace) is None:
            raise ToolError(
                "validation",
                f"cannot create branch '{name}': the repository has no commit yet",
                hint="commit first, or create the branch with checkout: true",
            )
        await _run(workspace, "branch", name)
    return {
        "branch": name,
        "created": created,
        "checked_out": args.checkout,
        "head": await git_repo.head(workspace),
    }


async def _push(workspace: Path, args: GitInput) -> dict[str, Any]:
    sha = await git_repo.head(workspace)
    if sha is None:
        raise ToolError("validation", "nothing to push: the repository has no commit yet")
    branch = args.branch or await git_repo.current_branch(workspace)
    if branch is None:
        raise ToolError(
            "validation",
            "the workspace has no branch checked out (detached HEAD): give with.branch",
        )
    remote = git_repo.display_url(args.remote)
    argv = ["push", "--porcelain", *(["--force"] if args.force else [])]
    done = await git_repo.git(workspace, *argv, "--", args.remote, f"HEAD:refs/heads/{branch}")
    if done.code != 0:
        said = git_repo.message(done)
        text = done.err + done.out
        if any(s in text for s in _REJECTED):
            raise ToolError(
                "conflict",
                f"push to {remote} rejected: branch '{branch}' there has commits the "
                f"workspace does not: {said}",
                hint="the remote moved on: rebase or merge, or push with force: true",
            )
        if any(s in text for s in _NO_REMOTE):
            raise ToolError("validation", f"with.remote: cannot push to '{remote}': {said}")
        raise ToolError("tool", f"push to {remote} failed: {said}")
    return {"pushed": True, "remote": remote, "branch": branch, "sha": sha}
