"""What the worker depends on, checked for ``/readyz`` and shown on ``/metrics``.

Three dependencies, each checked with a cheap real operation within
:data:`CHECK_TIMEOUT`, afresh on each ``/readyz`` (and each scrape):

- ``temporal``: the Temporal server answers ``GetSystemInfo``;
- ``store``: the shared store (``TOWLINE_STORE``) lists: a folder exists, lists and is
  writable; a bucket answers a one-key listing;
- ``history``: the run history database opens and answers a query.

Each one's state is ``towline_dependency_up{dependency}``. The store's size
(``towline_store_objects`` and ``towline_store_bytes``, by the first part of the keys)
is measured by listing it, in a thread, at most every :data:`STORE_SIZE_MAX_AGE`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

from prometheus_client import REGISTRY, Gauge
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from towline.history import HistoryStore
from towline.store import Store

log = logging.getLogger("towline.worker")

CHECK_TIMEOUT = 2.0  # seconds each dependency has to answer
STORE_SIZE_MAX_AGE = 60.0  # seconds between two listings of the store
DEPENDENCIES = ("temporal", "store", "history")

DEPENDENCY_UP = Gauge(
    "towline_dependency_up",
    "1 while the dependency answers a cheap real operation (what /readyz checks), else 0",
    ["dependency"],
)


@dataclass(frozen=True)
class Check:
    """One dependency's answer: up, or down and why."""

    dependency: str
    up: bool
    reason: str = ""

    def __str__(self) -> str:
        return f"{self.dependency}: {self.reason}"


async def check(
    dependency: str,
    probe: Callable[[], Awaitable[object]],
    *,
    explain: Callable[[str], str] = lambda reason: reason,
    timeout: float = CHECK_TIMEOUT,
) -> Check:
    """Run ``probe()`` within ``timeout``; a failure's reason is its error's last line,
    passed through ``explain``. Sets the dependency's gauge."""
    try:
        await asyncio.wait_for(probe(), timeout)
        result = Check(dependency, True)
    except TimeoutError:
        result = Check(dependency, False, explain(f"no answer within {timeout:g}s"))
    except Exception as e:
        text = str(e).strip()
        reason = text.splitlines()[-1] if text else type(e).__name__
        result = Check(dependency, False, explain(reason))
    DEPENDENCY_UP.labels(dependency).set(1 if result.up else 0)
    return result


def prepare_store(store: Store) -> None:
    """Create a folder store that does not exist yet (a first worker, a fresh machine),
    so that its later disappearance (a removed folder, a lost mount) is news."""
    root = getattr(store, "root", None)
    if root is not None:
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            log.warning("cannot create the store folder %s: %s", root, e.strerror)


async def check_store(store: Store) -> Check:
    return await check(
        "store",
        lambda: asyncio.to_thread(store.probe),
        explain=lambda reason: (
            reason if store.location in reason else f"{store.location}: {reason}"
        ),
    )


async def check_history(history: HistoryStore) -> Check:
    return await check(
        "history",
        lambda: asyncio.to_thread(history.probe),
        explain=lambda r: r if history.location in r else f"{history.location}: {r}",
    )


class _StoreSize(Collector):
    """``towline_store_objects{area}`` and ``towline_store_bytes{area}``, as last listed."""

    def __init__(self) -> None:
        self.values: dict[str, tuple[int, int]] = {}
        self._listed_at = float("-inf")
        self._lock = asyncio.Lock()

    async def refresh(self, store: Store, *, max_age: float = STORE_SIZE_MAX_AGE) -> None:
        async with self._lock:
            loop = asyncio.get_running_loop()
            if loop.time() - self._listed_at < max_age:
                return
            self._listed_at = loop.time()  # a failed listing waits its turn too
            try:
                self.values = await asyncio.to_thread(store.size)
            except Exception as e:
                log.warning("cannot measure the store %s: %s", store.location, e)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        objects = GaugeMetricFamily(
            "towline_store_objects",
            "objects in the shared store, by the first part of their keys (listed at most "
            "every minute)",
            labels=["area"],
        )
        size = GaugeMetricFamily(
            "towline_store_bytes",
            "bytes in the shared store, by the first part of their keys (listed at most "
            "every minute)",
            labels=["area"],
        )
        for area, (count, total) in sorted(self.values.items()):
            objects.add_metric([area], count)
            size.add_metric([area], total)
        yield objects
        yield size


STORE_SIZE = _StoreSize()
REGISTRY.register(STORE_SIZE)
