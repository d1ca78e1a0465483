"""The ``http`` tool through whole towline runs, against a real HTTP server on 127.0.0.1.

Most tests run several independent tasks in one plan (``failure_policy: continue``) and
check each task's outcome: one run per behaviour would cost seconds for nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import RunPlan
from tests.fakes.servers import LocalServer, Reply, Request
from tests.helpers import plan, ws
from towline.activities.artifacts import read_artifact
from towline.plan.load import PlanError, check_data
from towline.state import RunState, TaskState
from towline.worker.devserver import free_port

BIG = 200 * 1024  # bytes of the /big reply: more than max_text keeps


def _route(request: Request) -> Reply:
    """Replies chosen by path: /status/<code>, /echo, /big, /redirect."""
    parts = request.path.strip("/").split("/")
    if parts[0] == "status":
        return Reply.of_json({"error": f"you asked for {parts[1]}"}, int(parts[1]))
    if parts[0] == "echo":
        return Reply.of_json(
            {
                "method": request.method,
                "headers": request.headers,
                "body": request.body.decode(),
                "query": request.query,
            },
            201 if request.method == "POST" else 200,
            **{"X-Reply": "yes"},
        )
    if parts[0] == "big":
        return Reply(200, b"x" * BIG, {"Content-Type": "text/plain"})
    if parts[0] == "redirect":
        return Reply(302, b"", {"Location": "/echo?from=redirect"})
    if parts[0] == "html":
        return Reply(200, "<p>hello</p>", {"Content-Type": "text/html; charset=utf-8"})
    return Reply(404, "not here", {"Content-Type": "text/plain"})


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with LocalServer(_route) as s:
        yield s


def _task(tid: str, with_: dict[str, Any], **extra: Any) -> dict[str, Any]:
    extra.setdefault("retry", {"max_attempts": 1})
    return {"id": tid, "tool": "http", "with": with_, **extra}


def _tasks(state: RunState) -> dict[str, TaskState]:
    return state.workstreams["w"].tasks


async def _run(run_plan: RunPlan, *tasks: dict[str, Any]) -> dict[str, TaskState]:
    return _tasks(await run_plan(plan(ws("w", *tasks), failure_policy="continue")))


async def test_requests_send_what_the_plan_says_and_outputs_the_reply(
    run_plan: RunPlan, server: LocalServer
) -> None:
    tasks = await _run(
        run_plan,
        _task("get", {"url": f"{server.url}/echo?q=1", "headers": {"X-Token": "abc"}}),
        _task("post", {"method": "post", "url": f"{server.url}/echo", "json": {"a": [1, 2]}}),
        _task("put", {"method": "PUT", "url": f"{server.url}/echo", "body": "plain text"}),
        _task("created", {"method": "POST", "url": f"{server.url}/echo", "expect": [201]}),
        _task("html", {"url": f"{server.url}/html"}),
    )

    get = tasks["get"]
    assert get.status == "succeeded", get.error
    assert get.outputs["status"] == 200
    assert get.outputs["reason"] == "OK"
    assert get.outputs["headers"]["x-reply"] == "yes"
    assert get.outputs["json"]["method"] == "GET"
    assert get.outputs["json"]["headers"]["x-token"] == "abc"
    assert get.outputs["json"]["query"] == {"q": ["1"]}
    assert json.loads(get.outputs["text"]) == get.outputs["json"]
    assert get.outputs["text_truncated"] is False
    assert get.outputs["body"] is None

    post = tasks["post"].outputs["json"]
    assert tasks["post"].outputs["status"] == 201  # any 2xx by default
    assert json.loads(post["body"]) == {"a": [1, 2]}
    assert post["headers"]["content-type"] == "application/json"

    put = tasks["put"].outputs["json"]
    assert (put["method"], put["body"]) == ("PUT", "plain text")

    assert tasks["created"].status == "succeeded", tasks["created"].error

    html = tasks["html"].outputs
    assert html["text"] == "<p>hello</p>"
    assert html["json"] is None  # not JSON: not parsed


async def test_redirects_are_followed_unless_told_not_to(
    run_plan: RunPlan, server: LocalServer
) -> None:
    tasks = await _run(
        run_plan,
        _task("follow", {"url": f"{server.url}/redirect"}),
        _task("stay", {"url": f"{server.url}/redirect", "follow_redirects": False}),
    )

    assert tasks["follow"].outputs["url"] == f"{server.url}/echo?from=redirect"
    stay = tasks["stay"]
    assert stay.status == "failed"
    assert stay.error is not None
    assert stay.error.category == "validation"
    assert "HTTP 302 Found (expected 2xx)" in stay.error.message


async def test_unexpected_statuses_are_categorised(run_plan: RunPlan, server: LocalServer) -> None:
    retry = {"max_attempts": 2, "initial_interval": "100ms"}
    tasks = await _run(
        run_plan,
        _task("down", {"url": f"{server.url}/status/503"}, retry=retry),
        _task("limited", {"url": f"{server.url}/status/429"}, retry=retry),
        _task("missing", {"url": f"{server.url}/status/404"}, retry=retry),
        _task("clash", {"url": f"{server.url}/status/409"}, retry=retry),
        _task("wrong-2xx", {"url": f"{server.url}/echo", "expect": [204]}, retry=retry),
    )

    def error(tid: str) -> tuple[str, str, int]:
        t = tasks[tid]
        assert t.status == "failed"
        assert t.error is not None
        return t.error.category, t.error.message, t.attempts

    category, message, attempts = error("down")
    assert (category, attempts) == ("tool", 2)  # the server's trouble: retried
    assert message == (
        f"GET {server.url}/status/503: HTTP 503 Service Unavailable (expected 2xx): "
        '{"error": "you asked for 503"}'
    )
    assert tasks["down"].outputs["status"] == 503  # the reply is kept with the failure
    assert error("limited")[0::2] == ("tool", 2)
    category, message, attempts = error("missing")
    assert (category, attempts) == ("validation", 1)  # the request is wrong: not retried
    assert "HTTP 404 Not Found (expected 2xx)" in message
    assert error("clash")[0::2] == ("conflict", 1)
    category, message, _ = error("wrong-2xx")
    assert category == "validation"
    assert "HTTP 200 OK (expected 204)" in message
    hits = [r.path for r in server.requests]
    assert hits.count("/status/503") == 2
    assert hits.count("/status/404") == 1


async def test_unreachable_urls_fail_as_tool_errors_naming_the_url(run_plan: RunPlan) -> None:
    refused = f"http://127.0.0.1:{free_port()}/api"  # nothing listens there
    nowhere = "http://no-such-host.invalid/api"  # .invalid never resolves (RFC 6761)
    tasks = await _run(
        run_plan,
        _task("refused", {"url": refused}),
        _task("nowhere", {"url": nowhere, "timeout": "20s"}),
    )

    for tid, url in (("refused", refused), ("nowhere", nowhere)):
        t = tasks[tid]
        assert t.status == "failed"
        assert t.error is not None
        assert t.error.category == "tool"
        assert t.error.message.startswith(f"cannot reach {url}: ")
    refused_error = tasks["refused"].error
    assert refused_error is not None
    assert refused_error.message == f"cannot reach {refused}: Connection refused"


async def test_a_slow_server_hits_the_request_timeout(
    run_plan: RunPlan, server: LocalServer
) -> None:
    def slow(request: Request) -> Reply:
        server.wait_slowly()
        return Reply(200)

    server.handler = slow
    tasks = await _run(run_plan, _task("slow", {"url": f"{server.url}/x", "timeout": "500ms"}))

    t = tasks["slow"]
    assert t.status == "failed"
    assert t.error is not None
    assert t.error.category == "timeout"
    assert t.error.message == f"GET {server.url}/x: no reply within 500ms"


async def test_a_large_body_goes_whole_to_an_artifact(
    run_plan: RunPlan, server: LocalServer
) -> None:
    tasks = await _run(run_plan, _task("big", {"url": f"{server.url}/big", "max_text": 1000}))

    out = tasks["big"].outputs
    assert out["bytes"] == BIG
    assert out["text"] == "x" * 1000
    assert out["text_truncated"] is True
    assert read_artifact(out["body"]) == b"x" * BIG


async def test_a_secret_sent_in_a_header_is_redacted_from_the_outputs(
    run_plan: RunPlan, server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOWLINE_SECRET_HTTP_TOKEN", "s3cr3t-header-value")
    tasks = await _run(
        run_plan,
        _task(
            "auth",
            {
                "url": f"{server.url}/echo",
                "headers": {"Authorization": "Bearer ${{ secrets.HTTP_TOKEN }}"},
            },
        ),
    )

    assert server.requests[0].headers["authorization"] == "Bearer s3cr3t-header-value"
    out = tasks["auth"].outputs
    assert out["json"]["headers"]["authorization"] == "Bearer ***"
    assert "s3cr3t-header-value" not in json.dumps(out)


def test_bad_input_is_rejected_before_the_run_at_its_path() -> None:
    with pytest.raises(PlanError) as e:
        check_data(
            plan(
                ws(
                    "w",
                    _task("a", {"url": "ftp://example.com/x"}),
                    _task("b", {"url": "http://x/", "json": {}, "body": "y"}),
                    _task("c", {"url": "http://x/", "method": "FETCH"}),
                    _task("d", {"url": "http://x/", "expect": [700]}),
                    _task("e", {"url": "http://x/", "timeout": "soon"}),
                )
            )
        )
    text = str(e.value)
    assert "workstreams[0].tasks[0].with.url: must be an http:// or https:// URL" in text
    assert "workstreams[0].tasks[1].with: give 'json' or 'body', not both" in text
    assert "workstreams[0].tasks[2].with.method" in text
    assert "workstreams[0].tasks[3].with.expect: 700 is not an HTTP status" in text
    assert "workstreams[0].tasks[4].with.timeout: not a duration: 'soon'" in text


async def test_a_bad_url_known_only_at_run_time_fails_the_task_as_validation(
    run_plan: RunPlan,
) -> None:
    tasks = await _run(
        run_plan,
        {"id": "make", "tool": "echo", "with": {"url": "not a url"}},
        _task("call", {"url": "${{ tasks.make.outputs.url }}"}, needs=["make"]),
    )

    t = tasks["call"]
    assert t.status == "failed"
    assert t.error is not None
    assert t.error.category == "validation"
    assert t.error.message.startswith("bad input: with.url: ")
