"""Outputs too large for workflow history move to artifacts, largest first; the rest stay."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from towline.activities.artifacts import read_artifact, store_large_outputs
from towline.stored import stored_ref
from towline.toolcall import ToolContext


@pytest.fixture(autouse=True)
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TOWLINE_ARTIFACTS", str(tmp_path / "artifacts"))
    return tmp_path / "artifacts"


CTX = ToolContext(run_id="r", workstream="w", task="t", workspace="/ws", plan_dir="/p")


def test_outputs_under_the_cap_are_kept_as_they_are(root: Path) -> None:
    outputs = {"exit_code": 0, "stdout": "x" * 100}

    assert store_large_outputs(CTX, outputs, prefix="p", cap=1000) is outputs
    assert not root.exists()


def test_the_largest_values_move_until_the_rest_fits() -> None:
    outputs = {"exit_code": 0, "small": "s" * 300, "big": "b" * 2000, "data": {"k": ["v"] * 200}}

    out = store_large_outputs(CTX, outputs, prefix="outputs-t-1", cap=1000)

    assert out["exit_code"] == 0
    assert out["small"] == "s" * 300
    assert out["big"] == {"$artifact": "artifact://r/w/t/outputs-t-1-big.txt", "bytes": 2000}
    ref = stored_ref(out["data"])
    assert ref == "artifact://r/w/t/outputs-t-1-data.json"
    assert json.loads(read_artifact(ref)) == {"k": ["v"] * 200}
    assert read_artifact(out["big"]["$artifact"]) == b"b" * 2000
    assert len(json.dumps(out)) <= 1000


def test_stored_ref_recognises_only_moved_values() -> None:
    assert stored_ref({"$artifact": "artifact://r/w/t/x"}) == "artifact://r/w/t/x"
    assert stored_ref("artifact://r/w/t/x") is None
    assert stored_ref({"other": 1}) is None
