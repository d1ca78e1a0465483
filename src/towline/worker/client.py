"""Connecting to Temporal, the same way from the CLI, the worker and scripts.

TLS and API keys (Temporal Cloud) come from Temporal's own environment configuration
(``TEMPORAL_API_KEY``, ``TEMPORAL_TLS_*``, or a ``temporal.toml`` profile); the address and
namespace given here win over it.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client
from temporalio.envconfig import ClientConfig
from temporalio.service import RPCError, RPCStatusCode

from towline.worker.converter import DATA_CONVERTER

CONNECT_TIMEOUT = 5.0


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


async def connect(
    address: str, namespace: str, *, timeout: float = CONNECT_TIMEOUT, **options: Any
) -> Client:
    """Connect with towline's data converter, or raise :class:`ServerUnreachable` quickly
    (:class:`BadAddress` when ``address`` cannot name a server)."""
    config: dict[str, Any] = dict(ClientConfig.load_client_connect_config())
    config.update(target_host=address, namespace=namespace)
    config.update(options)
    try:
        return await asyncio.wait_for(
            Client.connect(data_converter=DATA_CONVERTER, **config), timeout
        )
    except TimeoutError:
        raise ServerUnreachable(address, f"no answer within {timeout:g}s") from None
    except ValueError as e:  # the SDK's "invalid target URL: ..."
        raise BadAddress(address, str(e)) from None
    except RuntimeError as e:
        reason = str(e).splitlines()[-1] if str(e) else type(e).__name__
        raise ServerUnreachable(address, reason) from None


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
    """Connect to a server that is starting up, once its frontend answers calls.

    The dev server listens on its port a moment before its frontend is healthy
    ("Frontend is not healthy yet"); this waits that out, up to ``timeout`` seconds.
    """
    from temporalio.api.workflowservice.v1 import GetSystemInfoRequest

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            client = await connect(address, namespace)
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
