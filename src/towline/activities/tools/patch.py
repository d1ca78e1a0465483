"""``patch.apply`` and ``patch.revert``: apply a unified diff to the workspace, or undo it.

The diff comes from a file (``patch:``, relative to the plan's folder, or an artifact
reference such as a ``git`` diff's ``diff_ref``) or inline (``diff:``, which also takes
an earlier task's output: ``${{ tasks.x.outputs.diff }}``). It is applied with
``git apply``; when it does not apply as it is, with a 3-way merge (``git apply
--3way``), which needs the diff's ``index`` lines and the blobs they name. What cannot
be merged is category ``conflict``, naming the files; a 3-way merge leaves its conflict
markers in them, as git does, for a person or a fix task to resolve.

Safety first: every path the diff touches is checked before anything is written. A path
that is absolute, climbs out with ``..``, goes into ``.git`` or through a symbolic link
that leads outside the workspace is category ``validation``.

Retries are harmless: a diff that is already applied (its reverse applies cleanly) is
reported as success with ``already_applied: true``; ``patch.revert`` likewise reports
``already_reverted: true``. The files a patch changes are staged (``git add``), so a later
``git`` commit records exactly the applied patches. A workspace that is not a git
repository yet (a scratch one) becomes one.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from towline.activities import repo as git_repo
from towline.activities.artifacts import SCHEME, read_artifact
from towline.activities.base import ToolInput, tool
from towline.activities.process import Completed
from towline.errors import ToolError
from towline.toolcall import ToolContext

_HUNK = re.compile(rb"^@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@")
_NAMED = (b"rename from ", b"rename to ", b"copy from ", b"copy to ")
_FAILED = (
    re.compile(r"^error: patch failed: (.+):\d+$"),
    re.compile(r"^error: (.+): (?:patch does not apply|does not match index)$"),
    re.compile(r"^error: (.+): (?:already exists|does not exist) in (?:working directory|index)$"),
    re.compile(r"^error: (.+): No such file or directory$"),
    re.compile(r"^Applied patch to '(.+)' with conflicts\.$"),
)
_SHOWN = 20  # conflicting files named in a message


class PatchInput(ToolInput):
    """A unified diff, from a file or inline: exactly one of ``patch`` and ``diff``."""

    patch: str | None = Field(
        None,
        description="a unified diff file, relative to the plan's folder (or absolute), "
        "or an artifact reference (artifact://...), e.g. patches/api.diff; the file travels "
        "with the run",
        json_schema_extra={"plan_file": True},
    )
    diff: str | None = Field(
        None,
        description="the unified diff itself, e.g. ${{ tasks.make-diff.outputs.diff }}",
    )
    strip: int = Field(
        1,
        ge=0,
        le=20,
        description="leading path components removed from the file names in the diff, "
        "like patch -p (1 for git's a/ and b/ prefixes)",
    )
    three_way: bool = Field(
        True, description="when the diff does not apply as it is, try a 3-way merge"
    )

    @model_validator(mode="after")
    def _one_source(self) -> PatchInput:
        if (self.patch is None) == (self.diff is None):
            raise PydanticCustomError(
                "patch_source",
                "give exactly one of 'patch' (a diff file) or 'diff' (the diff's text)",
            )
        return self


@tool("patch.apply", PatchInput, "Apply a unified diff to the workspace (git apply, 3-way).")
async def apply_patch(args: PatchInput, ctx: ToolContext) -> dict[str, Any]:
    """Outputs: ``files`` (the paths it changes), ``added``/``deleted`` (lines),
    ``already_applied``, ``three_way`` (whether the 3-way merge was needed)."""
    return await _run(args, ctx, reverse=False)


@tool("patch.revert", PatchInput, "Undo a unified diff in the workspace (git apply --reverse).")
async def revert_patch(args: PatchInput, ctx: ToolContext) -> dict[str, Any]:
    """Outputs: ``files``, ``added``/``deleted`` (lines, as the diff counts them),
    ``already_reverted``, ``three_way``."""
    return await _run(args, ctx, reverse=True)


async def apply_diff(args: PatchInput, ctx: ToolContext) -> dict[str, Any]:
    """``patch.apply``'s work, for other tools (an agent's ``apply_patch``)."""
    return await _run(args, ctx, reverse=False)


async def _run(args: PatchInput, ctx: ToolContext, *, reverse: bool) -> dict[str, Any]:
    workspace = Path(ctx.workspace).resolve()
    text = _load(args, ctx)
    for name in header_paths(text):
        problem = unsafe_path(name)
        if problem:
            raise _escape(name, problem)
    stat = await _numstat(workspace, text, args.strip)
    files = list(stat)
    for name in files:
        problem = unsafe_path(name) or _outside(workspace, name)
        if problem:
            raise _escape(name, problem)
    # Nothing has been written up to here.
    await git_repo.ensure_repo(workspace)
    done_key = "already_reverted" if reverse else "already_applied"
    outputs: dict[str, Any] = {
        "files": files,
        "added": sum(a for a, _ in stat.values()),
        "deleted": sum(d for _, d in stat.values()),
        done_key: False,
        "three_way": False,
    }
    base = ["apply", f"-p{args.strip}", "--whitespace=nowarn", *(["--reverse"] if reverse else [])]
    check = await git_repo.git(workspace, *base, "--check", "-", input=text)
    if check.code == 0:
        done = await git_repo.git(workspace, *base, "-", input=text)
        if done.code != 0:
            raise ToolError("tool", f"git apply failed: {git_repo.message(done)}")
        await _stage(workspace, files)
        return outputs
    back = [a for a in base if a != "--reverse"] + ([] if reverse else ["--reverse"])
    if (await git_repo.git(workspace, *back, "--check", "-", input=text)).code == 0:
        outputs[done_key] = True  # a retry, or the change was already there
        return outputs
    if not args.three_way:
        raise _conflict(check, files, outputs, reverse=reverse)
    # --3way works on the index: stage the current state of the files first.
    await _stage(workspace, files)
    done = await git_repo.git(workspace, *base, "--3way", "-", input=text)
    if done.code != 0:
        unmerged = await _unmerged(workspace)
        raise _conflict(done, files, outputs, reverse=reverse, unmerged=unmerged, merged=True)
    outputs["three_way"] = True
    await _stage(workspace, files)
    return outputs


def _load(args: PatchInput, ctx: ToolContext) -> bytes:
    """The diff's bytes, from ``diff`` or the file ``patch``."""
    if args.diff is not None:
        data = args.diff.encode()
        where = "with.diff"
    else:
        assert args.patch is not None
        where = f"with.patch ({args.patch})"
        if args.patch.startswith(SCHEME):
            try:
                data = read_artifact(args.patch)
            except (ValueError, FileNotFoundError) as e:
                raise ToolError("validation", f"with.patch: {e}") from None
        else:
            path = Path(ctx.plan_dir) / args.patch
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                raise ToolError(
                    "validation",
                    f"with.patch: file not found: {args.patch} (looked in {path})",
                    hint="give the diff file's path relative to the plan's folder",
                ) from None
            except IsADirectoryError:
                raise ToolError(
                    "validation", f"with.patch: {args.patch} is a folder, not a diff file"
                ) from None
    if not data.strip():
        raise ToolError("validation", f"{where}: the diff is empty")
    return data


