"""Named configuration profiles (``towline.toml``): one file for dev, staging and production.

A profile is a set of defaults for towline's environment variables. Activating it (at the
start of every ``towline`` command, from ``--profile`` or ``TOWLINE_PROFILE``) sets each
variable the profile names that is not already set, so an explicit variable, and a flag
above it, always wins; a flag that is not given never overrides anything. Processes
towline starts (the worker of ``towline up``) inherit the result.

Connection settings use the variables of Temporal's own environment configuration
(``TEMPORAL_ADDRESS``, ``TEMPORAL_TLS_*``...), which also reads Temporal's
``temporal.toml``: that file still works on its own, below a towline profile.

Secrets never go in the file: the API key comes from ``api_key_file`` (a path, e.g. a
systemd credential or a mounted secret) or ``TEMPORAL_API_KEY``; encryption keys from the
file ``encryption_keys`` names.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from towline.config import ConfigError
from towline.durations import parse_duration

CONFIG_ENV = "TOWLINE_CONFIG"
PROFILE_ENV = "TOWLINE_PROFILE"
FILE_NAME = "towline.toml"


def _duration(value: str | None) -> str | None:
    if value is not None:
        parse_duration(value)
    return value


class TLSSettings(BaseModel):
    """``[profiles.<name>.tls]``: the server's CA, the client's certificate and key (mTLS)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, description="false: plain connection despite the table")
    server_ca_cert: str | None = Field(
        None, description="PEM file of the CA that signed the server"
    )
    server_name: str | None = Field(None, description="the name the server's certificate has")
    client_cert: str | None = Field(None, description="PEM file of this client's certificate")
    client_key: str | None = Field(None, description="PEM file of this client's private key")


class RetentionSettings(BaseModel):
    """``[profiles.<name>.retention]``: how long a finished run's things are kept."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    workspaces: str | None = None
    snapshots: str | None = None
    artifacts: str | None = None
    history: str | None = None
    cache: str | None = None
    daily_at: str | None = Field(
        None, description="HH:MM (UTC): the worker installs a daily `towline gc` at this time"
    )

    _check = field_validator("workspaces", "artifacts", "history", "cache")(_duration)

    @field_validator("daily_at")
    @classmethod
    def _time_of_day(cls, value: str | None) -> str | None:
        if value is not None:
            parse_time_of_day(value)
        return value


class Profile(BaseModel):
    """``[profiles.<name>]``: every key is optional."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    address: str | None = None
    namespace: str | None = None
    task_queue: str | None = None
    api_key_file: str | None = None
    tls: TLSSettings | None = None
    encryption_keys: str | None = None
    home: str | None = None
    store: str | None = None
    history: str | None = None
    log_format: str | None = None
    log_level: str | None = None
    retention: RetentionSettings | None = None

    @field_validator("log_format")
    @classmethod
    def _log_format(cls, value: str | None) -> str | None:
        if value is not None and value not in ("text", "json"):
            raise ValueError(f"'{value}' is not a log format (text or json)")
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str | None) -> str | None:
        if value is not None and value not in ("debug", "info", "warning", "error"):
            raise ValueError(f"'{value}' is not a log level (debug, info, warning or error)")
        return value


class ConfigFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    default_profile: str | None = None
    profiles: dict[str, Profile] = Field(default_factory=dict)


# Each profile key and the variable it sets. Paths are resolved against the file's folder.
VARIABLES: dict[str, str] = {
    "address": "TEMPORAL_ADDRESS",
    "namespace": "TEMPORAL_NAMESPACE",
    "task_queue": "TOWLINE_TASK_QUEUE",
    "api_key_file": "TOWLINE_API_KEY_FILE",
    "tls.server_ca_cert": "TEMPORAL_TLS_SERVER_CA_CERT_PATH",
    "tls.server_name": "TEMPORAL_TLS_SERVER_NAME",
    "tls.client_cert": "TEMPORAL_TLS_CLIENT_CERT_PATH",
    "tls.client_key": "TEMPORAL_TLS_CLIENT_KEY_PATH",
    "tls.enabled": "TEMPORAL_TLS",
    "encryption_keys": "TOWLINE_ENCRYPTION_KEYS",
    "home": "TOWLINE_HOME",
    "store": "TOWLINE_STORE",
    "history": "TOWLINE_HISTORY",
    "log_format": "TOWLINE_LOG_FORMAT",
    "log_level": "TOWLINE_LOG_LEVEL",
    "retention.workspaces": "TOWLINE_RETENTION_WORKSPACES",
    "retention.snapshots": "TOWLINE_RETENTION_SNAPSHOTS",
    "retention.artifacts": "TOWLINE_RETENTION_ARTIFACTS",
    "retention.history": "TOWLINE_RETENTION_HISTORY",
    "retention.cache": "TOWLINE_RETENTION_CACHE",
    "retention.daily_at": "TOWLINE_GC_DAILY_AT",
}
_PATHS = {
    "api_key_file",
    "tls.server_ca_cert",
    "tls.client_cert",
    "tls.client_key",
    "encryption_keys",
    "home",
}


