"""Artifacts and snapshots in the shared store, by run, for `towline gc` and `/metrics`."""

from __future__ import annotations

from pathlib import Path

from towline.retention.holdings import StoreRuns
from towline.store import FolderStore


def test_the_store_lists_removes_and_measures_the_things_of_each_run(tmp_path: Path) -> None:
    store = FolderStore(tmp_path / "store")
    store.put("snapshots/run-1/api/a.snap", b"x" * 10)
    store.put("snapshots/run-1/web/b.snap", b"y" * 5)
    store.put("snapshots/run%2F2/api/c.snap", b"z")  # run ids are percent-encoded keys
    store.put("artifacts/run-1/api/t/log.txt", b"not a snapshot")
    snaps = StoreRuns("snapshots", store, "snapshots/")
    assert set(snaps.runs()) == {"run-1", "run/2"}
    assert snaps.usage() == 16
    snaps.remove("run-1")
    assert set(snaps.runs()) == {"run/2"}
    assert store.exists("artifacts/run-1/api/t/log.txt")  # another kind, left alone
    snaps.remove("never-here")  # nothing there is not an error
    assert snaps.usage() == 1
