"""Workspaces: the folder a workstream's tasks run in, prepared once per workstream.

A workstream without ``repo`` gets a scratch folder under
:func:`towline.config.workspaces_root`; ``repo.path`` is used where it is (resolved
against the plan's folder). Each source kind has its own function, so adding one (a
clone of ``repo.url``, a git worktree) is a new function and a new branch in
:func:`prepare_workspace`. Preparing is idempotent: a retry after a crash finds the
same folder and carries on.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError

from towline.activities.artifacts import safe_component
from towline.config import workspaces_root
from towline.errors import hint_for
from towline.workflows.spec import RepoSpec


class WorkspaceRequest(BaseModel):
    run_id: str
    workstream: str
    repo: RepoSpec | None = None
    plan_dir: str


@activity.defn(name="prepare_workspace")
async def prepare_workspace(req: WorkspaceRequest) -> str:
    """Make the workstream's workspace ready and return its absolute path."""
    if req.repo is None:
        return str(_scratch(req.run_id, req.workstream))
    if req.repo.path is not None:
        return str(_local_path(req.plan_dir, req.repo.path, req.workstream))
    raise _invalid(
        f"workstream '{req.workstream}': repo.url is not supported yet; "
        "use repo.path with a local checkout"
    )


def _scratch(run_id: str, workstream: str) -> Path:
    """An empty folder of the workstream's own, kept after the run for inspection."""
    path = workspaces_root() / safe_component(run_id) / safe_component(workstream)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _local_path(plan_dir: str, path: str, workstream: str) -> Path:
    """A folder that already exists, given relative to the plan's folder (or absolute)."""
    resolved = (Path(plan_dir) / path).resolve()
    if not resolved.exists():
        raise _invalid(
            f"workstream '{workstream}': repo.path '{path}' does not exist (resolved to "
            f"{resolved}, relative to the plan's folder {plan_dir})"
        )
    if not resolved.is_dir():
        raise _invalid(
            f"workstream '{workstream}': repo.path '{path}' is not a directory ({resolved})"
        )
    return resolved


def _invalid(message: str) -> ApplicationError:
    """A plan mistake: the same attempt would fail the same way, so it is not retried."""
    details = {"category": "validation", "message": message, "hint": hint_for("validation")}
    return ApplicationError(message, details, type="validation", non_retryable=True)