def header_paths(diff: bytes) -> list[str]:
    """The file names in a diff's headers, as written (``a/x``), hunk bodies skipped.

    ``/dev/null`` is left out. A line of a hunk that happens to start with ``---`` is not
    a header: hunks are skipped by their line counts.
    """
    names: list[str] = []
    old = new = 0  # lines of the current hunk still to come, on each side
    for line in diff.splitlines():
        if old > 0 or new > 0:
            mark = line[:1]
            if mark == b"\\":  # "\ No newline at end of file"
                continue
            if mark in (b" ", b"", b"-", b"+"):
                if mark != b"+":
                    old -= 1
                if mark != b"-":
                    new -= 1
                continue
            old = new = 0  # a hunk shorter than it said: git apply will complain
        m = _HUNK.match(line)
        if m:
            old = int(m.group(1) or 1)
            new = int(m.group(2) or 1)
            continue
        if line.startswith((b"--- ", b"+++ ")):
            name = _unquote(line[4:].split(b"\t", 1)[0].rstrip(b"\r"))
        elif line.startswith(_NAMED):
            name = _unquote(line.split(b" ", 2)[2].rstrip(b"\r"))
        else:
            continue
        if name != "/dev/null":
            names.append(name)
    return names


def _unquote(raw: bytes) -> str:
    """A file name as git writes it: plain, or in double quotes with C escapes."""
    if raw.startswith(b'"') and raw.endswith(b'"') and len(raw) >= 2:
        return raw[1:-1].decode("unicode_escape").encode("latin-1").decode(errors="replace")
    return raw.decode(errors="replace")


