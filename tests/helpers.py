"""Small builders shared by the tests."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def plan(*workstreams: dict[str, Any], name: str = "test", **settings: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"version": 1, "name": name, "workstreams": list(workstreams)}
    if settings:
        out["settings"] = settings
    return out


def ws(wid: str, *tasks: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"id": wid, "tasks": list(tasks), **extra}


def echo(tid: str, **extra: Any) -> dict[str, Any]:
    return {"id": tid, "tool": "echo", **extra}


def sh(tid: str, script: str, **extra: Any) -> dict[str, Any]:
    """A shell task running ``script`` with /bin/sh, tried once unless told otherwise."""
    extra.setdefault("retry", {"max_attempts": 1})
    return {"id": tid, "tool": "shell", "with": {"command": ["sh", "-c", script]}, **extra}


def ledger_task(tid: str, ledger: Path, *, seconds: float = 0.3, **extra: Any) -> dict[str, Any]:
    """A shell task that records its start and end in ``ledger`` (one line each)."""
    script = f"echo start {tid} >> {ledger}; sleep {seconds}; echo end {tid} >> {ledger}"
    return sh(tid, script, **extra)


def max_concurrency(ledger: Path) -> int:
    running = peak = 0
    for line in ledger.read_text().splitlines():
        running += 1 if line.startswith("start") else -1
        peak = max(peak, running)
    return peak


# Git as the tests run it: no dependence on the machine's git configuration or identity.
GIT_ENV = {
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@localhost",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@localhost",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
}


def git(repo: Path, *args: str) -> str:
    """Run git in ``repo``; its stdout (it must succeed)."""
    done = subprocess.run(
        ["git", "-c", "init.defaultBranch=main", *args],
        cwd=repo,
        env={**os.environ, **GIT_ENV},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done.stdout


def write_files(root: Path, files: Mapping[str, str | None]) -> None:
    """Write (or, for None, delete) files under ``root``."""
    for name, text in files.items():
        path = root / name
        if text is None:
            path.unlink()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)


def make_repo(path: Path, files: dict[str, str]) -> Path:
    """A git repository at ``path`` on branch main, with ``files`` in one commit."""
    path.mkdir(parents=True)
    git(path, "init", "--quiet")
    write_files(path, files)
    git(path, "add", "--all")
    git(path, "commit", "--quiet", "--message", "initial")
    return path


def diff_of(repo: Path, changes: Mapping[str, str | None], scratch: Path) -> str:
    """The git diff (with index lines, so 3-way merges work) of ``changes`` to ``repo``.

    The changes are made in a clone at ``scratch``; ``repo`` itself is not touched.
    """
    git(repo.parent, "clone", "--quiet", str(repo), str(scratch))
    write_files(scratch, changes)
    git(scratch, "add", "--all")
    return git(scratch, "diff", "--cached")
