"""Connecting to Temporal, the same way from the CLI, the worker and scripts.

Where to connect and how come from, strongest first: the explicit ``address`` and
``namespace`` given here (the CLI's flags), the environment (``TEMPORAL_ADDRESS``,
``TEMPORAL_NAMESPACE``, ``TEMPORAL_API_KEY``, ``TEMPORAL_TLS_*``, ``TOWLINE_API_KEY_FILE``),
the active towline profile (:mod:`towline.profiles`, which fills in those variables),
Temporal's own ``temporal.toml`` (``TEMPORAL_PROFILE``), and last the local defaults.
Nothing that was not given overrides anything.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client
from temporalio.envconfig import ClientConfigProfile, ClientConfigTLS
from temporalio.service import RPCError, RPCStatusCode, TLSConfig

from towline.config import DEFAULT_ADDRESS, DEFAULT_NAMESPACE, ConfigError
from towline.profiles import active as active_profile
from towline.worker.converter import data_converter

CONNECT_TIMEOUT = 5.0
API_KEY_FILE_ENV = "TOWLINE_API_KEY_FILE"

# The TLS settings, the variable Temporal reads each from, and the profile key setting it.
_TLS_FILES = (
    ("server_root_ca_cert", "TEMPORAL_TLS_SERVER_CA_CERT_PATH", "tls.server_ca_cert"),
    ("client_cert", "TEMPORAL_TLS_CLIENT_CERT_PATH", "tls.client_cert"),
    ("client_private_key", "TEMPORAL_TLS_CLIENT_KEY_PATH", "tls.client_key"),
)


class ServerUnreachable(Exception):
    """The Temporal server at ``address`` could not be reached."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(f"cannot reach the Temporal server at {address}: {reason}")
        self.address = address


class BadAddress(ValueError):
    """An address that cannot name a server (``localhost:99999``)."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(f"cannot use the Temporal server address {address!r}: {reason}")


class UnknownNamespace(LookupError):
    """The server answers but has no such namespace: a bad argument, not a bad server."""

    def __init__(self, namespace: str, address: str) -> None:
        super().__init__(
            f"the Temporal server at {address} has no namespace '{namespace}' "
            "(--namespace, env TEMPORAL_NAMESPACE)"
        )


@dataclass(frozen=True)
class Connection:
    """Where and how to connect, settled from every source."""

    address: str
    namespace: str
    tls: bool | TLSConfig = False
    api_key: str | None = None
    rpc_metadata: Mapping[str, str] = field(default_factory=dict)
    # What a person needs to fix a failed handshake: the CA file, whether a client
    # certificate was offered.
    server_ca_cert: str | None = None
    client_cert: str | None = None

    def connect_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {
            "target_host": self.address,
            "namespace": self.namespace,
            "tls": self.tls,
        }
        if self.api_key is not None:
            options["api_key"] = self.api_key
        if self.rpc_metadata:
            options["rpc_metadata"] = dict(self.rpc_metadata)
        return options


def where(variable: str, env: Mapping[str, str] = os.environ) -> str:
    """Who set ``variable``: the active profile's key, the environment, or neither."""
    activation = active_profile()
    if variable in activation.applied and activation.file is not None:
        from towline.profiles import VARIABLES

        key = next(k for k, v in VARIABLES.items() if v == variable)
        return f"profiles.{activation.profile}.{key} in {activation.file}"
    if env.get(variable):
        return variable
    return "temporal.toml"


def settle(
    address: str | None = None,
    namespace: str | None = None,
    *,
    plain: bool = False,
    env: Mapping[str, str] = os.environ,
) -> Connection:
    """The connection to make; :class:`ConfigError` for settings that cannot work.

    ``plain``: a local dev server, reached without TLS or API key whatever the profile says.
    """
    try:
        base = ClientConfigProfile.load(
            profile=env.get("TEMPORAL_PROFILE") or None,
            override_env_vars=dict(env),
            disable_file=plain,
        )
    except Exception as e:  # the SDK's loader raises plain errors for a bad temporal.toml
        raise ConfigError(f"Temporal's environment configuration (temporal.toml): {e}") from None
    address = address or base.address or DEFAULT_ADDRESS
    namespace = namespace or base.namespace or DEFAULT_NAMESPACE
    if plain:
        return Connection(address, namespace)
    api_key = _api_key(base, env)
    tls: bool | TLSConfig = False
    ca = cert = None
    if base.tls is not None and base.tls.disabled is not True:
        _check_tls_files(base.tls, env)
        ca, cert = _path(base.tls.server_root_ca_cert), _path(base.tls.client_cert)
        tls = base.tls.to_connect_tls_config()
    elif base.tls is None and api_key is not None:
        tls = True  # an API key always travels over TLS (the system's CAs)
    return Connection(
        address,
        namespace,
        tls=tls,
        api_key=api_key,
        rpc_metadata=dict(base.grpc_meta),
        server_ca_cert=ca,
        client_cert=cert,
    )


def _path(source: object) -> str | None:
    return str(source) if isinstance(source, Path) else ("(inline)" if source else None)