def unsafe_path(name: str) -> str | None:
    """Why a path written in a diff is not allowed, or None when it is."""
    if name.startswith("/"):
        return "it is absolute"
    parts = re.split(r"[\\/]", name)
    if ".." in parts:
        return "it climbs out with '..'"
    if any(p.lower() == ".git" for p in parts):
        return "it is inside .git"
    return None


def _outside(workspace: Path, name: str) -> str | None:
    """Whether ``name`` leads outside the workspace through a symbolic link."""
    target = workspace / name
    # The last component may itself be a link the diff changes; what is above it must
    # not lead elsewhere.
    if not target.parent.resolve().is_relative_to(workspace):
        return "it goes through a symbolic link that leads outside the workspace"
    return None


def _escape(name: str, problem: str) -> ToolError:
    return ToolError(
        "validation",
        f"the diff touches '{name}', outside the workspace: {problem}; nothing was applied",
        hint="a diff may only change files inside the workspace, by relative paths",
    )


async def _numstat(workspace: Path, diff: bytes, strip: int) -> dict[str, tuple[int, int]]:
    """The files the diff changes, as git will name them, with lines added and deleted."""
    done = await git_repo.git(workspace, "apply", f"-p{strip}", "--numstat", "-z", "-", input=diff)
    if done.code != 0:
        raise ToolError("validation", f"not a valid diff: {git_repo.message(done)}")
    fields = done.stdout.decode(errors="replace").split("\0")
    files: dict[str, tuple[int, int]] = {}
    i = 0
    while i < len(fields) and fields[i]:
        added, deleted, name = fields[i].split("\t", 2)
        counts = (int(added) if added.isdigit() else 0, int(deleted) if deleted.isdigit() else 0)
        if name:
            files[name] = counts
            i += 1
        else:  # a rename or copy: the old and the new name follow
            files[fields[i + 1]] = (0, 0)
            files[fields[i + 2]] = counts
            i += 3
    if not files:
        raise ToolError("validation", "not a valid diff: it changes no file")
    return files


async def _stage(workspace: Path, files: list[str]) -> None:
    """Stage the files as they are now: changed, added, or deleted.

    A file that is neither in the workspace nor tracked (one the diff is about to
    create) is left out: git refuses a path that matches nothing.
    """
    listed = await git_repo.git(workspace, "ls-files", "-z", "--", *files)
    tracked = set(listed.out.split("\0"))
    present = [f for f in files if f in tracked or os.path.lexists(workspace / f)]
    if not present:
        return
    done = await git_repo.git(workspace, "add", "--all", "--force", "--", *present)
    if done.code != 0:
        raise ToolError("tool", f"git add failed: {git_repo.message(done)}")


async def _unmerged(workspace: Path) -> list[str]:
    done = await git_repo.git(workspace, "diff", "--name-only", "--diff-filter=U", "-z")
    return [n for n in done.stdout.decode(errors="replace").split("\0") if n]


def _conflict(
    done: Completed,
    files: list[str],
    outputs: dict[str, Any],
    *,
    reverse: bool,
    merged: bool = False,
    unmerged: list[str] | None = None,
) -> ToolError:
    """A ``conflict`` error naming the files that did not apply, outputs attached."""
    failed: list[str] = list(unmerged or [])
    for line in done.err.splitlines():
        for pattern in _FAILED:
            m = pattern.match(line.strip())
            if m and m.group(1) not in failed:
                failed.append(m.group(1))
    conflicts = failed or files
    shown = ", ".join(conflicts[:_SHOWN]) + (
        f" (and {len(conflicts) - _SHOWN} more)" if len(conflicts) > _SHOWN else ""
    )
    verb = "revert" if reverse else "apply"
    how = "even with a 3-way merge" if merged else "cleanly"
    markers = " (conflict markers left in them)" if unmerged else ""
    return ToolError(
        "conflict",
        f"the diff does not {verb} {how}: conflicts in {shown}{markers}",
        output=done.err[-4000:],
        outputs={**outputs, "conflicts": conflicts},
    )
