"""The worker's log formats: the ids of the run a line is about, in JSON or in text."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from towline.worker.logs import JsonFormatter, TextFormatter, record_ids, tool_call_ids


def _record(message: str = "hello", **extra: Any) -> logging.LogRecord:
    record = logging.LogRecord("temporalio.workflow", logging.INFO, __file__, 1, message, (), None)
    record.__dict__.update(extra)
    return record


def test_a_workstream_workflow_line_names_its_run_and_workstream() -> None:
    wf = {"workflow_id": "bump-7f3a2c/api", "workflow_type": "WorkstreamWorkflow", "attempt": 3}
    assert record_ids(_record(temporal_workflow=wf)) == {
        "run_id": "bump-7f3a2c",
        "workstream": "api",
    }  # the workflow task's attempt is not a task's attempt


def test_a_run_workflow_line_names_its_run() -> None:
    wf = {"workflow_id": "bump-7f3a2c", "workflow_type": "RunWorkflow"}
    assert record_ids(_record(temporal_workflow=wf)) == {"run_id": "bump-7f3a2c"}


def test_ids_given_outright_win() -> None:
    wf = {"workflow_id": "r/api", "workflow_type": "WorkstreamWorkflow"}
    record = _record(temporal_workflow=wf, towline={"task": "build", "attempt": 2})
    assert record_ids(record) == {"run_id": "r", "workstream": "api", "task": "build", "attempt": 2}


def test_a_line_logged_during_a_tool_call_carries_the_call_ids() -> None:
    token = tool_call_ids.set({"run_id": "r", "workstream": "api", "task": "t", "attempt": 1})
    try:
        line = json.loads(JsonFormatter().format(_record("from a library")))
    finally:
        tool_call_ids.reset(token)
    assert line["message"] == "from a library"
    assert (line["run_id"], line["workstream"], line["task"], line["attempt"]) == (
        "r",
        "api",
        "t",
        1,
    )
    assert record_ids(_record()) == {}  # and nothing once the call is over


def test_json_lines_hold_the_error_and_the_workflow_id() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = _record(
            "failed",
            exc_info=sys.exc_info(),
            temporal_workflow={"workflow_id": "r", "workflow_type": "RunWorkflow"},
        )
    line = json.loads(JsonFormatter().format(record))
    assert line["level"] == "info"
    assert line["workflow_id"] == "r"
    assert "ValueError: boom" in line["error"]
    assert line["time"].endswith("+00:00")


def test_text_lines_end_with_where_they_are_from() -> None:
    wf = {"workflow_id": "r/api", "workflow_type": "WorkstreamWorkflow"}
    line = TextFormatter().format(
        _record(temporal_workflow=wf, towline={"task": "t", "attempt": 2})
    )
    assert line.endswith("temporalio.workflow: hello [r/api.t#2]")
    assert TextFormatter().format(_record()).endswith("temporalio.workflow: hello")
