"""The bare Temporal equivalent of each scenario: what the engine alone costs here.

Minimal hand-written workflows, a no-op activity and a default worker (default data
converter, default sandbox), as a Temporal user would write them on their first day.
Run as its own process, like towline's worker:

    python -m bench.bare --address 127.0.0.1:7233 --task-queue bare --marks marks.txt
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    from bench.marks import FirstBodyMarks

NOOP = "bench_noop"
_TIMEOUT = timedelta(minutes=5)


@activity.defn(name=NOOP)
async def noop(value: str) -> str:
    return value


@workflow.defn(name="BareFanout")
class BareFanout:
    """``n`` activities at once, gathered."""

    @workflow.run
    async def run(self, n: int) -> int:
        results = await asyncio.gather(
            *(
                workflow.execute_activity(NOOP, str(i), start_to_close_timeout=_TIMEOUT)
                for i in range(n)
            )
        )
        return len(results)


@workflow.defn(name="BareChain")
class BareChain:
    """``n`` activities, each started when the one before has finished."""

    @workflow.run
    async def run(self, n: int) -> int:
        for i in range(n):
            await workflow.execute_activity(NOOP, str(i), start_to_close_timeout=_TIMEOUT)
        return n


# The search attributes towline's dev server registers (towline.state).
STATUS = SearchAttributeKey.for_keyword("TowlineStatus")
PLAN = SearchAttributeKey.for_keyword("TowlinePlan")


def run_search_attributes() -> TypedSearchAttributes:
    """What a towline run starts with: its status and its plan's name."""
    return TypedSearchAttributes(
        [SearchAttributePair(STATUS, "running"), SearchAttributePair(PLAN, "bench")]
    )


@workflow.defn(name="BareRun")
class BareRun:
    """The shape the contract gives a towline run, in bare Temporal: a parent workflow
    started with search attributes, its one workstream a child workflow ``<id>/main``
    (``BareChain`` or ``BareFanout``), and the status attribute set when it ends.

    It prices that shape alone: what any orchestrator built this way on Temporal pays
    before doing anything of its own.
    """

    @workflow.run
    async def run(self, kind: str, n: int) -> int:
        result: int = await workflow.execute_child_workflow(
            kind, n, id=f"{workflow.info().workflow_id}/main"
        )
        workflow.upsert_search_attributes([STATUS.value_set("succeeded")])
        return result


@workflow.defn(name="BareWide")
class BareWide:
    """The shape of a wide towline run in bare Temporal: a parent workflow starting ``n``
    child workflows ``<id>/<i>``, each a ``BareChain`` of ``steps`` activities, at most
    ``limit`` at a time (as ``settings.max_parallel_workstreams`` does), in order.

    No continue-as-new: a bare Temporal user's parent of a few thousand children fits in
    one history (three events per child and the workflow tasks between).
    """

    @workflow.run
    async def run(self, n: int, steps: int, limit: int) -> int:
        gate = asyncio.Semaphore(limit)
        wid = workflow.info().workflow_id

        async def child(i: int) -> int:
            async with gate:
                done: int = await workflow.execute_child_workflow(
                    "BareChain", steps, id=f"{wid}/{i}"
                )
                return done

        results = await asyncio.gather(*(child(i) for i in range(n)))
        workflow.upsert_search_attributes([STATUS.value_set("succeeded")])
        return sum(results)


@workflow.defn(name="BareReportingChain")
class BareReportingChain:
    """A ``BareChain`` that tells its parent's workflow id it has ended (a signal reaches
    whichever execution of the parent is current), then ends."""

    @workflow.run
    async def run(self, parent: str, n: int) -> int:
        for i in range(n):
            await workflow.execute_activity(NOOP, str(i), start_to_close_timeout=_TIMEOUT)
        await workflow.get_external_workflow_handle(parent).signal("ended", n)
        return n


@dataclass
class WideCarry:
    started: int = 0
    done: int = 0  # activities run by the children that have ended
    ended: int = 0


@workflow.defn(name="BareWideContinued")
class BareWideContinued:
    """``BareWide`` as a bare Temporal user writes it when its history must stay bounded:
    it continues-as-new when Temporal suggests it, with children in flight (started with
    the ABANDON parent-close policy), which report their end by signal to its workflow
    id. What a continue-as-new costs such a parent, for comparison with the run's."""

    def __init__(self) -> None:
        self._carry = WideCarry()

    @workflow.signal
    def ended(self, done: int) -> None:
        self._carry.ended += 1
        self._carry.done += done

    @workflow.run
    async def run(self, n: int, steps: int, limit: int, carry: WideCarry | None = None) -> int:
        if carry is not None:
            self._carry.started = carry.started
            self._carry.ended += carry.ended
            self._carry.done += carry.done
        c = self._carry
        wid = workflow.info().workflow_id
        while c.ended < n:
            while c.started < n and c.started - c.ended < limit:
                await workflow.start_child_workflow(
                    "BareReportingChain",
                    args=[wid, steps],
                    id=f"{wid}/{c.started}",
                    parent_close_policy=workflow.ParentClosePolicy.ABANDON,
                )
                c.started += 1
            if workflow.info().is_continue_as_new_suggested():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(args=[n, steps, limit, c])
            await workflow.wait_condition(_more_than(c, c.ended))
        workflow.upsert_search_attributes([STATUS.value_set("succeeded")])
        return c.done


def _more_than(c: WideCarry, ended: int) -> Callable[[], bool]:
    return lambda: c.ended > ended


WORKFLOWS = [BareFanout, BareChain, BareRun, BareWide, BareReportingChain, BareWideContinued]


async def _serve(address: str, task_queue: str, marks: Path) -> None:
    client = await Client.connect(address)
    worker = Worker(
        client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        activities=[noop],
        interceptors=[FirstBodyMarks(marks)],
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with worker:
        await stop.wait()


def main() -> None:
    p = argparse.ArgumentParser(description="the bare Temporal worker of the benchmark")
    p.add_argument("--address", required=True)
    p.add_argument("--task-queue", required=True)
    p.add_argument("--marks", type=Path, required=True)
    args = p.parse_args()
    asyncio.run(_serve(args.address, args.task_queue, args.marks))


if __name__ == "__main__":
    main()
