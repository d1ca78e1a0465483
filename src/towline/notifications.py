"""Which notifications a run's transition produces, and what they say. Pure.

The run workflow hands :func:`decide` what it looked like before and after a transition
(:class:`Snapshot`: its status and the tasks waiting for a person); the result is the
deliveries to make, one per webhook of the plan's ``notify`` that asked for the event.
The activity in :mod:`towline.activities.notify` sends them.

Events: ``waiting`` (a task began to wait for a person: an approval, an operator's
answer after a failure, a budget to raise, an agent's question; not a circuit breaker,
which needs no one),
and the run's ends ``succeeded``, ``failed``, ``cancelled`` and ``rolled_back``.

Every event has a sequence number the run keeps (carried across continue-as-new) and an
idempotency key ``<run id>:<sequence>:<event>``, sent as the ``Idempotency-Key`` header
and in the body: retries of one delivery carry the same key, so a receiver that saw it
can drop the repeat. The body (``schema: towline.notification/v1``)::

    {"schema": "towline.notification/v1", "event": "waiting", "run_id": "bump-7f3a2c",
     "plan": "bump", "status": "waiting", "reason": "waiting: api.deploy: approval",
     "labels": {"team": "platform"}, "sequence": 2, "at": "2026-01-05T10:00:00+00:00",
     "idempotency_key": "bump-7f3a2c:2:waiting",
     "waiting": [{"task": "api.deploy", "for": "approval",
                  "commands": ["towline approve bump-7f3a2c api.deploy",
                               "towline reject bump-7f3a2c api.deploy"],
                  "update": "approve"}],
     "commands": ["towline status bump-7f3a2c"],
     "web_ui": "http://localhost:8233/namespaces/default/workflows/bump-7f3a2c"}

``web_ui`` is added by the worker that delivers it (the workflow does not know where the
Web UI is). A Slack webhook gets :func:`slack_body` instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field

from towline.plan.spec import NotifySpec

SCHEMA = "towline.notification/v1"
# What a person must do for each kind of wait: the CLI commands, and the update to send
# from the Web UI (budget: none; resume with --raise-budget).
_ANSWERS: dict[str, tuple[tuple[str, ...], str | None]] = {
    "approval": (("approve", "reject"), "approve"),
    "operator": (("retry", "skip", "abort"), "retry"),
}
PERSON_WAITS = ("approval", "operator", "budget", "answer")
TERMINAL = ("succeeded", "failed", "cancelled", "rolled_back")


@dataclass(frozen=True)
class Snapshot:
    """The run as notifications see it: its status, and who waits for a person."""

    status: str
    waiting: frozenset[str] = field(default_factory=frozenset)  # {"ws.task: approval", ...}


class Delivery(BaseModel):
    """One POST to one webhook: what the ``notify`` activity receives."""

    webhook: str = Field(description="the URL, possibly with ${{ secrets.NAME }} in it")
    format: str = "auto"
    key: str = Field(description="the idempotency key, sent as the Idempotency-Key header")
    body: dict[str, Any]
    timeout: timedelta = Field(description="how long the delivery is retried")


@dataclass(frozen=True)
class Context:
    run_id: str
    plan: str
    labels: dict[str, str]
    reason: str | None
    at: datetime


def person_waits(items: list[str] | tuple[str, ...] | frozenset[str]) -> frozenset[str]:
    """The ``"ws.task: reason"`` items that wait for a person."""
    return frozenset(i for i in items if i.rpartition(": ")[2] in PERSON_WAITS)


def event_of(before: Snapshot, after: Snapshot) -> str | None:
    """The event a transition is: a terminal status reached, or new waits for a person."""
    if after.status in TERMINAL:
        return after.status if before.status != after.status else None
    if after.waiting - before.waiting:
        return "waiting"
    return None


def decide(
    before: Snapshot, after: Snapshot, specs: list[NotifySpec], *, sequence: int, ctx: Context
) -> list[Delivery]:
    """The deliveries for the transition ``before`` -> ``after`` (numbered ``sequence``)."""
    event = event_of(before, after)
    if event is None:
        return []
    targets = [s for s in specs if event in s.on]
    if not targets:
        return []
    key = f"{ctx.run_id}:{sequence}:{event}"
    new = after.waiting - before.waiting if event == "waiting" else frozenset()
    body = _body(event, after, new, ctx, sequence=sequence, key=key)
    return [
        Delivery(webhook=s.webhook, format=s.format, key=key, body=body, timeout=s.timeout)
        for s in targets
    ]


def _body(
    event: str,
    after: Snapshot,
    new: frozenset[str],
    ctx: Context,
    *,
    sequence: int,
    key: str,
) -> dict[str, Any]:
    waiting = [_wait(item, ctx.run_id) for item in sorted(new)]
    return {
        "schema": SCHEMA,
        "event": event,
        "run_id": ctx.run_id,
        "plan": ctx.plan,
        "status": after.status,
        "reason": ctx.reason,
        "labels": ctx.labels,
        "sequence": sequence,
        "at": ctx.at.isoformat(),
        "idempotency_key": key,
        "waiting": waiting,
        "commands": [f"towline status {ctx.run_id}"],
    }


def _wait(item: str, run_id: str) -> dict[str, Any]:
    task, _, reason = item.rpartition(": ")
    answers, update = _ANSWERS.get(reason, ((), None))
    commands = [f"towline {a} {run_id} {task}" for a in answers]
    if reason == "budget":
        commands = [f"towline resume {run_id} --raise-budget max_cost_usd=<new limit>"]
    if reason == "answer":  # an agent's question (ask_human): its update is on the agent
        commands, update = [f'towline answer {run_id} {task} "<your answer>"'], "answer"
    return {"task": task, "for": reason, "commands": commands, "update": update}


def is_slack(url: str, fmt: str) -> bool:
    """Whether the (resolved) webhook takes a Slack message rather than towline's body."""
    if fmt != "auto":
        return fmt == "slack"
    return url.startswith("https://hooks.slack.com/")


_ICONS = {
    "waiting": ":raising_hand:",
    "succeeded": ":white_check_mark:",
    "failed": ":x:",
    "cancelled": ":no_entry_sign:",
    "rolled_back": ":leftwards_arrow_with_hook:",
}


def slack_body(body: dict[str, Any]) -> dict[str, Any]:
    """towline's body as a Slack incoming-webhook message (``text`` and one section)."""
    run, event = body["run_id"], body["event"]
    title = f"{_ICONS.get(event, '')} towline run `{run}` ({body['plan']}): {event}".strip()
    lines = [title]
    if body.get("reason"):
        lines.append(str(body["reason"]))
    for wait in body.get("waiting", []):
        commands = " or ".join(f"`{c}`" for c in wait["commands"])
        lines.append(f"• `{wait['task']}` waits for {wait['for']}: {commands}")
    if body.get("web_ui"):
        lines.append(f"<{body['web_ui']}|Open in the Temporal Web UI>")
    text = "\n".join(lines)
    return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}


class NotifyCarry(BaseModel):
    """What the run keeps of its notifications across continue-as-new."""

    sequence: int = 0
    waiting: list[str] = Field(default_factory=list)
