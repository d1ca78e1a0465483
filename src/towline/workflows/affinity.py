"""Affinity: every call that touches a workspace runs on the worker that holds it.

Temporal's worker-specific task queue pattern. Each ``towline worker`` also polls a task
queue of its own (:func:`towline.worker.main.holder_queue_for`). A workstream holds its
workspace with the ``hold_workspace`` activity, on the shared queue (any live worker),
which answers with the folder and the holder's queue; from then on every call that
touches the workspace (tools that need it, fix calls, rollbacks, the clean-up) goes to
that queue. Tools that need no workspace (``http``, ``llm``, ``echo``) stay on the shared
queue, so load spreads.

Losing the holder loses nothing. Calls to it have a schedule-to-start timeout and a
heartbeat timeout (together :func:`timeouts` of the plan's ``settings.takeover``); one
that fails by either has met a dead holder. Then the workflow waits until no other call
to that holder is in flight, holds the workspace anew on the shared queue, from its
newest snapshot of a succeeded call (:mod:`towline.activities.snapshots`), and makes the
call again there. A call that succeeded is never made again.

:class:`Affinity` is the workflow side: deterministic, it only schedules activities.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, TimeoutError, TimeoutType

from towline.catalogue import facts
from towline.holding import HeldWorkspace, Holding, HoldRequest, Restore, SnapshotRequest, newer
from towline.plan.spec import WorkstreamSpec
from towline.state import WorkstreamInput, WorkstreamState
from towline.toolcall import ToolCall, ToolResult

# Takeovers for one call, after which it fails: a tool that kills every worker it runs
# on must not take the fleet down one worker at a time.
MAX_TAKEOVERS = 3


def timeouts(bound: timedelta) -> tuple[timedelta, timedelta]:
    """The heartbeat and schedule-to-start timeouts of calls to a holder.

    A running call notices a dead holder by its heartbeat timeout; the retry Temporal
    then schedules on the holder's queue, or a new call, by its schedule-to-start
    timeout. A third of the bound each leaves a third for the task's retry interval.
    """
    third = bound / 3
    return third, third


def holder_lost(err: BaseException) -> bool:
    """Whether a call failed because the worker holding the workspace is gone."""
    cause = err.cause if isinstance(err, ActivityError) else None
    return isinstance(cause, TimeoutError) and cause.type in (
        TimeoutType.SCHEDULE_TO_START,
        TimeoutType.HEARTBEAT,
    )


def snapshot_request(
    tool: str, run_id: str, workstream: str, holding: Holding
) -> SnapshotRequest | None:
    """What a call of ``tool`` is asked to save once it succeeds: None when the tool
    cannot change the workspace (``test_gate`` by declaration, ``echo``)."""
    if not facts(tool).changes_workspace:
        return None
    return SnapshotRequest(
        run_id=run_id, workstream=workstream, base=holding.held.base, holding=holding.number
    )


class Affinity:
    """One workstream's held workspace, and the calls routed to it."""

    def __init__(
        self,
        *,
        run_id: str,
        spec: WorkstreamSpec,
        plan_dir: str,
        bound: timedelta,
        holding: Holding | None = None,
    ) -> None:
        self.run_id = run_id  # whose workspace it is: the first run of a retry chain
        self.spec = spec
        self.plan_dir = plan_dir
        self.bound = bound
        self.holding = holding
        self._in_flight = 0  # calls to the current holder not yet ended
        self._taking_over = False

    async def hold(self, restore: Restore | None) -> str:
        """Hold the workspace (unless held already, as after continue-as-new); its path.

        ``restore``: from a snapshot (a retry's start), which is then the newest, and
        older than any this holding takes (another machine's clock cannot say so).
        """
        if self.holding is None:
            snapshot = restore.snapshot if restore is not None else None
            self.holding = Holding(
                held=await self._hold(restore),
                number=snapshot.holding + 1 if snapshot is not None else 1,
                snapshot=snapshot,
            )
        return self.holding.held.path

    async def _hold(self, restore: Restore | None) -> HeldWorkspace:
        arg = HoldRequest(
            run_id=self.run_id,
            workstream=self.spec.id,
            repo=self.spec.repo,
            plan_dir=self.plan_dir,
            restore=restore,
        )
        options: dict[str, Any] = {
            "result_type": HeldWorkspace,
            "summary": f"workspace for {self.spec.id}",
            "start_to_close_timeout": timedelta(minutes=30),
            "retry_policy": RetryPolicy(
                maximum_attempts=5, non_retryable_error_types=["validation"]
            ),
        }
        if self.spec.repo is None:
            # A scratch folder is made in milliseconds: in the worker running this
            # workflow task, which then holds it.
            held: HeldWorkspace = await workflow.execute_local_activity(
                "hold_workspace", arg, **options
            )
        else:
            held = await workflow.execute_activity("hold_workspace", arg, **options)
        return held

    async def execute(self, tool: str, call: ToolCall, **options: Any) -> ToolResult:
        """Call ``tool``: on the holder when it touches the workspace, taking the
        workspace over when the holder has died."""
        holding = self.holding
        if holding is None or not facts(tool).workspace:
            return await call_tool(tool, call, **options)
        lost = 0
        while True:
            await workflow.wait_condition(lambda: not self._taking_over)
            number, held = holding.number, holding.held
            routed = dict(options)
            if held.queue is not None:
                heartbeat, to_start = timeouts(self.bound)
                routed["task_queue"] = held.queue
                routed["schedule_to_start_timeout"] = to_start
                routed["heartbeat_timeout"] = min(
                    options.get("heartbeat_timeout", heartbeat), heartbeat
                )
            this = call.model_copy(
                update={
                    "context": call.context.model_copy(update={"workspace": held.path}),
                    "snapshot": snapshot_request(tool, self.run_id, self.spec.id, holding),
                }
            )
            self._in_flight += 1
            try:
                result = await call_tool(tool, this, **routed)
            except ActivityError as e:
                if held.queue is None or not holder_lost(e) or lost >= MAX_TAKEOVERS:
                    raise
                if _being_cancelled():
                    raise  # a call that was being stopped is not made again
                lost += 1
            else:
                holding.snapshot = newer(holding.snapshot, result.snapshot)
                result.attempt += lost  # a call lost with its worker counts as an attempt
                return result
            finally:
                self._in_flight -= 1
            workflow.logger.warning(
                "the worker holding workstream %s's workspace (%s) is gone: taking it over",
                self.spec.id,
                held.queue,
            )
            await self._take_over(number)

    async def _take_over(self, number: int) -> None:
        """Hold the workspace anew, from its newest snapshot, once per lost holder."""
        holding = self.holding
        assert holding is not None
        if holding.number != number:
            return  # another call took it over already
        if self._taking_over:
            await workflow.wait_condition(lambda: not self._taking_over)
            return
        self._taking_over = True
        try:
            # Calls still in flight to the old holder end first (they fail the same way,
            # or succeed if it lives): the snapshot restored is then the newest.
            await workflow.wait_condition(lambda: self._in_flight == 0)
            holding.held = await self._hold(Restore(snapshot=holding.snapshot))
            holding.number += 1
        finally:
            self._taking_over = False

    async def clean_up(self, arg: dict[str, Any]) -> None:
        """Remove the workspace on its holder (as ``repo.keep`` says); a holder that is
        gone took its copy with it."""
        assert self.holding is not None
        held = self.holding.held
        arg = {**arg, "holder": held.queue}
        options: dict[str, Any] = {
            "result_type": str,
            "summary": f"clean up workspace of {self.spec.id}",
            "start_to_close_timeout": timedelta(minutes=10),
            "retry_policy": RetryPolicy(maximum_attempts=5),
        }
        if self.spec.repo is None:
            # A scratch folder: most often held by the worker running this workflow
            # (it made it), which removes it at once, in this workflow task.
            done = await workflow.execute_local_activity("release_workspace", arg, **options)
            if done != "elsewhere":
                return
        if held.queue is not None:
            options["task_queue"] = held.queue
            options["schedule_to_start_timeout"] = timeouts(self.bound)[1]
        try:
            await workflow.execute_activity("release_workspace", arg, **options)
        except ActivityError as e:
            if not holder_lost(e):
                raise
            workflow.logger.info(
                "the worker holding workstream %s's workspace is gone: nothing to clean up",
                self.spec.id,
            )


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def for_workstream(inp: WorkstreamInput, state: WorkstreamState) -> Affinity | None:
    """The workstream's affinity: None for one with no workspace, or started before
    workspaces were held (its input has no ``takeover``; it replays as it ran)."""
    if inp.takeover is None or inp.workspace_free:
        return None
    return Affinity(
        run_id=inp.workspace_of or inp.run_id,
        spec=inp.spec,
        plan_dir=inp.plan_dir,
        bound=inp.takeover,
        holding=state.holding,
    )


async def execute_tool(
    affinity: Affinity | None, tool: str, call: ToolCall, **options: Any
) -> ToolResult:
    """Call a tool for a task: through the workspace's holder when there is one."""
    if affinity is None:
        return await call_tool(tool, call, **options)
    return await affinity.execute(tool, call, **options)


async def call_tool(tool: str, call: ToolCall, **options: Any) -> ToolResult:
    """One tool call's outcome. If the task is cancelled while it waits, the call is
    cancelled, unless it has already ended: then its outcome stands. (Cancelling the wait
    itself, as awaiting the activity directly does, would lose a result that arrived in
    the same workflow task as the cancel: a tool call that changed things, and must be
    rolled back, would pass for one that never ran.)

    The task stays marked as being cancelled (its ``cancelling()`` count), so a caller
    can tell a call stopped on purpose from one that failed.
    """
    handle = workflow.start_activity(tool, call, result_type=ToolResult, **options)
    try:
        return await asyncio.shield(handle)
    except asyncio.CancelledError:
        if not handle.done():
            handle.cancel()
        result: ToolResult = await handle
        return result
