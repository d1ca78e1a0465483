"""The dashboard's web application: a static page over a small JSON API.

Reading is open to whoever reaches the port (it listens on 127.0.0.1 unless told
otherwise); answering a waiting task needs the dashboard's token
(``Authorization: Bearer <token>``) or, when configured, the user header an
authenticating proxy sets, honoured only from the proxy's addresses. Every answer goes
through :func:`towline.starter.api.answer`, the CLI's way, and records who gave it.
"""

from __future__ import annotations

import getpass
import hmac
import logging
import re
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from temporalio.client import Client

from towline.dashboard import model
from towline.plan.spec import PlanSpec
from towline.starter import api, calls, logs, views

log = logging.getLogger("towline.dashboard")

STATIC = Path(__file__).parent / "static"
ANSWERS = ("approve", "reject", "retry", "skip", "abort")
MAX_LOG_BYTES = 256 * 1024  # per section: the tail, as `tail` would show it
_NAME = re.compile(r"^[^\x00-\x1f\x7f]{1,100}$")
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


@dataclass(frozen=True)
class Access:
    """Who may answer: the holder of ``token``, or the user a trusted proxy names."""

    token: str
    user_header: str | None = None
    trusted_proxies: frozenset[str] = frozenset({"127.0.0.1", "::1"})
    default_name: str = field(default_factory=lambda: _os_user())

    def who(self, request: Request, name: str | None) -> str | None:
        """The name an answer is recorded under, or None when the request may not answer.

        The proxy's header names the user when it comes from a trusted proxy; a valid
        token lets its holder answer under the name the page sends (default: the user
        who started the dashboard).
        """
        if self.user_header:
            user = request.headers.get(self.user_header, "").strip()
            host = request.client.host if request.client else ""
            if user and host in self.trusted_proxies and _NAME.match(user):
                return user
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(token.strip(), self.token):
            return name or self.default_name
        return None


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "someone"


@dataclass
class Dashboard:
    """What the routes share: the client, where the Web UI is, who may answer."""

    client: Client
    namespace: str
    ui_base: str
    access: Access
    plans: OrderedDict[str, PlanSpec | None] = field(default_factory=OrderedDict)

    async def plan(self, run_id: str) -> PlanSpec | None:
        """A run's plan (never changes: kept for the last few hundred runs shown)."""
        if run_id not in self.plans:
            try:
                self.plans[run_id] = (await api.run_input(self.client, run_id)).plan
            except api.UnknownRun:
                self.plans[run_id] = None
            while len(self.plans) > 256:
                self.plans.popitem(last=False)
        return self.plans[run_id]


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


Handler = Callable[[Request], Awaitable[Response]]


def _guarded(fn: Handler) -> Handler:
    """Turn towline's errors into JSON answers a page can show (never a stack trace)."""

    async def handle(request: Request) -> Response:
        try:
            return await fn(request)
        except api.UnknownRun as e:
            return _error(404, str(e))
        except api.Refused as e:
            return _error(409, str(e))
        except api.NoWorker as e:
            return _error(503, str(e))
        except Exception as e:
            log.exception("dashboard request %s failed", request.url.path)
            return _error(500, f"{type(e).__name__}: {e}")

    return handle


async def _index(request: Request) -> Response:
    return FileResponse(STATIC / "index.html")


async def _runs(request: Request) -> Response:
    d: Dashboard = request.app.state.dashboard
    status = request.query_params.get("status") or None
    if status is not None and status not in views.STATUSES:
        return _error(400, f"status: '{status}' is none of {', '.join(views.STATUSES)}")
    runs = [r async for r in api.list_runs(d.client, status=status, limit=100)]
    why = await api.waiting_for(d.client, [r.run_id for r in runs if r.status == "waiting"])
    rows = [
        model.summary_json(r, why.get(r.run_id), ui_base=d.ui_base, namespace=d.namespace)
        for r in runs
    ]
    return JSONResponse({"runs": rows})


