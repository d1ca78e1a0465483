"""What every tool shares: its call and result models, and the ``@tool`` decorator.

A tool is a Temporal activity named after its ``tool:`` name. Its input arrives as a
:class:`ToolCall` (the task's context and the resolved ``with`` mapping); the decorator
validates ``with`` against the tool's own pydantic model, resolves secrets, heartbeats
while the tool runs, and turns failures into categorised, redacted ``ApplicationError``s.
Outputs too large for workflow history go to the artifact store, history keeping a
reference (:func:`towline.activities.artifacts.store_large_outputs`).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from towline.activities import plan_files
from towline.activities import secrets as worker_secrets
from towline.activities.artifacts import read_artifact, store_large_outputs
from towline.activities.usage import Meter
from towline.errors import ToolError, is_retryable
from towline.holding import Snapshot
from towline.state import Usage
from towline.store import StoreError
from towline.stored import placeholders, stored_ref
from towline.toolcall import ToolCall, ToolContext, ToolResult

HEARTBEAT_EVERY = 1.0  # seconds; the SDK throttles what reaches the server
_SECRET = re.compile(r"\$\{\{\s*secrets\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


class ToolInput(BaseModel):
    """Base for tool input models: strict, so a typo in ``with`` is an error."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


In = TypeVar("In", bound=BaseModel)
ToolFn = Callable[[In, ToolContext], Awaitable[ToolResult | dict[str, Any]]]


@dataclass(frozen=True)
class Tool:
    """A registered tool: its name, input model, one-line description and activity.

    ``outputs`` says what the tool returns (its function's docstring), for the catalogue.
    """

    name: str
    input_model: type[BaseModel]
    description: str
    activity: Callable[[ToolCall], Awaitable[ToolResult]] | None
    outputs: str = ""


class _Progress:
    """What the running tool last reported, sent (redacted) with each heartbeat, and
    what it spent (:mod:`towline.activities.usage`)."""

    def __init__(self, meter: Meter) -> None:
        self.details: Any = None
        self.secrets: dict[str, str] = {}
        self.meter = meter

    def beat(self) -> None:
        details = None if self.details is None else redact(self.details, self.secrets)
        usage = self.meter.heartbeat_detail()
        if usage is not None:
            activity.heartbeat(details, usage)
        elif details is None:
            activity.heartbeat()
        else:
            activity.heartbeat(details)


_progress: contextvars.ContextVar[_Progress] = contextvars.ContextVar("towline_progress")
# What the last attempt run in this context spent itself (for the run history's record).
attempt_usage: contextvars.ContextVar[Usage] = contextvars.ContextVar("towline_attempt_usage")


def report_progress(details: Any) -> None:
    """Attach ``details`` (e.g. the tail of a command's output) to the next heartbeat."""
    progress = _progress.get(None)
    if progress is not None:
        progress.details = details


def spend(usage: Usage) -> None:
    """Count what a paid call just cost, at once: a heartbeat carries it, so it is counted
    even if this attempt fails or its worker dies before the tool returns."""
    progress = _progress.get(None)
    if progress is not None and (usage.tokens or usage.cost_usd):
        progress.meter.spent = progress.meter.spent.add(usage)
        attempt_usage.set(progress.meter.spent)
        progress.beat()


async def _heartbeat_forever(progress: _Progress) -> None:
    # The first beat waits an interval: a tool done sooner needs none (each is a call to
    # the server).
    while True:
        await asyncio.sleep(HEARTBEAT_EVERY)
        progress.beat()


def resolve_secrets(value: Any, found: dict[str, str]) -> Any:
    """Replace ``${{ secrets.NAME }}`` with the worker's secret (see :mod:`.secrets`).

    Each value used is added to ``found`` so it can be redacted from what the tool returns.
    """
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            name = m.group(1)
            secret = worker_secrets.lookup(name)
            if secret is None:
                raise ToolError(
                    "validation", f"secret '{name}' is not set", hint=worker_secrets.where(name)
                )
            found[name] = secret
            return secret

        return _SECRET.sub(sub, value)
    if isinstance(value, dict):
        return {k: resolve_secrets(v, found) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_secrets(v, found) for v in value]
    return value


def expand_stored(value: Any) -> Any:
    """Put stored outputs back: a stub becomes its content (text, or the JSON value), and
    a placeholder inside a string becomes its text. An upstream task's large output is
    thus the same input to a tool as a small one."""
    if (ref := stored_ref(value)) is not None:
        data = read_artifact(ref).decode(errors="replace")
        return json.loads(data) if ref.endswith(".json") else data
    if isinstance(value, str):
        for text, ref in placeholders(value):
            value = value.replace(text, read_artifact(ref).decode(errors="replace"))
        return value
    if isinstance(value, dict):
        return {k: expand_stored(v) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_stored(v) for v in value]
    return value


def redact(value: Any, secrets: dict[str, str]) -> Any:
    """Replace every secret value inside ``value`` with ``***``."""
    if not secrets:
        return value
    if isinstance(value, str):
        # Longest first, so a secret that contains another is hidden whole.
        for secret in sorted(secrets.values(), key=len, reverse=True):
            if secret:
                value = value.replace(secret, "***")
        return value
    if isinstance(value, dict):
        return {k: redact(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, secrets) for v in value]
    return value


def run_page(run_id: str) -> str | None:
    """The run's page in the Temporal Web UI, as this worker's client reaches the server
    (``TOWLINE_UI_URL`` overrides the guess); None outside an activity."""
    from towline.starter.local import web_ui_link

    try:
        client = activity.client()
    except RuntimeError:
        return None
    return web_ui_link(client.service_client.config.target_host, client.namespace, run_id)


