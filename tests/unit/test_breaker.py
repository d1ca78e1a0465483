"""Circuit breakers, the pure parts: targets, the state machine, reasons and outcomes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
from pydantic import ValidationError

from towline.activities.tools.llm import DEFAULT_BASE_URL
from towline.plan.spec import BreakerSpec, PlanSettings
from towline.workflows.breaker import (
    BreakerDecision,
    BreakerState,
    admit,
    breaker_target,
    breaker_workflow_id,
    changes,
    cool_down,
    outcome,
    probe_poll,
    record,
    settled,
    wait_reason,
)

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
SPEC = BreakerSpec(failures=3, cooldown=timedelta(minutes=10))


def fail_n(state: BreakerState, n: int, at: datetime = T0) -> BreakerState:
    for _ in range(n):
        state = record(state, False, at, SPEC)
    return state


# ---------------------------------------------------------------- targets


@pytest.mark.parametrize(
    ("tool", "args", "target"),
    [
        ("shell", {"command": ["make", "build"]}, "shell:make"),
        ("shell", {"command": ["/usr/bin/python3", "-m", "pytest"]}, "shell:python3"),
        ("shell", {"command": "make build && make test", "shell": True}, "shell:make"),
        ("shell", {"command": "CI=1 LANG=C ./deploy.sh prod", "shell": True}, "shell:deploy.sh"),
        ("test_gate", {"command": ["pytest", "-q"]}, "shell:pytest"),
        ("http", {"url": "https://API.example.com/v1/items?x=1"}, "http:api.example.com"),
        ("http", {"url": "http://user:pw@127.0.0.1:8080/x"}, "http:127.0.0.1:8080"),
        ("llm", {"base_url": "http://localhost:8080/v1", "model": "m"}, "llm:localhost:8080"),
        ("llm", {"model": "gpt"}, "llm:api.openai.com"),
        ("mcp", {"command": ["npx", "my-server"], "tool": "t"}, "mcp:npx"),
        ("mcp", {"url": "http://127.0.0.1:9000/mcp", "tool": "t"}, "mcp:127.0.0.1:9000"),
        ("mcp", {"command": ["/opt/bin/files-mcp"]}, "mcp:files-mcp"),
    ],
)
def test_each_external_tool_call_has_a_readable_target(
    tool: str, args: dict[str, object], target: str
) -> None:
    assert breaker_target(tool, args) == target


@pytest.mark.parametrize(
    ("tool", "args"),
    [
        ("echo", {"a": 1}),
        ("wait", {"for": "3d"}),
        ("patch.apply", {"patch": "x.diff"}),
        ("shell", {"command": []}),
        ("shell", {"command": "unterminated 'quote", "shell": True}),
        ("shell", {}),
        ("http", {"url": "not a url"}),
        ("http", {"url": 42}),
        ("llm", {"base_url": "localhost"}),
    ],
)
def test_calls_with_no_outside_target_have_no_breaker(tool: str, args: dict[str, object]) -> None:
    assert breaker_target(tool, args) is None


def test_an_llm_call_without_base_url_targets_the_llm_tools_default_endpoint() -> None:
    host = urlsplit(DEFAULT_BASE_URL).hostname
    assert breaker_target("llm", {"model": "m", "prompt": "hi"}) == f"llm:{host}"


def test_breakers_are_scoped_by_task_queue() -> None:
    assert (
        breaker_workflow_id("towline", "http:a.example") == "towline-breaker/towline/http:a.example"
    )


# ---------------------------------------------------------------- the state machine


def test_a_closed_breaker_lets_every_call_through() -> None:
    st, decision = admit(BreakerState(target="shell:make"), "r/w.a", T0)
    assert decision == BreakerDecision(allowed=True, state="closed")
    assert st.status == "closed"


def test_it_opens_after_the_configured_consecutive_failures() -> None:
    st = fail_n(BreakerState(target="t"), 2)
    assert (st.status, st.failures) == ("closed", 2)
    st = fail_n(st, 1)
    assert st.status == "open"
    assert st.opened_at == T0
    assert st.retry_at == T0 + timedelta(minutes=10)


def test_a_success_resets_the_count_of_consecutive_failures() -> None:
    st = fail_n(BreakerState(target="t"), 2)
    st = record(st, True, T0, SPEC)
    st = fail_n(st, 2)
    assert (st.status, st.failures) == ("closed", 2)


def test_an_open_breaker_refuses_until_its_cooldown_ends() -> None:
    st = fail_n(BreakerState(target="t"), 3)
    st, decision = admit(st, "r/w.b", T0 + timedelta(minutes=9))
    assert not decision.allowed
    assert decision.state == "open"
    assert decision.retry_at == T0 + timedelta(minutes=10)


def test_after_the_cooldown_exactly_one_probe_goes_through() -> None:
    st = fail_n(BreakerState(target="t"), 3)
    later = T0 + timedelta(minutes=10)
    assert cool_down(st, later).status == "half_open"
    st, first = admit(st, "r/w.probe", later)
    st, second = admit(st, "r/w.other", later + timedelta(seconds=5))
    assert first == BreakerDecision(allowed=True, state="half_open", probe=True)
    assert st.probe == "r/w.probe"
    assert not second.allowed
    assert second.state == "half_open"
    # Waiters ask again soon, not a whole cooldown later.
    assert second.retry_at == later + timedelta(seconds=5) + probe_poll(timedelta(minutes=10))


def test_the_probes_success_closes_the_breaker() -> None:
    st = fail_n(BreakerState(target="t"), 3)
    st, _ = admit(st, "r/w.probe", T0 + timedelta(minutes=10))
    st = record(st, True, T0 + timedelta(minutes=11), SPEC)
    assert (st.status, st.failures, st.probe, st.retry_at) == ("closed", 0, None, None)
    assert admit(st, "r/w.next", T0 + timedelta(minutes=11))[1].allowed


def test_the_probes_failure_opens_it_again_for_a_new_cooldown() -> None:
    st = fail_n(BreakerState(target="t"), 3)
    st, _ = admit(st, "r/w.probe", T0 + timedelta(minutes=10))
    failed_at = T0 + timedelta(minutes=12)
    st = record(st, False, failed_at, SPEC)
    assert st.status == "open"
    assert st.retry_at == failed_at + timedelta(minutes=10)
    assert not admit(st, "r/w.x", failed_at + timedelta(minutes=1))[1].allowed


def test_a_probe_that_never_reports_is_replaced_after_a_cooldown() -> None:
    st = fail_n(BreakerState(target="t"), 3)
    st, _ = admit(st, "r/w.lost", T0 + timedelta(minutes=10))
    st, decision = admit(st, "r/w.next", T0 + timedelta(minutes=20))
    assert decision.allowed
    assert decision.probe
    assert st.probe == "r/w.next"


def test_late_failures_do_not_extend_an_open_cooldown() -> None:
    st = fail_n(BreakerState(target="t"), 3)
    st = record(st, False, T0 + timedelta(minutes=5), SPEC)
    assert st.retry_at == T0 + timedelta(minutes=10)


def test_the_reporting_plans_settings_decide_threshold_and_cooldown() -> None:
    st = record(BreakerState(target="t"), False, T0, BreakerSpec(failures=1, cooldown="30s"))
    assert st.status == "open"
    assert st.retry_at == T0 + timedelta(seconds=30)


def test_probe_poll_is_a_tenth_of_the_cooldown_within_bounds() -> None:
    assert probe_poll(timedelta(minutes=5)) == timedelta(seconds=30)
    assert probe_poll(timedelta(seconds=3)) == timedelta(seconds=1)
    assert probe_poll(timedelta(hours=2)) == timedelta(minutes=1)


def test_settled_answers_only_where_admit_would_change_nothing() -> None:
    closed = fail_n(BreakerState(target="t"), 2)
    opened = fail_n(closed, 1)
    half, _ = admit(opened, "r/w.probe", T0 + timedelta(minutes=10))
    for st, now in [
        (closed, T0),
        (opened, T0 + timedelta(minutes=1)),
        (opened, T0 + timedelta(minutes=10)),
        (half, T0 + timedelta(minutes=11)),
    ]:
        read = settled(st, now)
        after, decided = admit(st, "r/w.x", now)
        if read is not None:
            assert (read, after) == (decided, st)
    assert settled(closed, T0) is not None
    assert settled(opened, T0 + timedelta(minutes=1)) is not None
    assert settled(opened, T0 + timedelta(minutes=10)) is None  # the probe's turn
    assert settled(half, T0 + timedelta(minutes=11)) is None


def test_only_a_success_on_a_healthy_breaker_may_go_unreported() -> None:
    healthy = BreakerState(target="t")
    assert not changes(healthy, True)
    assert record(healthy, True, T0, SPEC) == healthy
    assert changes(healthy, False)
    assert changes(fail_n(healthy, 1), True)
    assert changes(fail_n(healthy, 3), True)


# ---------------------------------------------------------------- outcomes and reasons


@pytest.mark.parametrize(
    ("category", "counts"),
    [
        (None, True),
        ("test_failed", True),
        ("conflict", True),
        ("tool", False),
        ("timeout", False),
        ("system", False),
        ("validation", None),
        ("budget", None),
        ("cancelled", None),
    ],
)
def test_only_failures_of_the_target_count_against_it(category: str | None, counts: bool) -> None:
    assert outcome(category) is counts


def test_the_wait_reason_names_the_target_and_the_time() -> None:
    open_ = BreakerDecision(allowed=False, state="open", retry_at=T0 + timedelta(minutes=3))
    assert wait_reason("http:api.example.com", open_, T0) == (
        "circuit breaker open for http:api.example.com until 12:03:00 UTC"
    )
    tomorrow = BreakerDecision(allowed=False, state="open", retry_at=T0 + timedelta(days=1))
    assert "until 2025-03-02 12:00:00 UTC" in wait_reason("shell:make", tomorrow, T0)
    half = BreakerDecision(allowed=False, state="half_open", retry_at=T0 + timedelta(seconds=30))
    assert "half-open" in wait_reason("shell:make", half, T0)


# ---------------------------------------------------------------- plan settings


def test_plan_breaker_settings_have_defaults_and_a_short_form() -> None:
    assert PlanSettings().breaker == BreakerSpec(enabled=True, failures=5, cooldown="5m")
    assert PlanSettings.model_validate({"breaker": False}).breaker.enabled is False
    custom = PlanSettings.model_validate({"breaker": {"failures": 2, "cooldown": "10m"}})
    assert (custom.breaker.failures, custom.breaker.cooldown) == (2, timedelta(minutes=10))


@pytest.mark.parametrize(
    "bad", [{"failures": 0}, {"cooldown": "0s"}, {"cooldown": "soon"}, {"probes": 2}]
)
def test_bad_breaker_settings_are_rejected(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        PlanSettings.model_validate({"breaker": bad})
