"""Where towline keeps its local files, and the names shared by the worker and the CLI."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_ADDRESS = "localhost:7233"
DEFAULT_NAMESPACE = "default"
DEFAULT_TASK_QUEUE = "towline"
DEFAULT_UI_PORT = 8233
DEFAULT_HTTP_PORT = 9464


class ConfigError(Exception):
    """A setting that cannot be used (a bad profile, keys file or certificate path): exit 2.

    The message names the setting (the file and key, or the variable) and what is wrong.
    """


def home() -> Path:
    """towline's local folder (``.towline/`` in the current directory unless ``TOWLINE_HOME``)."""
    return Path(os.environ.get("TOWLINE_HOME", ".towline")).resolve()


def workspaces_root() -> Path:
    return Path(os.environ.get("TOWLINE_WORKSPACES", home() / "workspaces")).resolve()
