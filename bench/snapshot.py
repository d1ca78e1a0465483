"""What a workspace snapshot costs: ``snapshot_10k``.

A repository of 10,000 files (100 folders of 100), cloned as a workspace is. Each sample
is what a holder does after a task that changed it: one file changed and one added,
then :func:`towline.activities.snapshots.take` into a folder store, timed alone (the
tool's own work is not counted). Restoring (a fresh clone, then the newest snapshot) is
timed too: what a takeover adds to holding a workspace anew.
"""

from __future__ import annotations

import asyncio
import resource
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from towline.activities import snapshots
from towline.holding import SnapshotRequest
from towline.store import FolderStore

FOLDERS = FILES = 100
GOAL_MS = 150.0


@dataclass
class SnapshotCost:
    files: int
    samples: int
    first_ms: float  # the first snapshot of a fresh clone: every file is read once
    take_ms: list[float]
    cpu_ms: list[float]  # CPU the snapshot used (this process and its git commands)
    restore_ms: list[float]
    bytes: int  # of the newest snapshot: everything changed since the base

    @property
    def median_ms(self) -> float:
        return statistics.median(self.take_ms)


def _git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def _repository(root: Path) -> Path:
    source = root / "source"
    source.mkdir(parents=True)
    _git(source, "init", "--quiet", "--initial-branch=main")
    for d in range(FOLDERS):
        folder = source / f"pkg{d}"
        folder.mkdir()
        for f in range(FILES):
            (folder / f"mod{f}.py").write_text(f"# module {d}.{f}\nVALUE = {d * FILES + f}\n")
    _git(source, "add", "--all")
    _git(source, "commit", "--quiet", "--message", "10,000 files")
    return source


async def measure(root: Path, samples: int = 20, restores: int = 3) -> SnapshotCost:
    source = _repository(root)
    work = root / "workspace"
    _git(root, "clone", "--quiet", str(source), str(work))
    base = _git(work, "rev-parse", "HEAD").strip()
    store = FolderStore(root / "store")
    req = SnapshotRequest(run_id="bench", workstream="w", base=base)
    # The first snapshot after a clone reads every file once (a clone's index is
    # written in the same second as its files, so git cannot trust its stat cache).
    (work / "pkg0" / "first.py").write_text("FIRST = True\n")
    started = time.perf_counter()
    await snapshots.take(work, req, name="first", store=store)
    first_ms = 1000 * (time.perf_counter() - started)
    take_ms: list[float] = []
    cpu_ms: list[float] = []
    snap = None
    for i in range(samples):
        (work / f"pkg{i}" / "mod0.py").write_text(f"# changed by task {i}\n")
        (work / f"pkg{i}" / f"new{i}.py").write_text("NEW = True\n")
        cpu, started = _cpu(), time.perf_counter()
        snap = await snapshots.take(work, req, name=f"task{i}", store=store)
        take_ms.append(1000 * (time.perf_counter() - started))
        cpu_ms.append(1000 * (_cpu() - cpu))
    assert snap is not None
    restore_ms: list[float] = []
    for i in range(restores):
        fresh = root / f"restored{i}"
        _git(root, "clone", "--quiet", str(source), str(fresh))
        started = time.perf_counter()
        await snapshots.restore(fresh, snap, store=store)
        restore_ms.append(1000 * (time.perf_counter() - started))
    size = len(store.get(snap.key))
    return SnapshotCost(FOLDERS * FILES, samples, first_ms, take_ms, cpu_ms, restore_ms, size)


def _cpu() -> float:
    """Seconds of CPU this process and its finished children have used."""
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory(prefix="towline-bench-snapshot-") as tmp:
        cost = asyncio.run(measure(Path(tmp)))
    print(
        f"snapshot_10k: median {cost.median_ms:.0f} ms per task (goal < {GOAL_MS:.0f}), "
        f"CPU {statistics.median(cost.cpu_ms):.0f} ms, the first {cost.first_ms:.0f} ms, "
        f"restore {statistics.median(cost.restore_ms):.0f} ms, {cost.bytes} bytes"
    )
