"""What a person is told about a run: waits and how to answer them, decisions, fixes,
re-runs, errors in the tool's words, and an ETA only while it means something."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.console import Console

from towline.starter import progress, views
from towline.state import Decision, ErrorInfo, RunState, TaskState, WorkstreamState

AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
BUSY = ErrorInfo(
    category="tool",
    message="command exited with code 1: sh -c 'if [ -f tried ]; then echo ok; fi'",
    output="starting\ntarget busy\n",
)


def _run(status: str = "running", reason: str | None = None, **tasks: TaskState) -> RunState:
    return RunState(
        run_id="r1",
        plan="p",
        status=status,
        reason=reason,
        workstreams={"prod": WorkstreamState(status="running", tasks=tasks)},
    )


def _waiting(for_: str, reason: str, **extra: object) -> TaskState:
    return TaskState(tool="shell", status="waiting", waiting_for=for_, reason=reason, **extra)


def test_decisions_read_as_sentences() -> None:
    assert (
        views.decision_text(Decision(answer="approve", by="ana", at=AT, note="ship it"))
        == "approved by ana: ship it"
    )
    assert views.decision_text(Decision(answer="retry", by="ops", at=AT)) == "retried by ops"
    timed_out = Decision(answer="reject", by="timeout", at=AT, note="no answer in time")
    assert views.decision_text(timed_out) == "rejected at its timeout (no answer in time)"


def test_an_error_says_what_the_tool_said_before_the_command() -> None:
    assert views.error_text(BUSY, "shell") == (
        "tool: target busy (command exited with code 1: sh -c 'if [ -f tried ]; then ec…)"
    )
    # Other tools' messages say why themselves: shown as they are.
    gate = ErrorInfo(category="test_failed", message="1 of 4 tests failed", output="== 1 failed ==")
    assert views.error_text(gate, "test_gate") == "test_failed: 1 of 4 tests failed"
    bare = ErrorInfo(category="timeout", message="the attempt ran past its timeout")
    assert views.error_text(bare) == "timeout: the attempt ran past its timeout"


def test_a_task_waiting_for_an_operator_shows_its_error_and_how_to_answer() -> None:
    t = _waiting("operator", "failed; waiting for an operator: ...", error=BUSY, attempts=1)
    note = views.task_note("r1", "prod.deploy", t)
    assert note.startswith("failed: tool: target busy (")
    assert note.endswith(
        "waiting for an operator (the task failed): towline retry|skip|abort r1 prod.deploy"
    )


def test_a_tasks_note_lists_its_decisions_fixes_and_reruns() -> None:
    t = TaskState(
        tool="shell",
        status="succeeded",
        attempts=3,
        runs=2,
        fixes=1,
        decisions=[Decision(answer="retry", by="ops", at=AT, note="freed it")],
    )
    assert views.task_note("r1", "prod.deploy", t) == "retried by ops: freed it; 1 fix; ran 2 times"


def test_waits_name_the_task_what_it_waits_for_and_the_command() -> None:
    state = _run(
        "waiting",
        "paused by ana",
        deploy=_waiting("approval", "waiting for approval: towline approve|reject r1 prod.deploy"),
        spend=_waiting(
            "budget", "budget spent: $1; raise it: towline resume r1 --raise-budget ..."
        ),
        build=TaskState(tool="shell", status="running"),
    )
    (approval, budget) = views.waits(state)
    assert (approval.task, approval.answers) == ("prod.deploy", ("approve", "reject"))
    assert approval.command("r1") == "towline approve|reject r1 prod.deploy"
    assert budget.answers == ()
    assert budget.command("r1") == "towline resume r1 --raise-budget ..."
    assert views.waits_in_words(state) == (
        "paused by ana; approval of prod.deploy; budget for prod.spend"
    )
    assert views.waits_in_words(state, commands=True) == (
        "paused by ana: towline resume r1; "
        "approval of prod.deploy: towline approve|reject r1 prod.deploy; "
        "budget for prod.spend: towline resume r1 --raise-budget ..."
    )


def test_an_eta_is_shown_only_while_something_runs_and_nothing_waits() -> None:
    running = TaskState(tool="shell", status="running")
    assert progress.estimable(_run(build=running))
    assert not progress.estimable(_run(build=running, deploy=_waiting("approval", "...")))
    assert not progress.estimable(_run(done=TaskState(tool="shell", status="succeeded")))


def test_the_table_shows_attempts_decisions_and_the_wait() -> None:
    state = _run(
        "waiting",
        deploy=_waiting("approval", "waiting for approval: ..."),
        build=TaskState(
            tool="shell",
            status="succeeded",
            attempts=2,
            runs=2,
            decisions=[Decision(answer="retry", by="ops", at=AT)],
        ),
    )
    console = Console(record=True, width=200)
    console.print(progress.table(state))
    text = console.export_text()
    assert "attempts" in text.splitlines()[1]
    assert "run r1  waiting" in text
    assert "for approval of prod.deploy" in text
    build = next(line for line in text.splitlines() if "build" in line)
    assert "│        2 │" in build
    assert "retried by ops; ran 2 times" in build
    deploy = next(line for line in text.splitlines() if "│ waiting" in line)
    assert "towline approve|reject r1 prod.deploy" in deploy
