"""RunWorkflow: one execution of a plan.

Each workstream is a child workflow (``<run_id>/<workstream>``). The run starts each once
the workstreams it needs have succeeded, passes the outputs a workstream needs from
another along (``task_finished``), keeps its status in the ``TowlineStatus`` search
attribute, and says on its own page in the Web UI what it is doing and who it waits for.

The work is done by an engine chosen by the run's input: :mod:`.run_v2` for every run
started now (any width: O(1) per event, continue-as-new with workstreams in flight), and
:mod:`.run_v1` for runs started before it, which finish with the engine they began with.
This class is the workflow's face: its signals, updates and queries, each described for
a person who reads them in the Web UI.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from towline.plan.spec import BudgetSpec
    from towline.state import (
        FINISHED,
        RUN_WORKFLOW,
        Answer,
        AnswerRequest,
        RunAnswer,
        RunInput,
        RunState,
        TaskView,
        Usage,
        WorkstreamEnd,
    )
    from towline.workflows.run_v1 import RunV1
    from towline.workflows.run_v2 import RunV2

# What a person types in the Web UI's "Send an Update" box for an answer.
_ANSWER_HELP = (
    'the task as text, "workstream.task" (e.g. "api.deploy"), or '
    '{"task": "api.deploy", "by": "your name", "note": "why"}'
)


@workflow.defn(name=RUN_WORKFLOW)
class RunWorkflow:
    @workflow.init
    def __init__(self, inp: RunInput) -> None:
        if not inp.run_id:  # started by a schedule: its run id is the workflow id it got
            inp = inp.model_copy(update={"run_id": workflow.info().workflow_id})
        self._inp = inp
        self._v2 = RunV2(inp) if inp.engine >= 2 else None
        self._v1 = RunV1(inp) if self._v2 is None else None

    @workflow.run
    async def run(self, inp: RunInput) -> RunState:
        if self._v2 is not None:
            return await self._v2.run()
        assert self._v1 is not None
        return await self._v1.run(self._inp)

    # ------------------------------------------------------------- from workstreams

    @workflow.signal(
        name="task_finished",
        description="A workstream reports a task that tasks of other workstreams need",
    )
    def task_finished(self, ref: str, view: TaskView) -> None:
        if self._v2 is not None:
            self._v2.task_finished(ref, view)
        elif self._v1 is not None:
            self._v1.task_finished(ref, view)

    @workflow.signal(
        name="workstream_waiting",
        description="A workstream reports which of its tasks wait, and for what",
    )
    def workstream_waiting(self, ws_id: str, waiting: list[str]) -> None:
        if self._v2 is not None:
            self._v2.workstream_waiting(ws_id, waiting)
        elif self._v1 is not None:
            self._v1.workstream_waiting(ws_id, waiting)

    @workflow.signal(name="workstream_ended", description="A workstream reports how it ended")
    def workstream_ended(self, ws_id: str, end: WorkstreamEnd) -> None:
        if self._v2 is not None:
            self._v2.workstream_ended(ws_id, end)

    @workflow.signal(name="usage", description="(runs started before 0.2)")
    async def usage(self, usage: Usage) -> None:
        if self._v2 is not None:
            await self._v2.usage(usage, None)
        elif self._v1 is not None:
            await self._v1.usage(usage)

    @workflow.signal(
        name="workstream_usage", description="A workstream reports what a tool call cost"
    )
    async def workstream_usage(self, ws_id: str, usage: Usage) -> None:
        if self._v2 is not None:
            await self._v2.usage(usage, ws_id)

    @workflow.signal(name="lock_granted", description="A concurrency key is this workstream's turn")
    def lock_granted(self, ws_id: str, key: str) -> None:
        if self._v2 is not None:
            self._v2.lock_granted(ws_id, key)

    @workflow.signal(
        name="lock_check", description="A concurrency key's lock checks that this run lives"
    )
    def lock_check(self) -> None:
        """Nothing to do: being able to receive it is the answer."""

    @workflow.signal(name="want_slots", description="(runs started before 0.2)")
    def want_slots(self, ws_id: str, wanted: int) -> None:
        if self._v1 is not None:
            self._v1.want_slots(ws_id, wanted)

    @workflow.signal(name="release_slots", description="(runs started before 0.2)")
    def release_slots(self, ws_id: str, count: int) -> None:
        if self._v1 is not None:
            self._v1.release_slots(ws_id, count)

    # -------------------------------------------------------------- from people

    def _check_open(self) -> None:
        if self._engine_state().status in FINISHED:
            st = self._engine_state()
            raise ValueError(f"run {st.run_id} has already {st.status.replace('_', ' ')}")

    def _engine_state(self) -> RunState:
        return self._v2.status() if self._v2 is not None else self._v1.status()  # type: ignore[union-attr]

    @workflow.update(
        name="raise_budget",
        description='Set new budget limits, e.g. {"max_cost_usd": 5} or {"max_tokens": 200000}',
    )
    async def raise_budget(self, raise_to: BudgetSpec) -> str:
        if self._v2 is not None:
            return await self._v2.raise_budget(raise_to)
        assert self._v1 is not None
        return await self._v1.raise_budget(raise_to)

    @raise_budget.validator
    def _raise_budget_ok(self, raise_to: BudgetSpec) -> None:
        self._check_open()

    @workflow.update(
        name="pause",
        description="Start no new tasks anywhere in the run (running ones finish); input: "
        'who pauses, e.g. "ana"',
    )
    async def pause(self, by: str = "someone (Web UI)") -> str:
        if self._v2 is not None:
            return await self._v2.pause(by)
        assert self._v1 is not None
        return await self._v1.pause(by)

    @pause.validator
    def _pause_ok(self, by: str = "someone (Web UI)") -> None:
        self._check_open()

    @workflow.update(
        name="resume",
        description='Start tasks again after a pause; input: who resumes, e.g. "ana"',
    )
    async def resume(self, by: str = "someone (Web UI)") -> str:
        if self._v2 is not None:
            return await self._v2.resume(by)
        assert self._v1 is not None
        return await self._v1.resume(by)

    @resume.validator
    def _resume_ok(self, by: str = "someone (Web UI)") -> None:
        self._check_open()

    async def _answer(self, answer: Answer, given: AnswerRequest | str | None) -> str:
        assert self._v2 is not None
        return await self._v2.answer(answer, _request(given))

    def _answer_ok(self, answer: Answer, given: AnswerRequest | str | None) -> None:
        self._check_open()
        if self._v2 is None:
            raise ValueError(
                "this run started before runs took answers; answer its workstream: "
                "towline approve|reject|retry|skip|abort RUN ws.task"
            )
        self._v2.check_answer(answer, _request(given))

    @workflow.update(
        name="approve", description=f"Approve a task waiting for approval; input: {_ANSWER_HELP}"
    )
    async def approve(self, req: AnswerRequest | str | None = None) -> str:
        return await self._answer("approve", req)

    @approve.validator
    def _approve_ok(self, req: AnswerRequest | str | None = None) -> None:
        self._answer_ok("approve", req)

    @workflow.update(
        name="reject",
        description=f"Reject a task waiting for approval (it fails); input: {_ANSWER_HELP}",
    )
    async def reject(self, req: AnswerRequest | str | None = None) -> str:
        return await self._answer("reject", req)

    @reject.validator
    def _reject_ok(self, req: AnswerRequest | str | None = None) -> None:
        self._answer_ok("reject", req)

    @workflow.update(
        name="retry",
        description=f"Run a failed task waiting for an operator again; input: {_ANSWER_HELP}",
    )
    async def retry(self, req: AnswerRequest | str | None = None) -> str:
        return await self._answer("retry", req)

    @retry.validator
    def _retry_ok(self, req: AnswerRequest | str | None = None) -> None:
        self._answer_ok("retry", req)

    @workflow.update(
        name="skip",
        description="Skip a failed task waiting for an operator (its dependents are skipped); "
        f"input: {_ANSWER_HELP}",
    )
    async def skip(self, req: AnswerRequest | str | None = None) -> str:
        return await self._answer("skip", req)

    @skip.validator
    def _skip_ok(self, req: AnswerRequest | str | None = None) -> None:
        self._answer_ok("skip", req)

    @workflow.update(
        name="abort",
        description=f"Fail a task waiting for an operator; input: {_ANSWER_HELP}",
    )
    async def abort(self, req: AnswerRequest | str | None = None) -> str:
        return await self._answer("abort", req)

    @abort.validator
    def _abort_ok(self, req: AnswerRequest | str | None = None) -> None:
        self._answer_ok("abort", req)

    @workflow.update(
        name="answer",
        description="Answer the question an agent task asked: "
        '{"task": "api.fix", "text": "use version 2", "by": "your name"}',
    )
    async def answer(self, req: RunAnswer) -> str:
        assert self._v2 is not None
        return await self._v2.answer_question(req)

    @answer.validator
    def _answer_question_ok(self, req: RunAnswer) -> None:
        self._check_open()
        if self._v2 is None:
            raise ValueError(
                "this run started before runs took answers: towline answer RUN TASK TEXT"
            )
        self._v2.check_question(req)

    @workflow.query(
        name="status",
        description="The run and its workstreams' statuses (each workstream answers for its tasks)",
    )
    def status(self) -> RunState:
        return self._engine_state()


def _request(given: AnswerRequest | str | None) -> AnswerRequest:
    """An answer's input as the Web UI or a script sends it: the task as text, or whole."""
    if isinstance(given, AnswerRequest):
        return given
    if isinstance(given, str) and given.strip():
        return AnswerRequest(task=given.strip(), by="someone (Web UI)")
    raise ValueError(f"say which task: {_ANSWER_HELP}")
