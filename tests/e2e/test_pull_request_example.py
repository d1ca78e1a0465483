"""The pull-request example as a user runs it: its setup script, the bundled fake forge,
then the plan through the CLI, ending in one pull request in each repository."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_cli import ROOT, conn, towline
from tests.fakes.forge import FakeForge
from tests.helpers import GIT_ENV, git

__all__ = ["conn"]  # the fixture, shared with test_cli

EXAMPLE = ROOT / "examples" / "pull-request"
TOKEN = "t0ken"

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """A copy of the example folder, set up by its own script."""
    copy = tmp_path / "pull-request"
    shutil.copytree(EXAMPLE, copy, ignore=shutil.ignore_patterns("forge", "__pycache__"))
    done = subprocess.run(
        [str(copy / "setup.sh")],
        env={**os.environ, **GIT_ENV},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return copy


@pytest.fixture
def forge(example: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeForge]:
    monkeypatch.setenv("TOWLINE_SECRET_FORGE_TOKEN", TOKEN)  # the in-process worker's
    repos = {f"acme/{n}": example / "forge" / "acme" / f"{n}.git" for n in ("api", "web")}
    with FakeForge(repos, token=TOKEN) as server:
        yield server


async def test_the_example_opens_one_pull_request_in_each_repository(
    conn: list[str], example: Path, forge: FakeForge
) -> None:
    # The plan names the fake forge's usual port; this one listens where it could.
    sets = [
        f"--set=workstreams.{ws}.tasks.pr.{where}.api_url={forge.url}"
        for ws in ("api", "web")
        for where in ("with", "rollback.with")
    ]
    r = await towline("run", str(example / "plan.yaml"), "--wait", "--json", *sets, *conn)

    assert r.code == 0, r.err
    out = json.loads(r.out)
    assert out["status"] == "succeeded"
    run_id = out["run_id"]
    api_pr = out["workstreams"]["api"]["tasks"]["pr"]["outputs"]
    web_pr = out["workstreams"]["web"]["tasks"]["pr"]["outputs"]
    for name, pr in (("api", api_pr), ("web", web_pr)):
        [pull] = forge.pulls(f"acme/{name}")
        branch = f"towline/{run_id}/{name}"
        assert (pr["number"], pr["state"], pr["created"]) == (1, "open", True)
        assert (pull.head, pull.base, pull.state) == (branch, "main", "open")
        assert pull.title == "Raise the HTTP timeout to 60 s"
        assert pull.labels == ["towline", "config"]
        bare = example / "forge" / "acme" / f"{name}.git"
        assert git(bare, "rev-parse", f"refs/heads/{branch}").strip() == pull.sha == pr["sha"]
        assert "timeout_seconds: 60" in git(bare, "show", f"{branch}:service.yaml")
        assert "timeout_seconds: 30" in git(bare, "show", "main:service.yaml")
    assert forge.pulls("acme/api")[0].reviewers == ["ana"]
    web_body = forge.pulls("acme/web")[0].body
    assert web_body == f"Part of run {run_id}; goes with {api_pr['url']}."