def _api_key(base: ClientConfigProfile, env: Mapping[str, str]) -> str | None:
    if env.get("TEMPORAL_API_KEY"):
        return env["TEMPORAL_API_KEY"].strip()
    if named := env.get(API_KEY_FILE_ENV):
        origin = where(API_KEY_FILE_ENV, env)
        try:
            key = Path(named).read_text().strip()
        except OSError as e:
            raise ConfigError(
                f"api_key_file ({origin}): cannot read {named}: {e.strerror}"
            ) from None
        if not key:
            raise ConfigError(f"api_key_file ({origin}): {named} is empty")
        return key
    return base.api_key


def _check_tls_files(tls: ClientConfigTLS, env: Mapping[str, str]) -> None:
    for attr, variable, key in _TLS_FILES:
        source = getattr(tls, attr)
        if isinstance(source, Path) and not source.is_file():
            raise ConfigError(f"{key} ({where(variable, env)}): file not found: {source}")
    if bool(tls.client_cert) != bool(tls.client_private_key):
        have, missing = (
            ("tls.client_cert", "tls.client_key")
            if tls.client_cert
            else ("tls.client_key", "tls.client_cert")
        )
        raise ConfigError(f"{have} is set but {missing} is not: mTLS needs both")


async def connect(
    address: str | None = None,
    namespace: str | None = None,
    *,
    timeout: float = CONNECT_TIMEOUT,
    plain: bool = False,
    **options: Any,
) -> Client:
    """Connect with towline's data converter, or raise :class:`ServerUnreachable` quickly
    (:class:`BadAddress` when the address cannot name a server).

    ``address`` and ``namespace`` win over every other source when given (see the module's
    docstring); ``options`` go to :meth:`Client.connect` as they are.
    """
    conn = settle(address, namespace, plain=plain)
    config = conn.connect_options() | options
    try:
        return await asyncio.wait_for(
            Client.connect(data_converter=data_converter(), **config), timeout
        )
    except TimeoutError:
        raise ServerUnreachable(conn.address, f"no answer within {timeout:g}s") from None
    except ValueError as e:  # the SDK's "invalid target URL: ..."
        raise BadAddress(conn.address, str(e)) from None
    except RuntimeError as e:
        raise ServerUnreachable(conn.address, _cause(str(e), conn)) from None


def _cause(error: str, conn: Connection) -> str:
    """What a failed connection means, in words a person can act on."""
    last = error.splitlines()[-1] if error else "unknown error"
    ca = (
        f"tls.server_ca_cert ({conn.server_ca_cert})" if conn.server_ca_cert else "the system's CAs"
    )
    if "UnknownIssuer" in error or "CERTIFICATE_VERIFY_FAILED" in error:
        return (
            f"TLS: the server's certificate is not signed by a CA this client trusts ({ca}); "
            f"set tls.server_ca_cert to the CA that signed it [{last}]"
        )
    if "NotValidForName" in error:
        return (
            "TLS: the server's certificate is not valid for the name this client expects; "
            f"set tls.server_name to a name it has [{last}]"
        )
    if "Unauthenticated" in error or "PermissionDenied" in error:
        what = "the API key" if conn.api_key else "no API key: set TEMPORAL_API_KEY or api_key_file"
        return f"the server refused the credentials ({what}) [{last}]"
    closed = any(
        sign in error
        for sign in ("close_notify", "UnexpectedEof", "connection closed", "BrokenPipe")
    )
    if conn.tls and not conn.client_cert and closed:
        return (
            "TLS: the server closed the connection after the handshake; it may require a "
            f"client certificate (mTLS): set tls.client_cert and tls.client_key [{last}]"
        )
    if not conn.tls and closed:
        return (
            "the server closed the connection; if it expects TLS, set tls.server_ca_cert "
            f"(or TEMPORAL_TLS=true for the system's CAs) [{last}]"
        )
    return last


async def check_namespace(client: Client, address: str) -> None:
    """Raise :class:`UnknownNamespace` if the server has no ``client.namespace``.

    Without this, every later call would fail with a "not found" that reads like an
    unknown run. Credentials that may not describe the namespace pass: their calls will
    tell.
    """
    try:
        await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=client.namespace), timeout=timedelta(seconds=10)
        )
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            raise UnknownNamespace(client.namespace, address) from None
        if e.status not in (RPCStatusCode.PERMISSION_DENIED, RPCStatusCode.UNIMPLEMENTED):
            raise


async def wait_until_serving(address: str, namespace: str, *, timeout: float = 60.0) -> Client:
    """Connect to a local dev server that is starting up, once its frontend answers calls.

    The dev server listens on its port a moment before its frontend is healthy
    ("Frontend is not healthy yet"); this waits that out, up to ``timeout`` seconds. The
    connection is plain (no TLS, no API key), whatever the active profile says.
    """
    from temporalio.api.workflowservice.v1 import GetSystemInfoRequest

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            client = await connect(address, namespace, plain=True)
            await client.workflow_service.get_system_info(GetSystemInfoRequest())
            return client
        except (ServerUnreachable, RPCError):
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.2)


async def has_poller(client: Client, task_queue: str) -> bool:
    """Whether some worker polls ``task_queue`` for workflow tasks right now."""
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

    resp = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
    )
    return bool(resp.pollers)
