"""Version N+1 of the workstream workflow, for tests/integration/test_upgrade.py.

A behaviour change of the kind a real release makes: before each task starts, N+1 waits a
short cool-down timer (a new command in the history). :class:`WorkstreamV2` guards it with
``workflow.patched()`` as docs/operations.md says every such change must be;
:class:`WorkstreamV2Unguarded` is the same change without the guard, to show what the guard
prevents. ``python -m tests.upgrade.v2 ADDRESS TASK_QUEUE`` runs a worker with N+1.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from datetime import timedelta

from temporalio import workflow

from towline.plan import expressions
from towline.state import WORKSTREAM_WORKFLOW, WorkstreamInput, WorkstreamState
from towline.workflows.task import TaskEnv
from towline.workflows.workstream import WorkstreamWorkflow

COOL_DOWN = "test-v2-cool-down"


def cool_down_summary(tid: str) -> str:
    return f"v2 cool-down before {tid}"


@workflow.defn(name=WORKSTREAM_WORKFLOW)
class WorkstreamV2(WorkstreamWorkflow):
    @workflow.run
    async def run(self, inp: WorkstreamInput) -> WorkstreamState:
        return await super().run(inp)

    def _start(self, tid: str, env: TaskEnv) -> None:
        self._running[tid] = asyncio.create_task(self._after_cool_down(tid, env, self._scope(env)))

    async def _after_cool_down(self, tid: str, env: TaskEnv, scope: expressions.Scope) -> None:
        if self._cool_down():
            await workflow.sleep(timedelta(milliseconds=50), summary=cool_down_summary(tid))
        await self._task(tid, env, scope)

    def _cool_down(self) -> bool:
        return workflow.patched(COOL_DOWN)


@workflow.defn(name=WORKSTREAM_WORKFLOW)
class WorkstreamV2Unguarded(WorkstreamV2):
    @workflow.run
    async def run(self, inp: WorkstreamInput) -> WorkstreamState:
        return await super().run(inp)

    def _cool_down(self) -> bool:
        return True


async def _main(address: str, task_queue: str) -> None:
    import contextlib

    from towline.worker.client import connect
    from towline.worker.main import build_tool_workers, build_worker
    from towline.worker.plugin import workflow_classes

    client = await connect(address, "default")
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    async with contextlib.AsyncExitStack() as stack:
        for w in (
            build_worker(client, task_queue, workflows=workflow_classes(workstream=WorkstreamV2)),
            *build_tool_workers(client, task_queue),
        ):
            await stack.enter_async_context(w)
        print("v2 worker polling", flush=True)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1], sys.argv[2]))
