"""The worker's log formats: the ids of the run a line is about, in JSON or in text."""

from __future__ import annotations

import io
import json
import logging
import sys
from typing import Any

from towline.worker.logs import (
    JsonFormatter,
    RedactingHandler,
    Redactor,
    TextFormatter,
    record_ids,
    tool_call_ids,
)


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


# Redaction: every line the worker's handler writes


SECRET = "sk-live-'q\"uote\\d-0123456789"


def _redacted(text: str, *values: str) -> str:
    return Redactor(lambda: list(values))(text)


def test_a_secret_is_hidden_whole_and_as_repr_or_json_quote_it() -> None:
    text = f"plain {SECRET} repr {SECRET!r} json {json.dumps(SECRET)}"
    assert _redacted(text, SECRET) == "plain *** repr '***' json \"***\""


def test_pieces_of_a_secret_cut_at_an_ellipsis_are_hidden() -> None:
    secret = "abcdefghijklmnop"
    text = "input_value='xxxxabcdefgh...mnop and yyyy' and 'zz\u2026ijklmnop'"
    assert _redacted(text, secret) == "input_value='xxxx***...*** and yyyy' and 'zz\u2026***'"
    assert _redacted("abc...", secret) == "abc..."  # too short a piece to tell


def test_the_longest_secret_is_hidden_whole_and_nothing_else_is_touched() -> None:
    assert _redacted("token=abc123 abc", "abc", "abc123") == "token=*** ***"
    assert _redacted("nothing here", "abc") == "nothing here"
    assert _redacted("nothing here") == "nothing here"


def test_the_handler_redacts_any_logger_with_its_traceback(tmp_path: Any) -> None:
    handler = RedactingHandler(Redactor(lambda: [SECRET]))
    handler.setFormatter(JsonFormatter())
    stream = io.StringIO()
    handler.setStream(stream)
    logger = logging.getLogger("some.library")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        try:
            raise ValueError(f"bad input {SECRET}")
        except ValueError:
            logger.exception("could not parse %s", SECRET)
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    line = json.loads(stream.getvalue())
    assert line["message"] == "could not parse ***"
    assert "ValueError: bad input ***" in line["error"]


def test_secrets_held_follow_the_secrets_file_as_it_changes(
    tmp_path: Any, monkeypatch: Any
) -> None:
    from towline.activities import secrets

    path = tmp_path / "secrets.env"
    path.write_text("A=first-value\n")
    monkeypatch.setenv("TOWLINE_SECRETS_FILE", str(path))
    monkeypatch.setenv("TOWLINE_SECRET_B", "from-env")
    assert secrets.held() == ["first-value", "from-env"]
    path.write_text("A=second-value-longer\n")
    assert secrets.held() == ["from-env", "second-value-longer"]
    path.write_text("not a secrets line\n")  # unreadable: the environment's still count
    assert secrets.held() == ["from-env"]