def parse_time_of_day(text: str) -> tuple[int, int]:
    """``"03:30"`` -> ``(3, 30)``; ValueError otherwise."""
    hour, sep, minute = text.partition(":")
    if sep and hour.isdigit() and minute.isdigit() and len(minute) == 2:
        h, m = int(hour), int(minute)
        if h < 24 and m < 60:
            return h, m
    raise ValueError(f"'{text}' is not a time of day (HH:MM, e.g. 03:30)")


def find_file(env: Mapping[str, str] = os.environ) -> Path | None:
    """``TOWLINE_CONFIG``, else ``./towline.toml``, else ``~/.config/towline/towline.toml``."""
    if named := env.get(CONFIG_ENV):
        return Path(named)
    config_home = Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    for candidate in (Path(FILE_NAME), config_home / "towline" / FILE_NAME):
        if candidate.is_file():
            return candidate
    return None


def load_file(path: Path) -> ConfigFile:
    """Read and check ``path``; :class:`ConfigError` names the key that is wrong."""
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file ({CONFIG_ENV})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read it: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    _refuse_api_keys(path, data)
    try:
        return ConfigFile.model_validate(data)
    except ValidationError as e:
        raise ConfigError("\n".join(_problem(path, err) for err in e.errors())) from None


def _refuse_api_keys(path: Path, data: dict[str, Any]) -> None:
    for name, profile in (data.get("profiles") or {}).items():
        if isinstance(profile, dict) and "api_key" in profile:
            raise ConfigError(
                f"{path}: profiles.{name}.api_key: an API key never goes in the file; "
                "put it in a file of its own and name that with api_key_file, "
                "or set TEMPORAL_API_KEY"
            )


def _problem(path: Path, err: Any) -> str:
    where = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        *parent, key = [str(p) for p in err["loc"]]
        known = _known_keys(parent)
        close = difflib.get_close_matches(key, known, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(known)})"
        return f"{path}: {where}: unknown key{hint}"
    message = str(err["msg"]).removeprefix("Value error, ")
    return f"{path}: {where}: {message}"


def _known_keys(parent: list[str]) -> list[str]:
    tables: dict[str, type[BaseModel]] = {"tls": TLSSettings, "retention": RetentionSettings}
    model: type[BaseModel] = ConfigFile
    if parent[:1] == ["profiles"]:
        model = tables.get(parent[2], Profile) if len(parent) > 2 else Profile
    return list(model.model_fields)


def settings_of(profile: Profile, base: Path) -> dict[str, str]:
    """The variables ``profile`` sets (key -> value), paths made absolute from ``base``."""
    flat: dict[str, Any] = {}
    for key, value in profile.model_dump(exclude_none=True).items():
        if isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    if profile.tls is not None and "tls.enabled" not in profile.tls.model_fields_set:
        flat.pop("tls.enabled", None)  # the table alone turns TLS on through its paths
    out: dict[str, str] = {}
    for key, value in flat.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif key in _PATHS:
            text = str((base / str(value)).expanduser().resolve())
        else:
            text = str(value)
        out[key] = text
    return out


@dataclass
class Activation:
    """What activating a profile did: which variables it set, and which it left alone."""

    file: Path | None = None
    profile: str | None = None
    applied: dict[str, str] = field(default_factory=dict)  # variable -> value set
    overridden: dict[str, str] = field(default_factory=dict)  # variable -> profile's value


_active = Activation()


def active() -> Activation:
    """The activation of this process (empty when no profile was selected)."""
    return _active


def activate(name: str | None = None, *, env: MutableMapping[str, str] = os.environ) -> Activation:
    """Select a profile (``name``, else ``TOWLINE_PROFILE``, else the file's default) and
    set the variables it names that are not set yet.

    No profile selected and none by default: nothing happens. A profile named but not
    found, or a file with mistakes: :class:`ConfigError`.
    """
    global _active
    name = name or env.get(PROFILE_ENV) or None
    path = find_file(env)
    if path is None:
        if name:
            raise ConfigError(
                f"profile '{name}' asked for, but there is no {FILE_NAME} (looked for "
                f"{CONFIG_ENV}, ./{FILE_NAME} and ~/.config/towline/{FILE_NAME})"
            )
        _active = Activation()
        return _active
    config = load_file(path)
    name = name or config.default_profile
    if not name:
        _active = Activation(file=path)
        return _active
    if name not in config.profiles:
        known = ", ".join(sorted(config.profiles)) or "none"
        raise ConfigError(f"{path}: no profile '{name}' (profiles: {known})")
    result = Activation(file=path, profile=name)
    for key, value in settings_of(config.profiles[name], path.parent.resolve()).items():
        var = VARIABLES[key]
        if env.get(var):
            result.overridden[var] = value
        else:
            env[var] = value
            result.applied[var] = value
    env[PROFILE_ENV] = name
    _active = result
    return result
