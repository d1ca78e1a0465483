"""Recorded histories replay against today's workflow code.

A change to the Run, Workstream, Rollback or Agent workflows that would break runs already in
flight (a command added, removed or reordered without ``workflow.patched()``) makes
these fail. The histories come from ``python -m tests.histories.record``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from towline.worker.plugin import TowlinePlugin

HISTORIES = sorted((Path(__file__).parents[1] / "histories").glob("*.json"))


def test_there_are_histories_to_replay() -> None:
    assert len(HISTORIES) >= 8


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_recorded_history_replays_without_nondeterminism(path: Path) -> None:
    # What the worker is given: its workflows, converter, interceptors and sandbox.
    replayer = Replayer(workflows=[], plugins=[TowlinePlugin()])
    history = WorkflowHistory.from_json(path.stem, json.loads(path.read_text()))
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"
