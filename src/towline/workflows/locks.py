"""Concurrency keys: at most ``limit`` workstreams holding a key run at once, across runs.

A workstream with ``concurrency: {key, limit}`` starts only once it holds its key. Each
key is a small entity workflow, :class:`LockWorkflow` (id ``towline-lock/<queue>/<key>``),
so the lock lives in Temporal: it survives worker and server restarts, and every worker
sees the same one. A run asks for the key (the ``lock_acquire`` local activity, an
update-with-start: the lock exists from its first use) before it starts the workstream;
when the key is taken the run is told later (``lock_granted``), in the order of asking.
The run gives the key back (``release``) when the workstream ends, however it ends.

A holder whose run has ended without giving the key back (a run terminated by hand)
must not hold it forever: while someone waits for the key, the lock signals each holder's
run now and then, and a run that cannot be signalled has ended: its keys are freed.

The state machine is pure functions (:func:`take_key`, :func:`give_back`), driven directly
by unit tests; the workflow only holds the state and applies them.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.exceptions import FailureError

with workflow.unsafe.imports_passed_through():
    from towline.workflows.timers import span

LOCK_WORKFLOW = "LockWorkflow"
ACQUIRE_LOCK_ACTIVITY = "lock_acquire"
GRANTED_SIGNAL = "lock_granted"
# While someone waits, how often the holders' runs are checked for life.
CHECK_EVERY = timedelta(minutes=1)
# A lock nobody holds or waits for ends after this long (the next use starts a new one).
IDLE_AFTER = timedelta(hours=1)
MAX_HISTORY_EVENTS = 2_000


def lock_workflow_id(queue: str, key: str) -> str:
    return f"towline-lock/{queue}/{key}"


class Holder(BaseModel):
    """A workstream that holds a key, or waits for it."""

    run_id: str
    workstream: str

    @property
    def id(self) -> str:
        return f"{self.run_id}/{self.workstream}"


class LockState(BaseModel):
    key: str
    limit: int = 1
    holders: list[Holder] = Field(default_factory=list)
    queue: list[Holder] = Field(default_factory=list, description="waiting, first come first")


def take_key(state: LockState, who: Holder, limit: int) -> tuple[LockState, bool, list[Holder]]:
    """May ``who`` hold the key now? If not, it waits in line (once). The asker's limit
    is the key's from now on (the plans sharing a key should agree), so a higher one may
    let others in too: they are returned, to be told."""
    if who.id in {h.id for h in state.holders}:
        return state, True, []
    state = state.model_copy(update={"limit": limit})
    if who.id not in {h.id for h in state.queue}:
        state = state.model_copy(update={"queue": [*state.queue, who]})
    state, granted = _grant(state)
    return state, who.id in {h.id for h in granted}, [h for h in granted if h.id != who.id]


def give_back(state: LockState, holder_ids: set[str]) -> tuple[LockState, list[Holder]]:
    """``holder_ids`` give the key back (or stop waiting); returns who holds it now."""
    state = state.model_copy(
        update={
            "holders": [h for h in state.holders if h.id not in holder_ids],
            "queue": [h for h in state.queue if h.id not in holder_ids],
        }
    )
    return _grant(state)


def _grant(state: LockState) -> tuple[LockState, list[Holder]]:
    room = max(0, state.limit - len(state.holders))
    granted = state.queue[:room]
    if not granted:
        return state, []
    return (
        state.model_copy(
            update={"holders": [*state.holders, *granted], "queue": state.queue[room:]}
        ),
        granted,
    )


class LockInput(BaseModel):
    key: str
    carry: LockState | None = None


class AcquireLock(BaseModel):
    """A run asks for a key for one of its workstreams."""

    queue: str
    key: str
    limit: int
    holder: Holder


@workflow.defn(name=LOCK_WORKFLOW)
class LockWorkflow:
    """One concurrency key: who holds it, who waits, in order."""

    @workflow.init
    def __init__(self, inp: LockInput) -> None:
        self._state = inp.carry or LockState(key=inp.key)
        self._told: list[Holder] = []  # granted, their runs still to be told
        self._changed = False

    @workflow.run
    async def run(self, inp: LockInput) -> LockState:
        while not self._history_is_long():
            self._show()
            await self._tell_granted()
            self._changed = False
            st = self._state
            if st.queue and len(st.holders) >= st.limit:
                with contextlib.suppress(TimeoutError):
                    await workflow.wait_condition(
                        lambda: self._changed,
                        timeout=CHECK_EVERY,
                        timeout_summary=f"a holder to end (checks every {span(CHECK_EVERY)})",
                    )
                if not self._changed:
                    await self._free_the_dead()
                continue
            if not st.holders and not st.queue:
                try:
                    await workflow.wait_condition(
                        lambda: self._changed,
                        timeout=IDLE_AFTER,
                        timeout_summary=f"idle: ends after {span(IDLE_AFTER)} unused",
                    )
                except TimeoutError:
                    await workflow.wait_condition(workflow.all_handlers_finished)
                    if not self._changed:
                        return self._state
                continue
            await workflow.wait_condition(lambda: self._changed)
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self._tell_granted()
        workflow.continue_as_new(LockInput(key=inp.key, carry=self._state))

    def _history_is_long(self) -> bool:
        info = workflow.info()
        return (
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() > MAX_HISTORY_EVENTS
        )

    def _show(self) -> None:
        st = self._state
        held = ", ".join(h.id for h in st.holders) or "nobody"
        workflow.set_current_details(
            f"**{st.key}**: {len(st.holders)} of {st.limit} held ({held}); {len(st.queue)} waiting"
        )

    async def _tell_granted(self) -> None:
        """Tell each granted holder's run; a run that has ended gives the key back."""
        while self._told:
            who = self._told.pop(0)
            try:
                await workflow.get_external_workflow_handle(who.run_id).signal(
                    GRANTED_SIGNAL, args=[who.workstream, self._state.key]
                )
            except FailureError:
                self._state, granted = give_back(self._state, {who.id})
                self._told += granted

    async def _free_the_dead(self) -> None:
        """While someone waits: the keys of holders whose runs have ended are freed."""
        dead: set[str] = set()
        for who in list(self._state.holders):
            try:
                await workflow.get_external_workflow_handle(who.run_id).signal("lock_check")
            except FailureError:
                dead.add(who.id)
        if dead:
            workflow.logger.warning("lock %s: freed from ended runs: %s", self._state.key, dead)
            self._state, granted = give_back(self._state, dead)
            self._told += granted

    @workflow.update(name="acquire", description="A run asks for this key for a workstream")
    def acquire(self, req: AcquireLock) -> bool:
        self._state, granted, others = take_key(self._state, req.holder, req.limit)
        self._told += others
        self._changed = True
        return granted

    @workflow.signal(
        name="release", description="A workstream gives the key back (or stops waiting)"
    )
    def release(self, holder_id: str) -> None:
        self._state, granted = give_back(self._state, {holder_id})
        self._told += granted
        self._changed = True

    @workflow.query(name="state", description="Who holds the key, who waits")
    def state(self) -> LockState:
        return self._state
