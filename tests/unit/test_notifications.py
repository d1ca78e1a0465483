"""Which notifications a run's transitions produce, and their bodies (towline.notifications)."""

from __future__ import annotations

from datetime import UTC, datetime

from towline.notifications import (
    Context,
    Snapshot,
    decide,
    event_of,
    is_slack,
    person_waits,
    slack_body,
)
from towline.plan.spec import NotifySpec

CTX = Context(
    run_id="bump-7f3a2c",
    plan="bump",
    labels={"team": "platform"},
    reason="waiting: api.deploy: approval",
    at=datetime(2026, 1, 5, 10, 0, tzinfo=UTC),
)
ALL = [NotifySpec(webhook="https://hooks.example.com/x")]


def _snap(status: str, *waiting: str) -> Snapshot:
    return Snapshot(status=status, waiting=frozenset(waiting))


def test_a_task_that_begins_to_wait_for_a_person_is_a_waiting_event() -> None:
    before, after = _snap("running"), _snap("waiting", "api.deploy: approval")
    assert event_of(before, after) == "waiting"
    # Still waiting for the same: nothing new to tell; a second task waiting: told.
    assert event_of(after, after) is None
    assert event_of(after, _snap("waiting", "api.deploy: approval", "web.x: operator")) == (
        "waiting"
    )
    # The wait ended: no event (the run goes on).
    assert event_of(after, _snap("running")) is None


def test_only_waits_for_a_person_count() -> None:
    items = ["api.a: approval", "api.b: breaker", "web.c: operator", "web.d: budget"]
    assert person_waits(items) == {"api.a: approval", "web.c: operator", "web.d: budget"}


def test_each_end_is_an_event_once() -> None:
    for end in ("succeeded", "failed", "cancelled", "rolled_back"):
        assert event_of(_snap("running"), _snap(end)) == end
        assert event_of(_snap(end), _snap(end)) is None


def test_the_body_says_what_waits_and_the_exact_commands_that_answer() -> None:
    [d] = decide(
        _snap("running"),
        _snap("waiting", "api.deploy: approval", "web.fix: operator"),
        ALL,
        sequence=2,
        ctx=CTX,
    )
    assert d.key == "bump-7f3a2c:2:waiting"
    body = d.body
    assert body["schema"] == "towline.notification/v1"
    assert (body["event"], body["status"], body["sequence"]) == ("waiting", "waiting", 2)
    assert body["idempotency_key"] == d.key
    assert body["labels"] == {"team": "platform"}
    assert body["at"] == "2026-01-05T10:00:00+00:00"
    assert body["waiting"] == [
        {
            "task": "api.deploy",
            "for": "approval",
            "commands": [
                "towline approve bump-7f3a2c api.deploy",
                "towline reject bump-7f3a2c api.deploy",
            ],
            "update": "approve",
        },
        {
            "task": "web.fix",
            "for": "operator",
            "commands": [
                "towline retry bump-7f3a2c web.fix",
                "towline skip bump-7f3a2c web.fix",
                "towline abort bump-7f3a2c web.fix",
            ],
            "update": "retry",
        },
    ]


def test_only_webhooks_that_asked_for_the_event_get_it() -> None:
    specs = [
        NotifySpec(webhook="https://a.example.com", on=["failed"]),
        NotifySpec(webhook="${{ secrets.HOOK }}", on=["failed", "succeeded"]),
    ]
    ok = decide(_snap("running"), _snap("succeeded"), specs, sequence=1, ctx=CTX)
    assert [d.webhook for d in ok] == ["${{ secrets.HOOK }}"]
    failed = decide(_snap("running"), _snap("failed"), specs, sequence=1, ctx=CTX)
    assert len(failed) == 2
    assert decide(_snap("running"), _snap("running"), specs, sequence=1, ctx=CTX) == []


def test_slack_webhooks_get_a_slack_message() -> None:
    assert is_slack("https://hooks.slack.com/services/T/B/X", "auto")
    assert not is_slack("https://example.com/hook", "auto")
    assert is_slack("https://example.com/hook", "slack")
    assert not is_slack("https://hooks.slack.com/services/T/B/X", "json")
    [d] = decide(
        _snap("running"), _snap("waiting", "api.deploy: approval"), ALL, sequence=1, ctx=CTX
    )
    message = slack_body({**d.body, "web_ui": "http://ui/run"})
    assert "towline run `bump-7f3a2c` (bump): waiting" in message["text"]
    assert "`towline approve bump-7f3a2c api.deploy`" in message["text"]
    assert "<http://ui/run|Open in the Temporal Web UI>" in message["text"]
    assert message["blocks"][0]["text"]["text"] == message["text"]


def test_an_agents_question_is_a_wait_for_a_person_answered_with_towline_answer() -> None:
    assert person_waits(["api.fix: answer"]) == {"api.fix: answer"}
    [d] = decide(_snap("running"), _snap("waiting", "api.fix: answer"), ALL, sequence=3, ctx=CTX)
    assert d.body["waiting"] == [
        {
            "task": "api.fix",
            "for": "answer",
            "commands": ['towline answer bump-7f3a2c api.fix "<your answer>"'],
            "update": "answer",
        }
    ]
