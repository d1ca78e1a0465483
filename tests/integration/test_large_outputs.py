"""Outputs too large for workflow history go to the artifact store; history keeps refs."""

from __future__ import annotations

import json
import sys
from typing import Any

from tests.conftest import RunPlan
from tests.helpers import plan, ws
from towline.activities.artifacts import OUTPUT_CAP, read_artifact
from towline.stored import stored_ref

SIZE = OUTPUT_CAP + 10_000


def _print(tid: str, code: int) -> dict[str, Any]:
    script = f"import sys; sys.stdout.write('z' * {SIZE}); sys.exit({code})"
    return {
        "id": tid,
        "tool": "shell",
        "retry": {"max_attempts": 1},
        "with": {"command": [sys.executable, "-c", script], "max_output": 2 * OUTPUT_CAP},
    }


async def test_large_outputs_of_succeeded_and_failed_tasks_are_stored(run_plan: RunPlan) -> None:
    state = await run_plan(
        plan(ws("w", _print("ok", 0), _print("bad", 1)), failure_policy="continue")
    )

    for tid in ("ok", "bad"):
        task = state.workstreams["w"].tasks[tid]
        ref = stored_ref(task.outputs["stdout"])
        assert ref is not None, task.outputs["stdout"]
        assert ref.startswith(f"artifact://{state.run_id}/w/{tid}/outputs-{tid}-1-stdout")
        assert task.outputs["stdout"]["bytes"] == SIZE
        assert read_artifact(ref) == b"z" * SIZE
        assert task.outputs["stderr"] == ""  # small values stay inline
        assert len(json.dumps(task.outputs)) <= OUTPUT_CAP
    assert state.workstreams["w"].tasks["ok"].status == "succeeded"
    assert state.workstreams["w"].tasks["bad"].status == "failed"
