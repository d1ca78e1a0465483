"""Many workers, as on many machines, and any of them may die.

Each worker is a real ``towline worker`` process in a mount namespace of its own, where
the other workers' homes (their workspaces) and the plan's folder are empty tmpfs
mounts: no worker sees another's disk or the starter's. They share the Temporal server
and the store (a folder, or a real S3-compatible server). The test SIGKILLs the worker
holding a workstream's workspace in the middle of a task, or of a rollback.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from tests.helpers import diff_of, make_repo, sh
from tests.s3server import BUCKET, S3Server
from tests.workerproc import WorkerProcess, start_worker, wait_status
from towline.activities.artifacts import read_artifact
from towline.plan.load import check_data
from towline.starter import api
from towline.state import RunState

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]

TAKEOVER = "12s"  # 4 s heartbeat and schedule-to-start timeouts: quick, with room for load
BIG = 70 * 1024  # bytes of a file the patch adds: the patch travels through the store


class Fleet:
    """Worker processes on one task queue, each blind to the others' homes."""

    def __init__(self, address: str, root: Path, env: dict[str, str], hidden: list[Path]) -> None:
        self.address = address
        self.root = root
        self.env = env
        self.hidden = hidden  # folders no worker sees (the plan's)
        self.queue = f"fleet-{uuid.uuid4().hex[:8]}"
        self.workers: dict[str, WorkerProcess] = {}

    def home(self, name: str) -> Path:
        return self.root / "homes" / name

    async def start(self, *names: str) -> None:
        for name in names:
            self.home(name).mkdir(parents=True, exist_ok=True)
        for name in names:
            others = [self.home(n) for n in names if n != name]
            self.workers[name] = start_worker(
                self.address,
                self.queue,
                home=self.home(name),
                env=self.env,
                hide=[*others, *self.hidden],
                args=["--log-level", "debug"],
            )
        for w in self.workers.values():
            await wait_status(w, "/readyz", 200)

    def holder(self, state: RunState, ws: str) -> str:
        """The name of the worker holding ``ws``'s workspace (its queue names its pid)."""
        holding = state.workstreams[ws].holding
        assert holding is not None
        assert holding.held.queue is not None
        pid = int(holding.held.queue.rsplit("-", 2)[-2])
        return next(n for n, w in self.workers.items() if w.proc.pid == pid)

    def logs(self) -> str:
        return "\n".join(f"--- {n}:\n{w.output()[-6000:]}" for n, w in self.workers.items())

    def stop(self) -> None:
        for w in self.workers.values():
            w.stop()


@pytest.fixture
def fleet(
    request: pytest.FixtureRequest,
    dev_server: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Fleet]:
    """A fleet sharing a store: a folder by default, S3 when the test is parametrized so."""
    kind = getattr(request, "param", "folder")
    env: dict[str, str] = {}
    if kind == "s3":
        server: S3Server = request.getfixturevalue("s3")
        env.update(server.env())
        env["TOWLINE_STORE"] = f"s3://{BUCKET}/{tmp_path.name}"
    else:
        env["TOWLINE_STORE"] = str(tmp_path / "store")
    for name, value in env.items():  # the starter (this process) shares it too
        monkeypatch.setenv(name, value)
    plan_dir = tmp_path / "plan"
    plan_dir.mkdir()
    f = Fleet(dev_server, tmp_path, env, hidden=[plan_dir])
    try:
        yield f
    finally:
        f.stop()


def _source(tmp_path: Path) -> tuple[str, Path]:
    """A repository every worker can clone (by URL), and a patch file in the plan's folder
    (which no worker sees) that changes it and adds a file too big to travel inline."""
    source = make_repo(tmp_path / "source", {"README.md": "hello\n", "changes.txt": ""})
    patch = diff_of(
        source,
        {"README.md": "hello\npatched\n", "big.txt": "b" * (BIG - 1) + "\n"},
        tmp_path / "scratch",
    )
    (tmp_path / "plan" / "patches").mkdir()
    (tmp_path / "plan" / "patches" / "readme.diff").write_text(patch)
    return f"file://{source}", tmp_path / "plan"


def _step(tid: str, ledger: Path, *, seconds: float = 0, act: str = "") -> str:
    """A script that records what the workspace holds when it starts, and its end."""
    seen = "$(grep -c patched README.md) $(tr '\\n' , < changes.txt)"
    wait = f"sleep {seconds}; " if seconds else ""
    return f"echo start {tid} {seen} >> {ledger}; {wait}{act}echo end {tid} >> {ledger}"


def _lines(ledger: Path, word: str, tid: str) -> list[str]:
    return [
        line
        for line in (ledger.read_text().splitlines() if ledger.exists() else [])
        if line.split()[:2] == [word, tid]
    ]


async def _kill_holder_once(
    client: Client, fleet: Fleet, rid: str, ledger: Path, word: str, tid: str
) -> str:
    """Wait until ``tid`` has started (``word``), then SIGKILL the workspace's holder."""
    for _ in range(1200):
        if _lines(ledger, word, tid):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError(f"{tid} never started:\n{fleet.logs()}")
    name = fleet.holder(await api.get_status(client, rid), "w")
    fleet.workers[name].proc.kill()
    fleet.workers[name].proc.wait()
    return name


