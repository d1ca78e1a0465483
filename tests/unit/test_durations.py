from __future__ import annotations

from datetime import timedelta

import pytest

from towline.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("10m", timedelta(minutes=10)),
        ("48h", timedelta(hours=48)),
        ("3d", timedelta(days=3)),
        ("2w", timedelta(weeks=2)),
        ("500ms", timedelta(milliseconds=500)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1.5h", timedelta(minutes=90)),
        (" 10M ", timedelta(minutes=10)),
    ],
)
def test_plan_style_durations_parse(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


def test_bare_numbers_are_seconds() -> None:
    assert parse_duration(90) == timedelta(seconds=90)
    assert parse_duration(1.5) == timedelta(seconds=1.5)


def test_a_timedelta_passes_through() -> None:
    assert parse_duration(timedelta(hours=2)) == timedelta(hours=2)


@pytest.mark.parametrize("text", ["10x", "", "m", "10m5", "5 minutes", "-5s"])
def test_malformed_duration_says_how_to_write_one(text: str) -> None:
    with pytest.raises(ValueError, match=r"not a duration: .* \(use e\.g\. 90s, 10m, 48h, 3d\)"):
        parse_duration(text)


def test_malformed_duration_message_is_exact() -> None:
    with pytest.raises(ValueError, match="not a duration") as info:
        parse_duration("10x")
    assert str(info.value) == "not a duration: '10x' (use e.g. 90s, 10m, 48h, 3d)"


def test_negative_number_is_rejected() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        parse_duration(-5)


def test_a_boolean_is_not_a_duration() -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(True)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(hours=48), "2d"),
        (timedelta(seconds=90), "1m30s"),
        (timedelta(0), "0s"),
        (timedelta(seconds=1.5), "1s500ms"),
        (timedelta(days=1, hours=2, minutes=3, seconds=4), "1d2h3m4s"),
    ],
)
def test_format_gives_the_shortest_plan_spelling(value: timedelta, text: str) -> None:
    assert format_duration(value) == text


@pytest.mark.parametrize("text", ["90s", "10m", "48h", "3d", "1h30m", "250ms"])
def test_format_round_trips_through_parse(text: str) -> None:
    value = parse_duration(text)
    assert parse_duration(format_duration(value)) == value
