"""A call that waits by polling gets a retry policy that polls until its deadline."""

from __future__ import annotations

from datetime import timedelta

from towline.errors import NON_RETRYABLE
from towline.workflows import polling


def test_a_pr_call_that_waits_polls_with_backoff_until_its_wait_timeout() -> None:
    found = polling.options(
        "pr", {"wait": "merged", "poll_interval": "30s", "max_poll_interval": "10m"}
    )
    assert found is not None
    policy = found["retry_policy"]
    assert policy.initial_interval == timedelta(seconds=30)
    assert policy.maximum_interval == timedelta(minutes=10)
    assert policy.backoff_coefficient == polling.BACKOFF
    assert policy.maximum_attempts == 0  # the deadline ends it, not a count
    assert set(policy.non_retryable_error_types or []) == set(NON_RETRYABLE)
    assert found["schedule_to_close_timeout"] == polling.DEFAULT_WAIT_TIMEOUT


def test_the_defaults_and_a_cap_below_the_first_interval() -> None:
    found = polling.options("pr", {"wait": "closed", "poll_interval": "20m", "wait_timeout": "2d"})
    assert found is not None
    assert found["retry_policy"].initial_interval == timedelta(minutes=20)
    assert found["retry_policy"].maximum_interval == timedelta(minutes=20)
    assert found["schedule_to_close_timeout"] == timedelta(days=2)
    default = polling.options("pr", {"wait": "merged"})
    assert default is not None
    assert default["retry_policy"].initial_interval == polling.DEFAULT_POLL_INTERVAL


def test_calls_that_do_not_wait_keep_the_tasks_retry_policy() -> None:
    assert polling.options("pr", {"action": "open"}) is None
    assert polling.options("pr", {"wait": None}) is None
    assert polling.options("shell", {"wait": "merged"}) is None
