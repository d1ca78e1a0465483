"""Plan files travel with the run: no worker reads the starter's disk.

A tool input field that names a file relative to the plan's folder (``patch.apply``'s
``patch``) is marked ``plan_file`` in its model. When a run starts, the starter
(:func:`pack`) replaces each such literal value that names a file it can read with a
reference to its content, ``{"$file": <as written>, "sha256": ..., "size": ...}``:
small files travel inline in the run's input (``text`` or ``base64``), larger ones go to
the shared store, content-addressed (``files/sha256/<hex>``). On the worker, the tool
decorator turns each reference back into a path (:func:`materialize`): a file in a
local cache under towline's folder, written once per content.

Values that are expressions, artifact references, or name no readable file stay as they
are (the tool then says what is wrong, as before).
"""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from towline.config import home
from towline.errors import ToolError
from towline.plan.spec import OnFailureSpec, PlanSpec
from towline.store import Store, open_store

MARK = "$file"
INLINE_MAX = 64 * 1024  # bytes: a file up to this size travels in the run's input...
INLINE_TOTAL = 256 * 1024  # ...while the run's inline files stay under this in all


def file_fields(model: type[BaseModel]) -> set[str]:
    """The fields of a tool's input model that name a file in the plan's folder."""
    out = set()
    for name, field in model.model_fields.items():
        extra = field.json_schema_extra
        if isinstance(extra, dict) and extra.get("plan_file"):
            out.add(field.alias or name)
    return out


def pack(plan: PlanSpec, plan_dir: Path, store: Store, fields: Mapping[str, set[str]]) -> PlanSpec:
    """``plan`` with every literal plan-file value replaced by a reference to its content.

    ``fields`` maps each tool to its plan-file fields (:func:`file_fields`). A plan that
    names no file is returned as it is (a plan of thousands of tasks is not copied).
    """
    if not any(
        isinstance(value := args.get(key), str) and _candidate(value, plan_dir)
        for tool, args in _calls(plan)
        for key in fields.get(tool, ())
    ):
        return plan
    out = plan.model_copy(deep=True)
    budget = [INLINE_TOTAL]
    for tool, args in _calls(out):
        for key in fields.get(tool, ()):
            value = args.get(key)
            if isinstance(value, str) and (ref := _reference(value, plan_dir, store, budget)):
                args[key] = ref
    return out


def _calls(plan: PlanSpec) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every tool call a plan writes down, as its tool and its (mutable) ``with``."""

    def fix(on_failure: OnFailureSpec | None) -> Iterator[tuple[str, dict[str, Any]]]:
        if on_failure is not None and on_failure.fix is not None:
            yield on_failure.fix.tool, on_failure.fix.with_

    yield from fix(plan.defaults.on_failure)
    for ws in plan.workstreams:
        yield from fix(ws.defaults.on_failure)
        for task in ws.tasks:
            yield task.tool, task.with_
            if task.rollback is not None:
                yield task.rollback.tool, task.rollback.with_
            yield from fix(task.on_failure)


def _candidate(value: str, plan_dir: Path) -> bool:
    """Whether a plan-file value names a file the starter can read."""
    return "${{" not in value and "://" not in value and (plan_dir / value).is_file()


def _reference(
    value: str, plan_dir: Path, store: Store, budget: list[int]
) -> dict[str, Any] | None:
    if not _candidate(value, plan_dir):
        return None
    path = plan_dir / value
    try:
        data = path.read_bytes()
    except OSError:
        return None
    digest = hashlib.sha256(data).hexdigest()
    ref: dict[str, Any] = {MARK: value, "sha256": digest, "size": len(data)}
    if len(data) <= min(INLINE_MAX, budget[0]):
        budget[0] -= len(data)
        try:
            ref["text"] = data.decode("utf-8")
        except UnicodeDecodeError:
            ref["base64"] = base64.b64encode(data).decode()
        return ref
    key = f"files/sha256/{digest}"
    if not store.exists(key):
        store.put(key, data)
    ref["stored"] = True
    return ref


def materialize(value: Any, store: Store | None = None) -> Any:
    """``value`` (a tool's ``with``) with each plan-file reference replaced by the path
    of a local copy of the file."""
    if isinstance(value, dict):
        if isinstance(value.get(MARK), str) and isinstance(value.get("sha256"), str):
            return str(_local_copy(value, store))
        return {k: materialize(v, store) for k, v in value.items()}
    if isinstance(value, list):
        return [materialize(v, store) for v in value]
    return value


def _local_copy(ref: dict[str, Any], store: Store | None) -> Path:
    digest = str(ref["sha256"])
    if not all(c in "0123456789abcdef" for c in digest) or len(digest) != 64:
        raise ValueError(f"bad plan file reference for {ref[MARK]!r}")
    name = os.path.basename(str(ref[MARK]).replace("\\", "/")) or "file"
    path = home() / "files" / digest / name
    if path.is_file():
        return path
    if "text" in ref:
        data = str(ref["text"]).encode("utf-8")
    elif "base64" in ref:
        data = base64.b64decode(ref["base64"])
    else:
        store = store or open_store()
        try:
            data = store.get(f"files/sha256/{digest}")
        except FileNotFoundError:
            raise ToolError(
                "validation",
                f"the plan file {ref[MARK]} is not in the store {store.location}",
                hint="the starter and the workers must share one store (TOWLINE_STORE)",
            ) from None
    if hashlib.sha256(data).hexdigest() != digest:
        raise ValueError(f"the plan file {ref[MARK]!r} does not match its sha256")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return path
