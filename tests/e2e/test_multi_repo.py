"""The multi-repo example as a user runs it: its setup script, then the plan through the CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.test_cli import ROOT, conn, towline
from tests.helpers import GIT_ENV, git

__all__ = ["conn"]  # the fixture, shared with test_cli

EXAMPLE = ROOT / "examples" / "multi-repo"
FAILING = "tests/test_more.py::ChunkedTests::test_even"

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the example folder, set up by its own script."""
    copy = tmp_path / "multi-repo"
    shutil.copytree(EXAMPLE, copy, ignore=shutil.ignore_patterns("repos", "__pycache__"))
    done = subprocess.run(
        [str(copy / "setup.sh")],
        env={**os.environ, **GIT_ENV},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    # The plan's gates run `python -m pytest`; the worker runs in this process, so put a
    # python that has pytest first on its PATH, as the example's README asks.
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return copy


async def test_multi_repo_example_commits_a_and_fails_b_on_its_tests(
    conn: list[str], example: Path
) -> None:
    heads = {r: git(example / "repos" / r, "rev-parse", "HEAD") for r in ("a", "b")}

    r = await towline("run", str(example / "plan.yaml"), "--wait", "--json", *conn)

    assert r.code == 1, r.err
    out = json.loads(r.out)
    # B's failure runs its rollbacks (patch.revert): the run ends failed or rolled back.
    assert out["status"] in ("failed", "rolled_back")
    a, b = out["workstreams"]["a"], out["workstreams"]["b"]
    assert a["status"] == "succeeded"
    assert a["tasks"]["test"]["outputs"]["passed"] == 2
    commit = a["tasks"]["commit"]
    assert commit["status"] == "succeeded"
    assert commit["outputs"]["committed"] is True
    assert sorted(commit["outputs"]["files"]) == ["calc/__init__.py", "tests/test_calc.py"]
    assert b["status"] in ("failed", "rolled_back")
    gate = b["tasks"]["test"]
    assert gate["status"] == "failed"
    assert gate["error"]["category"] == "test_failed"
    assert FAILING in gate["error"]["message"]
    assert gate["outputs"]["failing"] == [FAILING]
    assert (gate["outputs"]["passed"], gate["outputs"]["failed"]) == (3, 1)
    assert b["tasks"]["commit"]["status"] != "succeeded"
    # A's commit reached repos/a as the branch it was pushed to, nothing more: the tasks
    # worked in workspaces of their own and the checkouts did not move.
    pushed = git(example / "repos" / "a", "rev-parse", f"refs/heads/towline/{out['run_id']}")
    assert pushed.strip() == commit["outputs"]["sha"]
    for name, head in heads.items():
        assert git(example / "repos" / name, "rev-parse", "HEAD") == head
        assert git(example / "repos" / name, "status", "--porcelain") == ""

    # A terminal wide enough for the note column to hold a test id on one line.
    status = await towline("status", out["run_id"], *conn, env={**os.environ, "COLUMNS": "160"})
    assert status.code == 0, status.err
    assert "test_failed" in status.out
    assert FAILING in status.out
