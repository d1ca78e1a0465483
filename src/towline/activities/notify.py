"""The ``notify`` activity: POST one notification to one webhook.

The webhook's ``${{ secrets.NAME }}`` is resolved here, in the worker, and the URL never
leaves it: failures name the webhook as ``***`` (the secret redacted), so neither the
run's history nor the worker's log holds it. Every attempt sends the delivery's
``Idempotency-Key``. A reply of 2xx is delivered; 408, 429, 5xx or no reply are retried
by the run's retry policy until the delivery's deadline (:mod:`towline.workflows.notify`);
any other 4xx is final (the receiver refuses it, and would again).
"""

from __future__ import annotations

from typing import Any

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from towline.activities.base import redact, resolve_secrets, run_page
from towline.activities.tools.http import error_reason
from towline.errors import ToolError
from towline.notifications import Delivery, is_slack, slack_body

ACTIVITY = "notify"
REFUSED = "notify_refused"  # non-retryable: the receiver said no
SEND_TIMEOUT = 10.0


@activity.defn(name=ACTIVITY)
async def notify(delivery: Delivery) -> int:
    """Send ``delivery``; returns the receiver's HTTP status."""
    secrets: dict[str, str] = {}
    try:
        url = resolve_secrets(delivery.webhook, secrets)
    except ToolError as e:
        raise ApplicationError(
            f"notify: {e.message} ({e.hint})", type=REFUSED, non_retryable=True
        ) from None
    body: dict[str, Any] = {**delivery.body, "web_ui": run_page(delivery.body["run_id"])}
    payload = slack_body(body) if is_slack(url, delivery.format) else body
    shown = redact(url, secrets)
    headers = {"Idempotency-Key": delivery.key, "User-Agent": "towline"}
    try:
        async with httpx.AsyncClient(timeout=SEND_TIMEOUT) as client:
            reply = await client.post(url, json=payload, headers=headers)
    except httpx.HTTPError as e:
        raise _retry(f"notify {shown}: {redact(error_reason(e), secrets)}") from None
    if reply.is_success:
        return reply.status_code
    said = f"notify {shown}: HTTP {reply.status_code} {reply.reason_phrase}"
    if reply.status_code >= 500 or reply.status_code in (408, 429):
        raise _retry(said)
    raise ApplicationError(said, type=REFUSED, non_retryable=True)


def _retry(message: str) -> ApplicationError:
    # A receiver that is down is the receiver's business: no error-level log each try.
    return ApplicationError(message, type="tool", category=ApplicationErrorCategory.BENIGN)
