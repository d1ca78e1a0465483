"""What the outside world sees of a task: its metrics, its trace span and its log lines.

The workstream wraps each task's lifecycle in :func:`task`. Everything here is
replay-safe: metrics go through the workflow's meter, log lines through
``workflow.logger`` (both silent during replay), and spans through Temporal's
replay-safe tracer provider, which gives a span replayed on another worker the same id
and ends it once. Spans are made only when the worker set that provider up
(:mod:`towline.worker.tracing`); otherwise a task costs no tracing at all.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode
from temporalio import workflow
from temporalio.contrib.opentelemetry import ReplaySafeTracerProvider

from towline.state import TaskState
from towline.workflows import metrics

if TYPE_CHECKING:
    from towline.plan.spec import TaskSpec
    from towline.workflows.task import TaskEnv

TRACER_NAME = "towline"


def tracer() -> trace.Tracer | None:
    """The replay-safe tracer when tracing is on in this worker, else None."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, ReplaySafeTracerProvider):
        return provider.get_tracer(TRACER_NAME)
    return None


@contextlib.contextmanager
def span(name: str, attributes: Mapping[str, str | int]) -> Iterator[Span | None]:
    """A span around workflow code (or nothing when tracing is off)."""
    t = tracer()
    if t is None:
        yield None
        return
    with (
        t.start_as_current_span(
            name,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
            end_on_exit=False,
        ) as s,
        _unless_evicted(s.end),
    ):
        yield s


@contextlib.contextmanager
def task(
    env: TaskEnv, spec: TaskSpec, state: TaskState, *, resumed: bool = False
) -> Iterator[None]:
    """Observe one task's lifecycle, from its start to its final status in ``state``.

    ``resumed``: the task was carried across a continue-as-new; its start was counted.
    """
    ids = {"run_id": env.run_id, "workstream": env.workstream, "task": spec.id}
    if not resumed:
        metrics.task_started(env.plan, spec.tool)
    workflow.logger.debug("task %s.%s started", env.workstream, spec.id, extra={"towline": ids})
    attributes = {f"towline.{k}": v for k, v in ids.items()} | {"towline.tool": spec.tool}

    def finished() -> None:
        metrics.task_finished(env.plan, state)
        if s is not None:
            _end_task_span(s, state)
        workflow.logger.info(
            "task %s.%s %s%s",
            env.workstream,
            spec.id,
            state.status,
            _outcome(state),
            extra={"towline": {**ids, "attempt": state.attempts}},
        )

    with span(f"task {env.workstream}.{spec.id}", attributes) as s, _unless_evicted(finished):
        yield


@contextlib.contextmanager
def _unless_evicted(done: Callable[[], None]) -> Iterator[None]:
    """Call ``done`` when the block ends, however it ends, unless the workflow was evicted.

    A worker that drops a workflow from its cache closes its coroutines (GeneratorExit):
    the workflow has not ended, it goes on elsewhere, and nothing may be recorded (nor can
    it: the workflow's APIs are gone by then).
    """
    try:
        yield
    except GeneratorExit:
        raise
    except BaseException:
        done()
        raise
    done()


def _end_task_span(s: Span, state: TaskState) -> None:
    s.set_attributes(
        {
            "towline.status": state.status,
            "towline.attempts": state.attempts,
            "towline.cached": state.cached,
        }
    )
    if state.error is not None:
        s.set_attribute("towline.category", state.error.category)
        s.set_status(Status(StatusCode.ERROR, f"{state.error.category}: {state.error.message}"))


def _outcome(state: TaskState) -> str:
    parts = [f"{state.attempts} attempt{'s' if state.attempts != 1 else ''}"]
    if state.started_at is not None and state.ended_at is not None:
        parts.append(f"{(state.ended_at - state.started_at) / timedelta(seconds=1):.3g}s")
    if state.error is not None:
        parts.append(f"{state.error.category}: {state.error.message}")
    elif state.reason:
        parts.append(state.reason)
    return f" ({', '.join(parts)})"
