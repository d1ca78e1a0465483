"""Artifacts: large outputs (logs) live in the shared store, history keeps a reference.

Temporal payloads are limited to 2 MB, so a tool writes what may be large to the store
(:mod:`towline.store`, under ``artifacts/``; or the folder ``TOWLINE_ARTIFACTS`` when it
is set) and returns a reference ``artifact://<run_id>/<workstream>/<task>/<name>``.
A tool that writes an artifact as it goes (a command's log) writes a local file
(:func:`artifact_file`): the store's own file when the store is a folder, else a staging
file that is uploaded when the tool is done with it. Each part of a reference is one path
component, percent-encoded, so no id or name can reach outside the root; a reference read
back is checked the same way before it is turned into a path. Outputs a tool returns that
are still too large are moved here by the ``@tool`` decorator (:func:`store_large_outputs`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from towline.config import home
from towline.store import FolderStore, Store, open_store
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


def _key(ref: str) -> str:
    """The reference's path in the store; raises ``ValueError`` unless it is valid."""
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
    return "/".join(parts)


def artifact_store() -> tuple[Store, str]:
    """The store artifacts go to, and the prefix of their keys there."""
    folder = os.environ.get("TOWLINE_ARTIFACTS")
    if folder:
        return FolderStore(Path(folder), what="artifacts folder"), ""
    return open_store(), "artifacts/"


def artifact_path(ref: str) -> Path:
    """The local file a tool writes the artifact ``ref`` to; ``ValueError`` if ``ref`` is
    not a valid reference. Publish it with :func:`publish_artifact` (or write it inside
    :func:`artifact_file`).

    With a folder store it is the artifact's own file; with a remote store, a staging
    file in towline's local folder. A reference whose path would leave the store (``..``,
    absolute parts, a symlink pointing outside) is rejected.
    """
    key = _key(ref)
    store, prefix = artifact_store()
    local = store.local_path(prefix + key)
    if local is not None:
        return local
    return home() / "staging" / "artifacts" / key


def publish_artifact(ref: str) -> None:
    """Upload the file :func:`artifact_path` gave for ``ref``, when the store is remote."""
    key = _key(ref)
    store, prefix = artifact_store()
    if store.local_path(prefix + key) is not None:
        return
    staged = home() / "staging" / "artifacts" / key
    if staged.is_file():
        store.put_file(prefix + key, staged)
        staged.unlink(missing_ok=True)


@contextlib.contextmanager
def artifact_file(ref: str) -> Iterator[Path]:
    """A local file to write the artifact ``ref`` to, published when the block ends
    (whatever way it ends: the log of a failed or cancelled command is kept too)."""
    path = artifact_path(ref)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield path
    finally:
        publish_artifact(ref)


def write_artifact(ctx: ToolContext, name: str, data: bytes | str) -> str:
    """Store ``data`` as the task's artifact ``name`` and return its reference.

    Writing the same name again replaces it (a retried attempt is harmless); the
    replacement is atomic, so a reader never sees half of it.
    """
    ref = artifact_ref(ctx, name)
    store, prefix = artifact_store()
    store.put(prefix + _key(ref), data.encode() if isinstance(data, str) else data)
    return ref


def read_artifact(ref: str) -> bytes:
    """The content of the artifact ``ref``."""
    store, prefix = artifact_store()
    key = prefix + _key(ref)
    try:
        return store.get(key)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"artifact not found: {ref} (looked in {store.where(key)})"
        ) from None


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
