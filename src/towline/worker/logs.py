"""The worker's logs: plain text for people, or one JSON object a line for log pipelines.

Every line about a run carries its ids, wherever it comes from:

- workflow code logs through ``workflow.logger`` (silent during replay), which puts the
  workflow's details in ``extra["temporal_workflow"]``: a run workflow's id is the run
  id, a workstream's is ``<run_id>/<workstream>`` (docs/operations.md, "What the Web UI
  shows");
- ``activity.logger`` puts the activity's in ``extra["temporal_activity"]``;
- any line logged during a tool call (by ``activity.logger`` or any other logger) gets
  the task and attempt from :data:`tool_call_ids`, which the worker's activity
  interceptor sets for the call;
- towline's own lines may say them outright in ``extra["towline"]``, which wins.

Whatever logs it (towline, the SDK, a library such as the MCP client quoting what a
server printed), no line leaves the process with a secret the worker holds in it: the
one handler :func:`configure` installs redacts each formatted line (:class:`Redactor`).
"""

from __future__ import annotations

import contextvars
import datetime
import json
import logging
import re
from collections.abc import Callable
from typing import Any, Literal, TextIO

from temporalio import activity, workflow

from towline.activities import secrets
from towline.state import RUN_WORKFLOW, WORKSTREAM_WORKFLOW

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[str, ...] = ("text", "json")

# The ids of the tool call running in this context (run_id, workstream, task, attempt).
tool_call_ids: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "towline_tool_call_ids", default=None
)

_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_ID_KEYS = ("run_id", "workstream", "task", "attempt")


def record_ids(record: logging.LogRecord) -> dict[str, Any]:
    """The run, workstream, task and attempt a log record is about, as far as known."""
    ids: dict[str, Any] = {}
    wf = getattr(record, "temporal_workflow", None)
    if isinstance(wf, dict):
        ids.update(_from_workflow_id(wf.get("workflow_id"), wf.get("workflow_type")))
    act = getattr(record, "temporal_activity", None)
    if isinstance(act, dict):
        ids.update(_from_workflow_id(act.get("workflow_id"), act.get("workflow_type")))
    ids.update(tool_call_ids.get() or {})
    explicit = getattr(record, "towline", None)
    if isinstance(explicit, dict):
        ids.update(explicit)
    return {k: ids[k] for k in _ID_KEYS if ids.get(k) is not None}


def _from_workflow_id(workflow_id: object, workflow_type: object) -> dict[str, str]:
    if not isinstance(workflow_id, str):
        return {}
    if workflow_type == WORKSTREAM_WORKFLOW:
        run_id, _, workstream = workflow_id.rpartition("/")
        return {"run_id": run_id, "workstream": workstream}
    if workflow_type == RUN_WORKFLOW:
        return {"run_id": workflow_id}
    return {}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, the ids, and any error."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **record_ids(record),
        }
        wf = getattr(record, "temporal_workflow", None)
        if isinstance(wf, dict) and wf.get("workflow_id"):
            out["workflow_id"] = wf["workflow_id"]
        act = getattr(record, "temporal_activity", None)
        if isinstance(act, dict) and act.get("activity_type"):
            out["tool"] = act["activity_type"]
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    """The classic line, with ``[run/workstream.task#attempt]`` when it is about a task."""

    def __init__(self) -> None:
        super().__init__(_TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = record_ids(record)
        if not ids:
            return line
        where = ids.get("run_id", "")
        if "workstream" in ids:
            where += f"/{ids['workstream']}"
        if "task" in ids:
            where += f".{ids['task']}"
        if "attempt" in ids:
            where += f"#{ids['attempt']}"
        return f"{line} [{where}]"


_REDACTED = "***"
_FRAGMENT = 4  # characters of a secret cut short by an ellipsis that are still hidden
_ELLIPSES = (r"\.\.\.", "\u2026")


class Redactor:
    """Hides secret values in text: whole, as ``repr`` or JSON would quote them, and the
    pieces of one that a truncating formatter (pydantic's ``input_value='abc...xyz'``)
    cut at an ellipsis.

    ``held`` gives the values to hide; the pattern is rebuilt only when they change.
    """

    def __init__(self, held: Callable[[], list[str]] = secrets.held) -> None:
        self._held = held
        self._key: tuple[str, ...] | None = None
        self._pattern: re.Pattern[str] | None = None

    def __call__(self, text: str) -> str:
        values = tuple(self._held())
        if values != self._key:
            self._key, self._pattern = values, _pattern(values)
        return self._pattern.sub(_REDACTED, text) if self._pattern is not None else text


def _pattern(values: tuple[str, ...]) -> re.Pattern[str] | None:
    forms = {f for v in values if v for f in (v, repr(v)[1:-1], json.dumps(v)[1:-1])}
    if not forms:
        return None
    whole = [re.escape(f) for f in sorted(forms, key=len, reverse=True)]
    pieces: list[str] = []
    for v in values:
        if len(v) > _FRAGMENT:
            cuts = range(len(v) - 1, _FRAGMENT - 1, -1)
            before = "|".join(re.escape(v[:k]) for k in cuts)
            after = "|".join(re.escape(v[-k:]) for k in cuts)
            pieces.append(f"(?:{before})(?={'|'.join(_ELLIPSES)})")
            pieces.extend(f"(?<={e})(?:{after})" for e in _ELLIPSES)
    return re.compile("|".join(whole + pieces))


class RedactingHandler(logging.StreamHandler[TextIO]):
    """A stream handler whose every line, message, traceback and fields alike, is
    redacted of the worker's secrets."""

    def __init__(self, redact: Callable[[str], str] | None = None) -> None:
        super().__init__()
        self.redact = redact or Redactor()

    def format(self, record: logging.LogRecord) -> str:
        return self.redact(super().format(record))


def configure(fmt: LogFormat = "text", *, level: int | str = logging.INFO) -> None:
    """Send the process's logs to stderr in ``fmt``, replacing any handler set before.

    Every logger's records, and Python's warnings, go through one
    :class:`RedactingHandler`.
    """
    handler = RedactingHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)
    # The SDK appends the workflow's or activity's details to each message; the ids
    # already have their own fields (json) or bracket (text).
    workflow.logger.workflow_info_on_message = False
    activity.logger.activity_info_on_message = False