def _validation_message(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"])
        parts.append(f"with.{where}: {e['msg']}" if where else e["msg"])
    return "; ".join(parts)


def tool(name: str, input_model: type[In], description: str) -> Callable[[ToolFn[In]], Tool]:
    """Register ``fn(args, ctx)`` as the activity behind ``tool: <name>``."""

    def decorate(fn: ToolFn[In]) -> Tool:
        async def run(call: ToolCall) -> ToolResult:
            info = activity.info()
            meter = Meter(info)
            progress = _Progress(meter)
            secrets = progress.secrets
            _progress.set(progress)
            attempt_usage.set(Usage())
            beat = asyncio.create_task(_heartbeat_forever(progress))
            try:
                _refuse_if_expired(info)
                with_files = await asyncio.to_thread(plan_files.materialize, call.args)
                given = await asyncio.to_thread(expand_stored, with_files)
                args = input_model.model_validate(resolve_secrets(given, secrets))
                result = await fn(args, call.context)
                if isinstance(result, dict):
                    result = ToolResult(outputs=result)
                result.attempt = info.attempt
                meter.spent = meter.spent.add(result.usage)
                attempt_usage.set(meter.spent)
                # This attempt's spending and what dead attempts before it left unreported.
                result.usage = meter.unreported
                result.outputs = store_large_outputs(
                    call.context, redact(result.outputs, secrets), prefix=_outputs_name(info)
                )
                if call.snapshot is not None:
                    result.snapshot = await _snapshot(call, info)
                return result
            except asyncio.CancelledError:
                await meter.report(call.context)
                raise
            except ApplicationError:
                raise
            except Exception as e:
                if isinstance(e, ToolError):
                    err = e
                    err.outputs = store_large_outputs(
                        call.context, redact(e.outputs, secrets), prefix=_outputs_name(info)
                    )
                elif isinstance(e, ValidationError):
                    err = ToolError("validation", f"bad input: {_validation_message(e)}")
                else:
                    err = ToolError("system", f"{type(e).__name__}: {e}")
                unsent = Usage() if await meter.report(call.context) else meter.unreported
                if meter.reported:
                    progress.beat()  # nothing left to carry over to the next attempt
                raise _application_error(err, info.attempt, secrets, unsent) from None
            finally:
                beat.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await beat

        run.__name__ = run.__qualname__ = f"tool_{name.replace('.', '_')}"
        run.__doc__ = description
        outputs = inspect.cleandoc(fn.__doc__ or "")
        return Tool(name, input_model, description, activity.defn(name=name)(run), outputs)

    return decorate


def expired_for(started: datetime, timeout: timedelta | None, now: datetime) -> float | None:
    """How long past its heartbeat timeout an attempt handed out at ``started`` is at
    ``now`` (None: it is still live). Until its first heartbeat the server times an
    attempt out ``timeout`` after handing it out."""
    if timeout is None:
        return None
    late = (now - started - timeout).total_seconds()
    return late if late > 0 else None


def _refuse_if_expired(info: activity.Info) -> None:
    """A worker frozen (SIGSTOP, a paused VM) after it was handed a call runs it when it
    thaws, though the server timed the attempt out meanwhile and another worker may have
    made the call and succeeded: refuse it rather than run the tool a second time."""
    late = expired_for(info.started_time, info.heartbeat_timeout, datetime.now(UTC))
    if late is not None:
        raise ToolError(
            "system",
            f"this attempt began {late:.1f}s past its heartbeat timeout (the worker was "
            "frozen?): the server has timed it out, so the tool is not run",
        )


async def _snapshot(call: ToolCall, info: activity.Info) -> Snapshot:
    """Save the workspace as the call left it. A call whose changes could not be saved
    has not succeeded: another worker could not carry on from them (it is retried)."""
    # Imported here: snapshots runs git through process.py, which imports this module.
    from towline.activities import snapshots

    assert call.snapshot is not None
    name = f"{call.context.task}-{info.activity_id}-{info.attempt}"
    try:
        return await snapshots.take(Path(call.context.workspace), call.snapshot, name=name)
    except (snapshots.SnapshotError, StoreError, OSError) as e:
        raise ToolError("system", f"the workspace could not be saved to the store: {e}") from e


def _outputs_name(info: activity.Info) -> str:
    """Names the artifacts of one attempt's oversized outputs (a retry writes its own)."""
    return f"outputs-{info.activity_id}-{info.attempt}"


def _application_error(
    err: ToolError, attempt: int, secrets: dict[str, str], usage: Usage
) -> ApplicationError:
    details: dict[str, Any] = {
        "category": err.category,
        "message": redact(err.message, secrets),
        "hint": err.hint,
        "output": redact(err.output, secrets),
        "outputs": redact(err.outputs, secrets),
        "attempt": attempt,
    }
    if usage.tokens or usage.cost_usd:
        details["usage"] = usage.model_dump()
    return ApplicationError(
        str(details["message"]),
        details,
        type=err.category,
        non_retryable=not is_retryable(err.category),
        # A tool that fails the expected way (bad input, failing tests, a conflict) is the
        # plan's business, not the worker's: no error-level log with a traceback for it.
        category=ApplicationErrorCategory.UNSPECIFIED
        if err.category in ("tool", "system", "timeout")
        else ApplicationErrorCategory.BENIGN,
    )
