from datetime import timedelta

from towline.workflows.timers import span, wait_summary


def test_summary_says_what_and_how_long() -> None:
    assert wait_summary("deploy", "approval", timedelta(hours=48)) == (
        "deploy: waiting for approval (2d)"
    )
    assert wait_summary("soak", "time to pass", timedelta(minutes=90)) == (
        "soak: waiting for time to pass (1h30m)"
    )


def test_span_rounds_what_is_left_to_the_second() -> None:
    assert span(timedelta(hours=47, minutes=59, seconds=59, milliseconds=877)) == "2d"
    assert span(timedelta(hours=47, minutes=59, seconds=58, milliseconds=400)) == "1d23h59m58s"
    assert span(timedelta(milliseconds=250)) == "250ms"
    assert span(timedelta(0)) == "0s"
    assert span(timedelta(seconds=-1)) == "0s"