async def _wait(client: Client, fleet: Fleet, rid: str) -> RunState:
    try:
        return await asyncio.wait_for(api.wait_run(client, rid), 150)
    except TimeoutError:
        raise AssertionError(f"the run did not end:\n{fleet.logs()}") from None


@pytest.mark.parametrize("fleet", ["folder", "s3"], indirect=True)
async def test_killing_the_holder_mid_task_loses_nothing(
    client: Client, fleet: Fleet, tmp_path: Path
) -> None:
    url, plan_dir = _source(tmp_path)
    ledger = tmp_path / "ledger"
    tasks: list[dict[str, Any]] = [
        {"id": "apply", "tool": "patch.apply", "with": {"patch": "patches/readme.diff"}},
        sh(
            "slow",
            _step("slow", ledger, seconds=5, act="echo slow >> changes.txt; "),
            needs=["apply"],
        ),
        sh("next", _step("next", ledger, act="echo next >> changes.txt; "), needs=["slow"]),
        {
            "id": "commit",
            "tool": "git",
            "needs": ["next"],
            "with": {"action": "commit", "message": "fleet work", "all": True},
        },
        sh(
            "last",
            _step("last", ledger, act=f"test ! -e {plan_dir}/patches; ")
            + "; git log -1 --format=%s; wc -c < big.txt",
            needs=["commit"],
        ),
    ]
    spec = check_data(
        {
            "version": 1,
            "name": "fleet",
            "settings": {"takeover": TAKEOVER},
            "workstreams": [{"id": "w", "repo": {"url": url}, "tasks": tasks}],
        }
    )
    await fleet.start("a", "b")
    rid = await api.start_run(client, spec, plan_dir=plan_dir, task_queue=fleet.queue)
    killed = await _kill_holder_once(client, fleet, rid, ledger, "start", "slow")

    state = await _wait(client, fleet, rid)

    assert state.status == "succeeded", f"{state.model_dump_json(indent=1)}\n{fleet.logs()}"
    holding = state.workstreams["w"].holding
    assert holding is not None
    assert holding.number == 2  # taken over once
    assert fleet.holder(state, "w") != killed
    # Every task ran to its end once; only the one cut short by the kill started twice.
    for tid in ("slow", "next", "last"):
        assert len(_lines(ledger, "end", tid)) == 1, ledger.read_text()
    assert len(_lines(ledger, "start", "slow")) == 2, ledger.read_text()
    # Each task saw what the tasks before it did (the patch, then the appended lines).
    assert _lines(ledger, "start", "slow") == ["start slow 1"] * 2
    assert _lines(ledger, "start", "next") == ["start next 1 slow,"]
    assert _lines(ledger, "start", "last") == ["start last 1 slow,next,"]
    last = state.workstreams["w"].tasks["last"]
    assert last.outputs["stdout"].split() == ["fleet", "work", str(BIG)]
    # What the tasks printed is in the store, readable from this (any) machine.
    assert b"fleet work" in read_artifact(last.outputs["log"])


async def test_killing_the_holder_during_a_rollback_finishes_the_rollback(
    client: Client, fleet: Fleet, tmp_path: Path
) -> None:
    url, plan_dir = _source(tmp_path)
    ledger = tmp_path / "ledger"
    patch = {"patch": "patches/readme.diff"}
    undo = _step("undo", ledger, seconds=5, act="sed -i /added/d changes.txt; ")
    tasks: list[dict[str, Any]] = [
        {
            "id": "apply",
            "tool": "patch.apply",
            "with": patch,
            "rollback": {"tool": "patch.revert", "with": patch},
        },
        {
            **sh("add", "echo added >> changes.txt", needs=["apply"]),
            "rollback": {"tool": "shell", "with": {"command": ["sh", "-c", undo]}},
        },
        sh("fail", "exit 1", needs=["add"]),
    ]
    spec = check_data(
        {
            "version": 1,
            "name": "fleet-rollback",
            "settings": {"takeover": TAKEOVER},
            "workstreams": [{"id": "w", "repo": {"url": url}, "tasks": tasks}],
        }
    )
    await fleet.start("a", "b")
    rid = await api.start_run(client, spec, plan_dir=plan_dir, task_queue=fleet.queue)
    await _kill_holder_once(client, fleet, rid, ledger, "start", "undo")

    state = await _wait(client, fleet, rid)

    tasks_state = state.workstreams["w"].tasks
    assert state.status == "rolled_back", f"{state.model_dump_json(indent=1)}\n{fleet.logs()}"
    assert tasks_state["add"].status == tasks_state["apply"].status == "rolled_back"
    holding = state.workstreams["w"].holding
    assert holding is not None
    assert holding.number == 2
    # The rollback cut short ran again on the new holder, in the workspace as the task
    # it undoes left it (patched, with its line), and finished once.
    assert _lines(ledger, "start", "undo") == ["start undo 1 added,"] * 2
    assert len(_lines(ledger, "end", "undo")) == 1
