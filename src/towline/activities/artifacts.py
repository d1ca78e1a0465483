"""The local artifact store: large outputs (logs) live here, history keeps a reference.

Temporal payloads are limited to 2 MB, so a tool writes what may be large to a file under
:func:`towline.config.artifacts_root` and returns a reference
``artifact://<run_id>/<workstream>/<task>/<name>``. Each part of a reference is one path
component, percent-encoded, so no id or name can reach outside the root; a reference read
back is checked the same way before it is turned into a path. Outputs a tool returns that
are still too large are moved here by the ``@tool`` decorator (:func:`store_large_outputs`).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from towline.config import artifacts_root
from towline.stored import STORED_KEY

if TYPE_CHECKING:
    from towline.toolcall import ToolContext

SCHEME = "artifact://"
_PARTS = 4  # run_id / workstream / task / name
_COMPONENT = re.compile(r"^[A-Za-z0-9._~%-]+$")
_MAX_COMPONENT = 200  # bytes; file systems allow 255 per name


def safe_component(value: str) -> str:
    """``value`` as one file name: percent-encoded, never ``.`` or ``..``.

    The encoding is one-to-one, so two different ids never share a folder.
    """
    if not value:
        raise ValueError("an empty name cannot be a file name")
    encoded = quote(value, safe="")
    if encoded in (".", ".."):
        encoded = encoded.replace(".", "%2E")  # quote() never writes these, so no clash
    if len(encoded) > _MAX_COMPONENT:
        raise ValueError(f"name too long for a file name ({len(encoded)} bytes): {value[:40]}...")
    return encoded


def artifact_ref(ctx: ToolContext, name: str) -> str:
    """The reference of the task's artifact ``name`` (nothing is written)."""
    parts = (ctx.run_id, ctx.workstream, ctx.task, name)
    return SCHEME + "/".join(safe_component(p) for p in parts)


def artifact_path(ref: str) -> Path:
    """The file behind ``ref``; raises ``ValueError`` unless it is a valid reference.

    The file need not exist yet. A reference whose path would leave the artifacts root
    (``..``, absolute parts, a symlink pointing outside) is rejected.
    """
    if not ref.startswith(SCHEME):
        raise ValueError(f"not an artifact reference (expected {SCHEME}...): {ref!r}")
    parts = ref[len(SCHEME) :].split("/")
    if len(parts) != _PARTS:
        raise ValueError(
            f"not an artifact reference (expected {SCHEME}<run>/<workstream>/<task>/<name>): "
            f"{ref!r}"
        )
    for part in parts:
        if not _COMPONENT.match(part) or part in (".", ".."):
            raise ValueError(f"bad component {part!r} in artifact reference {ref!r}")
    root = artifacts_root()
    path = root.joinpath(*parts)
    if not path.resolve().is_relative_to(root.resolve()):
        raise ValueError(f"artifact reference {ref!r} points outside the artifacts folder")
    return path


def write_artifact(ctx: ToolContext, name: str, data: bytes | str) -> str:
    """Store ``data`` as the task's artifact ``name`` and return its reference.

    Writing the same name again replaces the file (a retried attempt is harmless); the
    replacement is atomic, so a reader never sees half a file.
    """
    ref = artifact_ref(ctx, name)
    path = artifact_path(ref)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return ref


def read_artifact(ref: str) -> bytes:
    """The content of the artifact ``ref``."""
    path = artifact_path(ref)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"artifact not found: {ref} (looked in {path})") from None


OUTPUT_CAP = 16 * 1024
"""Bytes of JSON a task's outputs may take in workflow state (history, query answers,
continue-as-new inputs); larger values are stored and travel by reference.

Small enough that a workstream of many tasks stays far below Temporal's 2 MB payload
limit whatever its tools print (shell keeps 64 KiB tails: those are stored); a tool
given a stored output as input gets its content back (towline.activities.base).
"""
ARTIFACT_KEY = STORED_KEY


def store_large_outputs(
    ctx: ToolContext, outputs: dict[str, Any], *, prefix: str, cap: int = OUTPUT_CAP
) -> dict[str, Any]:
    """``outputs``, with its largest values moved to artifacts until the rest fits ``cap``.

    Each moved value becomes ``{"$artifact": <ref>, "bytes": <size>}``: a string is stored
    as its text (``<prefix>-<key>.txt``), anything else as JSON (``<prefix>-<key>.json``).
    Small values (exit codes, statuses) stay inline, so expressions can still use them.
    ``towline logs RUN TASK`` prints the moved values.
    """
    total = _json_size(outputs)
    if total <= cap:
        return outputs
    out = dict(outputs)
    sizes = {key: _json_size(value) for key, value in outputs.items()}
    for key in sorted(sizes, key=lambda k: sizes[k], reverse=True):
        if total <= cap:
            break
        value = out[key]
        if isinstance(value, str):
            data, suffix = value.encode(), "txt"
        else:
            data, suffix = json.dumps(value, indent=2, default=str).encode(), "json"
        stub = {
            ARTIFACT_KEY: write_artifact(ctx, f"{prefix}-{key}.{suffix}", data),
            "bytes": len(data),
        }
        out[key] = stub
        total += _json_size(stub) - sizes[key]
    return out


def _json_size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, default=str).encode())
