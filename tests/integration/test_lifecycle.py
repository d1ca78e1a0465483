"""The task lifecycle under failure: generated runs on the dev server.

Each case is a generated plan with generated outcomes (tests/lifecycle.py), run by the
real workflows with the tools replaced by scripted fakes under their real names, and
checked against the invariants: the run ends; every task ends with a status consistent
with its needs and the policy; rollbacks ran exactly for the succeeded tasks that have
one, newest first, once each; nothing starts after a fail_fast stop; usage is the sum of
every attempt's. A quarter of the cases run on a worker that keeps no workflow in its
cache, so every workflow task replays the whole history, as after a worker's death.

They run on the real dev server, with waits of seconds, not on the time-skipping test
server: that server rejects a workflow task that cancels an activity which completed in
the same instant (ACTIVITY_UNKNOWN) and then never times the task out, so the run
sticks, where a real server hands the workflow a new task with the completion in it.
Multi-day waits are covered on the time-skipping server by test_multiday.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from temporalio.client import Client

from tests.lifecycle import LEDGER, check, describe, fake_registry, generate, run_case
from towline.starter import api
from towline.worker.main import build_tool_workers, build_worker

CASES = int(os.environ.get("TOWLINE_LIFECYCLE_CASES", "200"))
FIRST = int(os.environ.get("TOWLINE_LIFECYCLE_FIRST", "0"))
ONE = os.environ.get("TOWLINE_LIFECYCLE_SEED")
# Seeds that once broke an invariant, run every time besides the generated range. 294: a
# cancel while a fix call ended, with the budget spent meanwhile; the task tried again
# and waited for a raise that never comes in a stopped run (it fails about half the
# time without the fix: a matter of timing).
KNOWN = (294,)
AT_ONCE = 12
# Seconds a case may take; past them, a run that stands still for 30 s more (no new event
# anywhere in it) counts as a run that never ends.
CASE_TIMEOUT = 90.0

pytestmark = pytest.mark.timeout(max(600, CASES * 3))


@pytest.fixture(scope="module")
def lifecycle_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("lifecycle-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TOWLINE_HOME", str(home))
        yield home


@pytest.fixture(scope="module")
async def lifecycle_queues(client: Client, lifecycle_home: Path) -> AsyncIterator[tuple[str, str]]:
    """Two queues with scripted tools: one normal worker, one that caches nothing."""
    LEDGER.client = client
    registry = fake_registry()
    cached, replaying = (f"lc-{uuid.uuid4().hex[:6]}", f"lcr-{uuid.uuid4().hex[:6]}")
    async with contextlib.AsyncExitStack() as stack:
        for queue, cache in ((cached, 1000), (replaying, 0)):
            workers = [
                build_worker(
                    client,
                    queue,
                    sandboxed=True,
                    registry=registry,
                    max_cached_workflows=cache,
                    max_concurrent_activities=200,
                ),
                *build_tool_workers(client, queue, registry=registry),
            ]
            for w in workers:
                await stack.enter_async_context(w)
        yield cached, replaying


async def test_generated_runs_end_and_keep_the_lifecycle_invariants(
    client: Client, lifecycle_queues: tuple[str, str]
) -> None:
    seeds = [int(ONE)] if ONE else sorted({*range(FIRST, FIRST + CASES), *KNOWN})
    random.Random(FIRST).shuffle(seeds)  # mix slow and fast cases across batches
    cached, replaying = lifecycle_queues
    failures: list[str] = []
    gate = asyncio.Semaphore(AT_ONCE)

    async def one(seed: int) -> None:
        case = generate(seed)
        queue = replaying if case.replay_always else cached
        async with gate:
            try:
                state = await run_case(client, case, queue, timeout=CASE_TIMEOUT)
            except (TimeoutError, api.NoWorker):  # a query cut short by the timeout
                now = await describe(client, f"lc-{seed}")
                failures.append(
                    f"seed {seed}: the run did not end: still after {CASE_TIMEOUT:.0f} s ({now})"
                )
                return
        broken = check(case, state, LEDGER.of(f"lc-{seed}"))
        if broken:
            failures.append(f"seed {seed}: " + "; ".join(broken))

    await asyncio.gather(*(one(s) for s in seeds))
    print(
        f"lifecycle: {len(seeds)} generated runs, seeds {FIRST}..{FIRST + CASES - 1} and {KNOWN}",
        file=sys.stderr,
    )
    assert not failures, (
        f"{len(failures)} of {len(seeds)} runs broke an invariant "
        "(replay one with TOWLINE_LIFECYCLE_SEED=<seed>):\n" + "\n".join(sorted(failures)[:25])
    )
