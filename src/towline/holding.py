"""What workflows and workers say to each other about a held workspace.

A workstream's workspace lives on one worker, its *holder*; every call that touches it
goes to the holder's own task queue (:mod:`towline.workflows.affinity`). After each
call that may change it, the holder saves a :class:`Snapshot` of it to the shared store
(:mod:`towline.activities.snapshots`), and the workflow keeps the newest one that
succeeded: when the holder dies, another worker holds the workspace anew from that
snapshot. Pure data, imported by workflows and activities alike.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from towline.plan.spec import RepoSpec


class Snapshot(BaseModel):
    """A workspace as a succeeded call left it, saved in the store."""

    model_config = ConfigDict(frozen=True)

    key: str = Field(description="its key in the store")
    base: str | None = Field(
        None, description="the commit it is a bundle against (what a fresh clone has)"
    )
    holding: int = Field(0, description="the holding it was taken in (1 + takeovers)")
    taken_ns: int = Field(description="when it was taken, by its holder's monotonic clock")


class SnapshotRequest(BaseModel):
    """Sent with a call that may change the workspace: save it once the call succeeds."""

    model_config = ConfigDict(frozen=True)

    run_id: str = Field(description="the run whose workspace it is (first of a retry chain)")
    workstream: str
    base: str | None = None
    holding: int = Field(0, description="which holding of the workspace this is")


class HeldWorkspace(BaseModel):
    """Where a workspace is held: its folder, on the worker polling ``queue``."""

    model_config = ConfigDict(frozen=True)

    path: str
    queue: str | None = Field(
        None,
        description="the holder's own task queue; None when its worker has none (workers "
        "that share one disk), and calls go to the shared queue",
    )
    base: str | None = Field(None, description="the commit the workspace was prepared at")


class Restore(BaseModel):
    """Hold a workspace anew: rebuilt from its source, then ``snapshot`` applied (if any)."""

    model_config = ConfigDict(frozen=True)

    snapshot: Snapshot | None = None


class HoldRequest(BaseModel):
    """Make a workstream's workspace ready on the worker that runs this, and hold it."""

    run_id: str
    workstream: str
    repo: RepoSpec | None = None
    plan_dir: str
    restore: Restore | None = Field(
        None, description="rebuild it from its source and this snapshot, whatever is there"
    )


class Holding(BaseModel):
    """A workstream's workspace as its workflow knows it: who holds it, and the newest
    snapshot of a call that succeeded there (what a takeover restores)."""

    held: HeldWorkspace
    number: int = Field(
        1,
        description="1 for the first holder, +1 for each takeover; a workspace restored "
        "at its start (a retry) counts on from its snapshot's",
    )
    snapshot: Snapshot | None = None


def newer(a: Snapshot | None, b: Snapshot | None) -> Snapshot | None:
    """The later of two snapshots, either may be missing.

    Within one holding, the holder's monotonic clock orders them (a call that ends last
    saw the changes of those that ended before); a takeover starts a new holding only
    once every call to the old holder has ended, so a later holding is later.
    """
    if a is None:
        return b
    if b is None:
        return a
    return b if (b.holding, b.taken_ns) >= (a.holding, a.taken_ns) else a
