"""Where a run's things are, each kind behind one small interface (:class:`Holding`).

A holding lists the runs it has things of, removes the things of one run, and says how
much room it takes: the workspaces on this machine (a folder per run), the artifacts and
workspace snapshots in the shared store (a folder or an S3 bucket: ``artifacts/<run>/...``,
``snapshots/<run>/...``), and the tool-call rows of the run history. ``towline gc`` and
``/metrics`` need nothing else. Plan files in the store are addressed by their content,
shared by the runs that name them: they are not removed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote

from towline import history
from towline.activities import artifacts
from towline.activities.artifacts import safe_component
from towline.activities.workspace import remove_tree
from towline.config import workspaces_root
from towline.retention.policy import Kind
from towline.store import Store, open_store


class Holding(Protocol):
    """One kind of things that runs leave behind."""

    kind: Kind
    location: str

    def runs(self) -> dict[str, float]:
        """The runs it has things of, and when those last changed (seconds since epoch)."""
        ...

    def remove(self, run_id: str) -> None:
        """Remove everything it holds of ``run_id`` (nothing there is not an error)."""
        ...

    def usage(self) -> int:
        """Bytes it takes."""
        ...


class RunFolders:
    """``<root>/<run id>/...``: workspaces, artifacts."""

    def __init__(self, kind: Kind, root: Path) -> None:
        self.kind = kind
        self.root = root
        self.location = str(root)

    def runs(self) -> dict[str, float]:
        out: dict[str, float] = {}
        try:
            entries = list(os.scandir(self.root))
        except FileNotFoundError:
            return out
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
                continue
            touched = entry.stat(follow_symlinks=False).st_mtime
            try:  # a workstream's folder changes when its workspace is made or refilled
                for child in os.scandir(entry.path):
                    touched = max(touched, child.stat(follow_symlinks=False).st_mtime)
            except OSError:
                pass
            out[unquote(entry.name)] = touched
        return out

    def remove(self, run_id: str) -> None:
        remove_tree(self.root / safe_component(run_id))

    def usage(self) -> int:
        return folder_size(self.root)


class StoreRuns:
    """``<prefix><run id>/...`` in the shared store: artifacts, snapshots."""

    def __init__(self, kind: Kind, store: Store, prefix: str) -> None:
        self.kind = kind
        self.store = store
        self.prefix = prefix
        self.location = f"{store.location}/{prefix}"

    def runs(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for obj in self.store.list(self.prefix):
            run = unquote(obj.key[len(self.prefix) :].split("/", 1)[0])
            out[run] = max(out.get(run, 0.0), obj.modified)
        return out

    def remove(self, run_id: str) -> None:
        for obj in list(self.store.list(f"{self.prefix}{safe_component(run_id)}/")):
            self.store.delete(obj.key)

    def usage(self) -> int:
        return sum(obj.size for obj in self.store.list(self.prefix))


class HistoryRows:
    """The tool-call rows of the run history (``towline stats``, ETAs, ``timeout: auto``)."""

    kind: Kind = "history"

    def __init__(self, store: history.HistoryStore) -> None:
        self.store = store
        self.location = store.location

    def runs(self) -> dict[str, float]:
        return self.store.runs()

    def remove(self, run_id: str) -> None:
        self.store.remove_run(run_id)

    def usage(self) -> int:
        return self.store.sizes()["history"]


def folder_size(root: Path) -> int:
    """Bytes of the files under ``root`` (links not followed; what vanishes meanwhile skipped)."""
    total = 0
    stack = [str(root)]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                else:
                    total += entry.stat(follow_symlinks=False).st_size
            except OSError:
                continue
    return total


def local_holdings(store: history.HistoryStore | None = None) -> list[Holding]:
    """This machine's holdings, from towline's settings."""
    artifact_store, prefix = artifacts.artifact_store()
    return [
        RunFolders("workspaces", workspaces_root()),
        StoreRuns("snapshots", open_store(), "snapshots/"),
        StoreRuns("artifacts", artifact_store, prefix),
        HistoryRows(store or history.open_store()),
    ]


def usage(holdings: list[Holding], store: history.HistoryStore) -> dict[str, int]:
    """Bytes by kind, the cache's included (for ``/metrics``)."""
    out: dict[str, int] = {h.kind: h.usage() for h in holdings if h.kind != "history"}
    sizes = store.sizes() if store.exists() else {"history": 0, "cache": 0}
    out.update(sizes)
    return out
