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
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from towline.activities import plan_files
from towline.activities import secrets as worker_secrets
from towline.activities.artifacts import store_large_outputs
from towline.errors import ToolError, is_retryable
from towline.holding import Snapshot
from towline.store import StoreError
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
    """What the running tool last reported; sent (redacted) with each heartbeat."""

    def __init__(self) -> None:
        self.details: Any = None
        self.secrets: dict[str, str] = {}


_progress: contextvars.ContextVar[_Progress] = contextvars.ContextVar("towline_progress")


def report_progress(details: Any) -> None:
    """Attach ``details`` (e.g. the tail of a command's output) to the next heartbeat."""
    progress = _progress.get(None)
    if progress is not None:
        progress.details = details


async def _heartbeat_forever(progress: _Progress) -> None:
    # The first beat waits an interval: a tool done sooner needs none (each is a call to
    # the server).
    while True:
        await asyncio.sleep(HEARTBEAT_EVERY)
        if progress.details is None:
            activity.heartbeat()
        else:
            activity.heartbeat(redact(progress.details, progress.secrets))


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
            progress = _Progress()
            secrets = progress.secrets
            _progress.set(progress)
            beat = asyncio.create_task(_heartbeat_forever(progress))
            try:
                with_files = await asyncio.to_thread(plan_files.materialize, call.args)
                args = input_model.model_validate(resolve_secrets(with_files, secrets))
                result = await fn(args, call.context)
                if isinstance(result, dict):
                    result = ToolResult(outputs=result)
                result.attempt = info.attempt
                result.outputs = store_large_outputs(
                    call.context, redact(result.outputs, secrets), prefix=_outputs_name(info)
                )
                if call.snapshot is not None:
                    result.snapshot = await _snapshot(call, info)
                return result
            except ToolError as e:
                e.outputs = store_large_outputs(
                    call.context, redact(e.outputs, secrets), prefix=_outputs_name(info)
                )
                raise _application_error(e, info.attempt, secrets) from None
            except ValidationError as e:
                err = ToolError("validation", f"bad input: {_validation_message(e)}")
                raise _application_error(err, info.attempt, secrets) from None
            except (asyncio.CancelledError, ApplicationError):
                raise
            except Exception as e:
                err = ToolError("system", f"{type(e).__name__}: {e}")
                raise _application_error(err, info.attempt, secrets) from None
            finally:
                beat.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await beat

        run.__name__ = run.__qualname__ = f"tool_{name.replace('.', '_')}"
        run.__doc__ = description
        outputs = inspect.cleandoc(fn.__doc__ or "")
        return Tool(name, input_model, description, activity.defn(name=name)(run), outputs)

    return decorate


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


def _application_error(err: ToolError, attempt: int, secrets: dict[str, str]) -> ApplicationError:
    details = {
        "category": err.category,
        "message": redact(err.message, secrets),
        "hint": err.hint,
        "output": redact(err.output, secrets),
        "outputs": redact(err.outputs, secrets),
        "attempt": attempt,
    }
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
