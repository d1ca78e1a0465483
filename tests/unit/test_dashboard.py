"""The dashboard without a server: the run page's data (graph, waits, figures) from a
run's state and plan, and who may answer, through the real web application."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.helpers import echo, plan, sh, ws
from towline.dashboard import model
from towline.dashboard.app import Access, Dashboard, build_app
from towline.plan.load import check_data
from towline.state import (
    Decision,
    ErrorInfo,
    RunState,
    TaskState,
    Usage,
    WorkstreamState,
)

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
TOKEN = "a-token-of-the-test-0123456789"


def _plan() -> Any:
    return check_data(
        plan(
            ws(
                "api",
                echo("build"),
                sh("test", "make test", needs=["build"]),
                echo("deploy", needs=["test"], approval={"required": True}),
                echo("notes", **{"with": {"api_key": "sk-literal-in-plan"}}),
            ),
            ws("web", echo("build", needs=["api.test"]), echo("ship", needs=["build"])),
            ws("docs", echo("publish"), needs=["api"]),
            name="graph",
        )
    )


def _state() -> RunState:
    return RunState(
        run_id="r1",
        plan="graph",
        status="waiting",
        started_at=T0,
        workstreams={
            "api": WorkstreamState(
                status="waiting",
                started_at=T0,
                tasks={
                    "build": TaskState(
                        tool="echo",
                        status="succeeded",
                        attempts=1,
                        started_at=T0,
                        ended_at=T0 + timedelta(seconds=2),
                    ),
                    "test": TaskState(
                        tool="shell",
                        status="succeeded",
                        attempts=3,
                        runs=2,
                        fixes=1,
                        usage=Usage(tokens=1200, cost_usd=0.25),
                        decisions=[Decision(answer="retry", by="ops", at=T0)],
                        started_at=T0,
                        ended_at=T0 + timedelta(seconds=90),
                    ),
                    "deploy": TaskState(
                        tool="echo",
                        status="waiting",
                        waiting_for="approval",
                        reason="waiting for approval: towline approve|reject r1 api.deploy",
                        wait_deadline=T0 + timedelta(hours=48),
                    ),
                    "notes": TaskState(
                        tool="echo",
                        status="failed",
                        error=ErrorInfo(category="validation", message="bad input"),
                    ),
                },
            ),
            "web": WorkstreamState(status="running"),
            "docs": WorkstreamState(status="skipped"),
        },
    )


def test_the_graph_has_a_node_per_task_grouped_by_workstream_and_an_edge_per_need() -> None:
    graph = model.graph(_state(), _plan())
    assert graph["level"] == "task"
    assert [c["id"] for c in graph["clusters"]] == ["ws:api", "ws:web", "ws:docs"]
    statuses = {n["id"]: n["status"] for n in graph["nodes"]}
    assert statuses == {
        "api.build": "succeeded",
        "api.test": "succeeded",
        "api.deploy": "waiting",
        "api.notes": "failed",
        "web.build": "pending",  # its workstream runs, the task has not started
        "web.ship": "pending",
        "docs.publish": "skipped",  # its workstream never ran: it ended skipped
    }
    edges = {(e["source"], e["target"], e["kind"]) for e in graph["edges"]}
    assert edges == {
        ("api.build", "api.test", "task"),
        ("api.test", "api.deploy", "task"),
        ("api.test", "web.build", "task"),  # a need across workstreams
        ("web.build", "web.ship", "task"),
        # docs needs api: api's last tasks lead to docs' first
        ("api.deploy", "docs.publish", "workstream"),
        ("api.notes", "docs.publish", "workstream"),
    }


def test_a_wide_run_is_drawn_a_node_per_workstream() -> None:
    wide = check_data(
        plan(
            *[ws(f"w{i}", *[echo(f"t{j}") for j in range(4)]) for i in range(80)],
            ws("last", echo("t"), needs=["w0", "w1"]),
            name="wide",
        )
    )
    state = RunState(run_id="r2", plan="wide", workstreams={"w0": WorkstreamState(status="failed")})
    graph = model.graph(state, wide)
    assert graph["level"] == "workstream"
    assert len(graph["nodes"]) == 81
    assert graph["nodes"][0] == {
        "id": "w0",
        "label": "w0",
        "tool": "4 tasks",
        "status": "failed",
        "parent": None,
    }
    assert {(e["source"], e["target"]) for e in graph["edges"]} == {("w0", "last"), ("w1", "last")}


def test_the_run_page_has_its_waits_figures_and_links_but_no_plan_values() -> None:
    now = T0 + timedelta(seconds=100)
    page = model.run_json(_state(), _plan(), ui_base="http://ui:8233", namespace="default", now=now)
    assert page["web_ui"] == "http://ui:8233/namespaces/default/workflows/r1"
    assert (
        page["workstreams"][0]["web_ui"] == "http://ui:8233/namespaces/default/workflows/r1%2Fapi"
    )
    assert page["waiting"] == "approval of api.deploy"
    (wait,) = page["waits"]
    assert wait == {
        "task": "api.deploy",
        "waiting_for": "approval",
        "awaits": "a person's approval",
        "reason": "waiting for approval: towline approve|reject r1 api.deploy",
        "answers": ["approve", "reject"],
        "command": "towline approve|reject r1 api.deploy",
        "deadline": (T0 + timedelta(hours=48)).isoformat(),
        "error": None,
    }
    test = next(t for t in page["tasks"] if t["id"] == "api.test")
    assert (test["attempts"], test["runs"], test["fixes"]) == (3, 2, 1)
    assert (test["duration_s"], test["tokens"], test["cost_usd"]) == (90.0, 1200, 0.25)
    assert test["note"] == "retried by ops; 1 fix; ran 2 times"
    assert [t["id"] for t in page["tasks"]][-2:] == ["web.ship", "docs.publish"]
    # What a plan wrote in `with` never reaches the page.
    assert "sk-literal-in-plan" not in json.dumps(page)


@pytest.fixture
def app() -> Iterator[TestClient]:
    """The real application, with no Temporal client: only what needs none is asked."""
    access = Access(token=TOKEN, user_header="X-Forwarded-User", trusted_proxies=frozenset())
    dashboard = Dashboard(client=None, namespace="default", ui_base="http://ui", access=access)  # type: ignore[arg-type]
    with TestClient(build_app(dashboard), base_url="http://127.0.0.1:8234") as client:
        yield client


def _answer(app: TestClient, **headers: str) -> Any:
    body = {"task": "api.deploy", "answer": "approve"}
    return app.post("/api/runs/r1/answer", json=body, headers=headers)


def test_an_answer_without_the_token_is_refused(app: TestClient) -> None:
    refused = _answer(app)
    assert refused.status_code == 401
    assert refused.json()["error"].startswith("answering needs the token `towline dashboard`")
    assert _answer(app, authorization="Bearer not-the-token").status_code == 401
    assert _answer(app, authorization=TOKEN).status_code == 401  # not as a bearer token
    # A proxy's header counts only from the proxy's address (none is trusted here).
    assert _answer(app, **{"X-Forwarded-User": "mallory"}).status_code == 401
    me = app.get("/api/me").json()
    assert me == {"can_answer": False, "user": None, "proxy": True}
    me = app.get("/api/me", headers={"authorization": f"Bearer {TOKEN}"}).json()
    assert me["can_answer"] is True


def test_an_answer_from_another_site_or_not_json_is_refused(app: TestClient) -> None:
    good = {"authorization": f"Bearer {TOKEN}"}
    other = _answer(app, origin="http://evil.example", **good)
    assert other.status_code == 403
    form = app.post(
        "/api/runs/r1/answer",
        content="task=api.deploy&answer=approve",
        headers={"content-type": "application/x-www-form-urlencoded", **good},
    )
    assert form.status_code == 415
    bad = app.post(
        "/api/runs/r1/answer", json={"task": "api.deploy", "answer": "yes"}, headers=good
    )
    assert bad.status_code == 400
    assert bad.json() == {"error": "answer: expected one of approve, reject, retry, skip, abort"}


def test_the_page_is_served_with_a_strict_content_security_policy(app: TestClient) -> None:
    page = app.get("/")
    assert page.status_code == 200
    assert '<script src="/static/app.js" defer></script>' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert app.get("/static/vendor/dagre.min.js").status_code == 200
    assert app.get("/api/runs?status=nope").json() == {
        "error": "status: 'nope' is none of pending, waiting, running, succeeded, failed, "
        "skipped, cancelled, rolled_back"
    }


def test_a_trusted_proxy_names_who_answers() -> None:
    access = Access(token=TOKEN, user_header="X-Forwarded-User", trusted_proxies=frozenset({"p"}))

    class _Request:
        def __init__(self, host: str, headers: dict[str, str]) -> None:
            self.client = type("C", (), {"host": host})()
            self.headers = headers

    assert access.who(_Request("p", {"X-Forwarded-User": "ana"}), None) == "ana"  # type: ignore[arg-type]
    assert access.who(_Request("q", {"X-Forwarded-User": "ana"}), None) is None  # type: ignore[arg-type]
    with_token = _Request("q", {"authorization": f"Bearer {TOKEN}"})
    assert access.who(with_token, "bo") == "bo"  # type: ignore[arg-type]
    assert access.who(with_token, None) == access.default_name  # type: ignore[arg-type]
