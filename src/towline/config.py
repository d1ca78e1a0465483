"""Where towline keeps its local files, and the names shared by the worker and the CLI."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_ADDRESS = "localhost:7233"
DEFAULT_NAMESPACE = "default"
DEFAULT_TASK_QUEUE = "towline"
DEFAULT_UI_PORT = 8233
DEFAULT_HTTP_PORT = 9464


def home() -> Path:
    """towline's local folder (``.towline/`` in the current directory unless ``TOWLINE_HOME``)."""
    return Path(os.environ.get("TOWLINE_HOME", ".towline")).resolve()


def workspaces_root() -> Path:
    return Path(os.environ.get("TOWLINE_WORKSPACES", home() / "workspaces")).resolve()
