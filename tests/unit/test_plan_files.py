"""Plan files travel with the run: packed by the starter, materialized on the worker."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from towline.activities import plan_files
from towline.activities.tools import TOOLS
from towline.activities.tools.patch import PatchInput
from towline.errors import ToolError
from towline.plan.load import check_data
from towline.store import FolderStore

FIELDS = {name: plan_files.file_fields(t.input_model) for name, t in TOOLS.items()}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TOWLINE_HOME", str(tmp_path / "worker-home"))
    return tmp_path / "worker-home"


def _plan(**patch_with: object) -> dict[str, object]:
    apply = {"id": "apply", "tool": "patch.apply", "with": patch_with}
    apply["rollback"] = {"tool": "patch.revert", "with": patch_with}
    return {
        "version": 1,
        "name": "p",
        "defaults": {
            "on_failure": {"strategy": "fix", "fix": {"tool": "patch.apply", "with": patch_with}}
        },
        "workstreams": [{"id": "w", "tasks": [apply]}],
    }


def test_patch_names_a_plan_file_and_nothing_else_does() -> None:
    assert plan_files.file_fields(PatchInput) == {"patch"}
    assert {tool for tool, fields in FIELDS.items() if fields} == {"patch.apply", "patch.revert"}


def test_every_literal_file_a_plan_names_travels_inline_when_small(
    tmp_path: Path, home: Path
) -> None:
    (tmp_path / "plan/patches").mkdir(parents=True)
    (tmp_path / "plan/patches/a.diff").write_text("--- a/x\n+++ b/x\n")
    store = FolderStore(tmp_path / "store")
    plan = check_data(_plan(patch="patches/a.diff"))

    packed = plan_files.pack(plan, tmp_path / "plan", store, FIELDS)

    task = packed.workstreams[0].tasks[0]
    assert packed.defaults.on_failure is not None
    assert packed.defaults.on_failure.fix is not None
    assert task.rollback is not None
    refs = [
        task.with_["patch"],
        task.rollback.with_["patch"],
        packed.defaults.on_failure.fix.with_["patch"],
    ]
    digest = hashlib.sha256(b"--- a/x\n+++ b/x\n").hexdigest()
    assert (
        refs
        == [{"$file": "patches/a.diff", "sha256": digest, "size": 16, "text": "--- a/x\n+++ b/x\n"}]
        * 3
    )
    assert plan.workstreams[0].tasks[0].with_["patch"] == "patches/a.diff"  # a copy
    assert not (tmp_path / "store").exists()  # small: nothing in the store
    # On a worker, the reference is a local copy of the file.
    (tmp_path / "plan/patches/a.diff").unlink()
    local = plan_files.materialize({"patch": refs[0], "strip": 1})
    assert Path(local["patch"]).read_text() == "--- a/x\n+++ b/x\n"
    assert local["strip"] == 1
    assert Path(local["patch"]).is_relative_to(home)


def test_a_large_file_goes_to_the_store_content_addressed(tmp_path: Path, home: Path) -> None:
    big = b"+" * (plan_files.INLINE_MAX + 1)
    (tmp_path / "big.diff").write_bytes(big)
    store = FolderStore(tmp_path / "store")

    packed = plan_files.pack(check_data(_plan(patch="big.diff")), tmp_path, store, FIELDS)

    ref = packed.workstreams[0].tasks[0].with_["patch"]
    digest = hashlib.sha256(big).hexdigest()
    assert ref == {"$file": "big.diff", "sha256": digest, "size": len(big), "stored": True}
    assert store.get(f"files/sha256/{digest}") == big
    # A worker whose store does not have it says so.
    with pytest.raises(ToolError, match="not in the store"):
        plan_files.materialize(ref, FolderStore(tmp_path / "another-store"))
    assert Path(plan_files.materialize(ref, store)).read_bytes() == big


def test_values_that_name_no_file_stay_as_they_are(tmp_path: Path) -> None:
    store = FolderStore(tmp_path / "store")
    for value in ("missing.diff", "${{ run.id }}.diff", "artifact://r/w/t/x.diff"):
        packed = plan_files.pack(check_data(_plan(patch=value)), tmp_path, store, FIELDS)
        assert packed.workstreams[0].tasks[0].with_["patch"] == value
    packed = plan_files.pack(check_data(_plan(diff="--- a/x\n")), tmp_path, store, FIELDS)
    assert packed.workstreams[0].tasks[0].with_ == {"diff": "--- a/x\n"}


def test_inline_files_share_a_budget_then_go_to_the_store(tmp_path: Path) -> None:
    count = plan_files.INLINE_TOTAL // plan_files.INLINE_MAX + 2
    tasks = []
    for i in range(count):
        (tmp_path / f"{i}.diff").write_text(str(i) * plan_files.INLINE_MAX)
        tasks.append({"id": f"t{i}", "tool": "patch.apply", "with": {"patch": f"{i}.diff"}})
    plan = check_data({"version": 1, "name": "p", "workstreams": [{"id": "w", "tasks": tasks}]})

    packed = plan_files.pack(plan, tmp_path, FolderStore(tmp_path / "store"), FIELDS)

    kinds = ["text" in t.with_["patch"] for t in packed.workstreams[0].tasks]
    assert kinds == [True] * (count - 2) + [False] * 2


def test_a_reference_whose_content_does_not_match_is_refused(home: Path) -> None:
    ref = {"$file": "a.diff", "sha256": "0" * 64, "size": 1, "text": "x"}
    with pytest.raises(ValueError, match="does not match its sha256"):
        plan_files.materialize(ref)
