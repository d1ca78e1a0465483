"""`towline logs RUN TASK`: finding the task, and the pieces of its output it shows."""

from __future__ import annotations

from pathlib import Path

import pytest

from towline.activities.artifacts import write_artifact
from towline.starter.logs import Section, UnknownTask, find_task, sections
from towline.state import ErrorInfo, RunState, TaskState, WorkstreamState
from towline.toolcall import ToolContext

CTX = ToolContext(run_id="r", workstream="w", task="t", workspace="/ws", plan_dir="/p")


@pytest.fixture(autouse=True)
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TOWLINE_ARTIFACTS", str(tmp_path / "artifacts"))
    return tmp_path / "artifacts"


def _state() -> RunState:
    return RunState(
        run_id="r",
        plan="p",
        workstreams={
            "api": WorkstreamState(
                tasks={"build": TaskState(tool="shell"), "test": TaskState(tool="shell")}
            ),
            "web": WorkstreamState(
                tasks={"build": TaskState(tool="shell"), "lint": TaskState(tool="shell")}
            ),
        },
    )


def test_a_task_is_found_by_workstream_and_id_or_by_a_unique_id() -> None:
    assert find_task(_state(), "api.build")[0] == "api.build"
    assert find_task(_state(), "lint")[0] == "web.lint"


def test_an_unknown_or_ambiguous_task_is_explained() -> None:
    with pytest.raises(UnknownTask) as e:
        find_task(_state(), "api.tset")
    assert str(e.value) == (
        "unknown task 'api.tset' in run r (did you mean 'api.test'?); "
        "its tasks: api.build, api.test, web.build, web.lint"
    )
    with pytest.raises(UnknownTask, match="task 'build' is in several workstreams of run r"):
        find_task(_state(), "build")


def test_artifacts_referenced_from_the_outputs_are_shown() -> None:
    log = write_artifact(CTX, "shell.log", "all of it\n")
    big = write_artifact(CTX, "outputs-big.txt", "big value")
    task = TaskState(
        tool="shell",
        outputs={
            "exit_code": 0,
            "stdout": "tail",
            "log": log,
            "big": {"$artifact": big, "bytes": 9},
        },
    )

    assert sections(task) == [
        Section(f"log: {log}", b"all of it\n"),
        Section(f"big: {big}", b"big value"),
    ]


def test_without_artifacts_the_inline_output_and_the_error_are_shown() -> None:
    task = TaskState(
        tool="http",
        status="failed",
        outputs={"status": 503, "text": "busy"},
        error=ErrorInfo(category="tool", message="HTTP 503", output="busy"),
    )

    assert sections(task) == [
        Section("text", b"busy"),
        Section("output of the failed attempt", b"busy"),
        Section("error", b"tool: HTTP 503\n"),
    ]
    assert sections(TaskState(tool="echo", outputs={"a": 1})) == [
        Section("outputs", b'{\n  "a": 1\n}\n')
    ]


def test_a_missing_artifact_says_where_it_was_looked_for() -> None:
    task = TaskState(tool="shell", outputs={"log": "artifact://r/w/t/gone.log"})

    (part,) = sections(task)
    assert part.title == "log: artifact://r/w/t/gone.log"
    assert b"artifact not found" in part.content
    assert b"TOWLINE_ARTIFACTS" in part.content
