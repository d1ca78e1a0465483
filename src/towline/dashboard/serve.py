"""The dashboard's address and token: ``towline dashboard`` (towline.starter.commands.dashboard)
and ``towline up`` print a link holding the answering token in its fragment
(``#token=...``): the page keeps it, and a fragment never reaches a server's logs or
another site's ``Referer``.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from towline.config import ConfigError

DEFAULT_PORT = 8234
TOKEN_FILE_ENV = "TOWLINE_DASHBOARD_TOKEN_FILE"
USER_HEADER_ENV = "TOWLINE_DASHBOARD_USER_HEADER"


def read_token(path: str | None) -> str:
    """The token in ``path``, or a new one when no file is named."""
    if not path:
        return secrets.token_urlsafe(24)
    try:
        token = Path(path).read_text().strip()
    except OSError as e:
        raise ConfigError(f"--token-file {path}: {e.strerror}") from None
    if len(token) < 16:
        raise ConfigError(f"--token-file {path}: the token must be at least 16 characters")
    return token


def write_token(path: Path) -> str:
    """A new token in ``path`` (readable by its owner only), unless it holds one."""
    try:
        token = path.read_text().strip()
        if len(token) >= 16:
            return token
    except OSError:
        pass
    token = secrets.token_urlsafe(24)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


def link(host: str, port: int, token: str) -> str:
    shown = "localhost" if host in ("127.0.0.1", "::1", "0.0.0.0", "::") else host
    return f"http://{shown}:{port}/#token={token}"