async def _run(request: Request) -> Response:
    d: Dashboard = request.app.state.dashboard
    run_id = request.path_params["run_id"]
    state = await api.get_status(d.client, run_id)
    plan = await d.plan(run_id)
    return JSONResponse(model.run_json(state, plan, ui_base=d.ui_base, namespace=d.namespace))


async def _logs(request: Request) -> Response:
    d: Dashboard = request.app.state.dashboard
    run_id, name = request.path_params["run_id"], request.path_params["task"]
    state = await api.get_status(d.client, run_id)
    try:
        name, task = logs.find_task(state, name)
    except logs.UnknownTask as e:
        return _error(404, str(e))
    wid, tid = name.split(".", 1)
    made = await calls.task_calls(d.client, run_id, wid, tid)
    parts = logs.call_sections(made) if len(made) > 1 else logs.sections(task)
    sections = []
    for part in parts:
        content = part.content
        cut = len(content) > MAX_LOG_BYTES
        if cut:
            content = content[-MAX_LOG_BYTES:]
        sections.append(
            {"title": part.title, "text": content.decode(errors="replace"), "truncated": cut}
        )
    message = ""
    if not sections:
        did = "its tool printed nothing" if made else "no tool call was made"
        message = f"task {name} has no output ({task.status}: {did})"
    return JSONResponse({"task": name, "sections": sections, "message": message})


async def _me(request: Request) -> Response:
    d: Dashboard = request.app.state.dashboard
    who = d.access.who(request, None)
    return JSONResponse(
        {"can_answer": who is not None, "user": who, "proxy": bool(d.access.user_header)}
    )


async def _answer(request: Request) -> Response:
    d: Dashboard = request.app.state.dashboard
    if not _same_origin(request):
        return _error(403, "answers are taken only from the dashboard's own page")
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        return _error(415, "send the answer as application/json")
    try:
        body = await request.json()
    except ValueError:
        return _error(400, "the body is not JSON")
    if not isinstance(body, dict):
        return _error(400, "the body must be a JSON object: {task, answer, note?, by?}")
    task, answer, note, name = (body.get(k) for k in ("task", "answer", "note", "by"))
    if answer not in ANSWERS:
        return _error(400, f"answer: expected one of {', '.join(ANSWERS)}")
    if not isinstance(task, str) or not task:
        return _error(400, "task: expected workstream.task, e.g. prod.deploy")
    if note is not None and (not isinstance(note, str) or len(note) > 2000):
        return _error(400, "note: expected text of at most 2000 characters")
    if name is not None and (not isinstance(name, str) or not _NAME.match(name.strip() or "-")):
        return _error(400, "by: expected a name of at most 100 characters")
    who = d.access.who(request, (name or "").strip() or None)
    if who is None:
        how = "the token `towline dashboard` printed (open the link it printed)"
        if d.access.user_header:
            how += f", or sign in through the proxy that sets {d.access.user_header}"
        return _error(401, f"answering needs {how}")
    by = f"{who} (dashboard)"
    run_id = request.path_params["run_id"]
    done = await api.answer(d.client, run_id, task, answer, by=by, note=note or None)
    log.info("dashboard: %s answered %s %s: %s", by, run_id, task, answer)
    return JSONResponse({"message": done, "by": by})


def _same_origin(request: Request) -> bool:
    """A browser names the page a POST comes from; it must be this dashboard's."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1] == host


class _Headers(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        response.headers["Content-Security-Policy"] = _CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
        return response


def build_app(dashboard: Dashboard) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.dashboard = dashboard
        yield

    return Starlette(
        routes=[
            Route("/", _index),
            Route("/api/me", _guarded(_me)),
            Route("/api/runs", _guarded(_runs)),
            Route("/api/runs/{run_id}", _guarded(_run)),
            Route("/api/runs/{run_id}/tasks/{task}/logs", _guarded(_logs)),
            Route("/api/runs/{run_id}/answer", _guarded(_answer), methods=["POST"]),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        middleware=[Middleware(_Headers)],
        lifespan=lifespan,
    )
