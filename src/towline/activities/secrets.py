"""Where the worker finds secrets: its environment, then an optional secrets file.

``${{ secrets.NAME }}`` in a task's ``with`` is replaced inside the worker (see
:func:`towline.activities.base.resolve_secrets`) by, in order:

1. the environment variable ``TOWLINE_SECRET_NAME``;
2. the line ``NAME=value`` of the file named by ``TOWLINE_SECRETS_FILE``.

The file is dotenv-shaped, the format most secret managers can write: one ``NAME=value``
per line, blank lines and ``#`` comments ignored, an optional ``export`` prefix, and a
value optionally wrapped in matching single or double quotes (taken literally, without
escapes). It is read on each use, so a rotated secret needs no worker restart.

:func:`values` lists every secret the worker holds, so output can be redacted of all of
them, not only of those a call used; :func:`held` is the same list, cheap enough to ask
for on every line the worker logs.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from towline.errors import ToolError

ENV_PREFIX = "TOWLINE_SECRET_"
FILE_ENV = "TOWLINE_SECRETS_FILE"

_LINE = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$")


def lookup(name: str) -> str | None:
    """The value of secret ``name``, or None when neither source has it."""
    value = os.environ.get(ENV_PREFIX + name)
    if value is not None:
        return value
    return _from_file().get(name)


def values() -> list[str]:
    """Every secret value the worker holds (environment and file), non-empty ones."""
    found = {v for k, v in os.environ.items() if k.startswith(ENV_PREFIX)}
    found.update(_from_file().values())
    return sorted(v for v in found if v)


_held: tuple[object, list[str]] | None = None


def held() -> list[str]:
    """:func:`values`, re-reading the secrets file only when it has changed.

    Never raises: with an unreadable file, only the environment's secrets are known
    here (the tool that needs one from the file reports the file's problem).
    """
    global _held
    env = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(ENV_PREFIX)))
    path = os.environ.get(FILE_ENV)
    try:
        stat = os.stat(path) if path else None
        key: object = (env, path, stat and (stat.st_mtime_ns, stat.st_size, stat.st_ino))
    except OSError:
        key = (env, path, None)
    if _held is not None and _held[0] == key:
        return _held[1]
    try:
        found = values()
    except ToolError:
        found = sorted({v for _, v in env if v})
    _held = (key, found)
    return found


def where(name: str) -> str:
    """Where a person should put secret ``name``: for messages."""
    path = os.environ.get(FILE_ENV)
    also = f" or a line {name}=... in {path}" if path else f" (or {FILE_ENV}, a NAME=value file)"
    return f"set {ENV_PREFIX}{name} in the worker's environment{also}"


def parse(text: str, *, source: str) -> dict[str, str]:
    """The secrets in a file's ``text``; a line that is not ``NAME=value`` is an error."""
    out: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _LINE.match(line)
        if m is None:
            # Never quote the line: it may be a secret with a typo in its name.
            raise ToolError(
                "system",
                f"secrets file {source}, line {number}: expected NAME=value",
                hint="fix the worker's secrets file; names are letters, digits and _",
            )
        name, value = m.group(1), m.group(2).strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[name] = value
    return out


def _from_file() -> dict[str, str]:
    path = os.environ.get(FILE_ENV)
    if not path:
        return {}
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ToolError(
            "system",
            f"cannot read the secrets file {path} ({FILE_ENV}): {e.strerror or e}",
            hint=f"fix {FILE_ENV} in the worker's environment, or the file's permissions",
        ) from None
    return parse(text, source=path)
