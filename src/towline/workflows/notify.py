"""The run's side of notifications: decide (towline.notifications), send, never wait.

:class:`Notifier` is told of each run-level transition; the deliveries it produces start
as ``notify`` activities that the run does not await: a receiver that is slow or down
holds up nothing. Each delivery is retried (backoff from 1 s to 1 min) until its
``timeout`` (the plan's ``notify[].timeout``, default 10 min); one that never gets
through is logged and dropped. Before the run ends, :meth:`Notifier.drain` gives the
deliveries still under way at most :data:`FINAL_WAIT` to finish, then cancels them, so
the final event (succeeded, failed...) usually arrives and a dead receiver delays the
run's end by that much at most.

Only a plan with ``notify`` reaches any of this: runs without it (every run started
before the key existed) make the same commands as before, so their histories replay.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from towline.notifications import (
        Context,
        Delivery,
        NotifyCarry,
        Snapshot,
        decide,
        person_waits,
    )
    from towline.plan.spec import PlanSpec
    from towline.workflows.timers import span

FINAL_WAIT = timedelta(seconds=30)
_ACTIVITY = "notify"
_REFUSED = "notify_refused"


class Notifier:
    def __init__(self, run_id: str, plan: PlanSpec, carry: NotifyCarry | None = None) -> None:
        self._run_id = run_id
        self._plan = plan
        carry = carry or NotifyCarry()
        self._sequence = carry.sequence
        self._last = Snapshot(status="running", waiting=frozenset(carry.waiting))
        self._sending: set[asyncio.Task[None]] = set()

    def observe(self, status: str, waiting: list[str], reason: str | None) -> None:
        """The run is now ``status``, with ``waiting`` ("ws.task: reason") items."""
        if not self._plan.notify:
            return
        after = Snapshot(status=status, waiting=person_waits(waiting))
        ctx = Context(
            run_id=self._run_id,
            plan=self._plan.name,
            labels=dict(self._plan.labels),
            reason=reason,
            at=workflow.now(),
        )
        deliveries = decide(
            self._last, after, self._plan.notify, sequence=self._sequence + 1, ctx=ctx
        )
        self._last = after
        if not deliveries:
            return
        self._sequence += 1
        for delivery in deliveries:
            task = asyncio.create_task(self._send(delivery))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send(self, delivery: Delivery) -> None:
        try:
            await workflow.execute_activity(
                _ACTIVITY,
                delivery,
                result_type=int,
                summary=f"notify: {delivery.body['event']}",
                start_to_close_timeout=timedelta(seconds=30),
                schedule_to_close_timeout=delivery.timeout,
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=1),
                    backoff_coefficient=2.0,
                    maximum_interval=timedelta(minutes=1),
                    non_retryable_error_types=[_REFUSED],
                ),
            )
        except ActivityError as e:
            workflow.logger.warning(
                "run %s: notification %s not delivered: %s", self._run_id, delivery.key, e.cause
            )

    async def drain(self) -> None:
        """Let deliveries under way finish, for :data:`FINAL_WAIT` at most; cancel the rest."""
        if not self._sending:
            return
        try:
            await workflow.wait_condition(
                lambda: not self._sending,
                timeout=FINAL_WAIT,
                timeout_summary=f"notifications being sent (at most {span(FINAL_WAIT)})",
            )
        except TimeoutError:
            left = list(self._sending)
            for task in left:
                task.cancel()
            await asyncio.gather(*left, return_exceptions=True)

    def carry(self) -> NotifyCarry:
        """What a continue-as-new passes on, so no event is numbered (or sent) twice."""
        return NotifyCarry(sequence=self._sequence, waiting=sorted(self._last.waiting))
