"""OpenTelemetry tracing for the worker, configured by the standard ``OTEL_*`` variables.

Off unless ``OTEL_TRACES_EXPORTER`` (``otlp``, ``console``; ``none`` turns it off) or an
OTLP endpoint (``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``)
is set. The exporter, its headers and batching read their own ``OTEL_*`` variables.

Spans come through Temporal's OpenTelemetry interceptor
(:class:`temporalio.contrib.opentelemetry.OpenTelemetryInterceptor`) with its replay-safe
tracer provider: unlike the older ``TracingInterceptor``, whose workflow spans all last
zero seconds, it lets workflow code hold real spans across a run, replay included. The
tree is ``run <id>`` > ``workstream <ws>`` > ``task <ws>.<task>`` > ``tool <name>``, each
with towline's attributes (``towline.run_id``, ``towline.task``, ``towline.tool``,
``towline.attempt``...); the Temporal SDK's own spans are left out.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import opentelemetry.trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from temporalio.contrib.opentelemetry import (
    OpenTelemetryInterceptor,
    ReplaySafeTracerProvider,
    create_tracer_provider,
)

DEFAULT_SERVICE_NAME = "towline-worker"


class TracingConfigError(ValueError):
    """The ``OTEL_*`` variables ask for something towline cannot do."""


@dataclass(frozen=True)
class Tracing:
    """Tracing as set up for this process: the interceptor for the client, the provider."""

    interceptor: OpenTelemetryInterceptor
    provider: ReplaySafeTracerProvider

    def shutdown(self) -> None:
        """Export the spans still buffered, then stop (the worker leaves without atexit)."""
        self.provider.shutdown()


def enabled(env: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment asks for traces."""
    exporter = env.get("OTEL_TRACES_EXPORTER")
    if exporter is not None:
        return exporter.strip().lower() not in ("", "none")
    return bool(
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def setup(
    *, processors: list[SpanProcessor] | None = None, env: Mapping[str, str] = os.environ
) -> Tracing:
    """Install the replay-safe tracer provider for this process and return the interceptor.

    ``processors`` replaces the exporters the environment names (tests pass an in-memory
    one). The global provider can be set once per process, so call this once.
    """
    service = env.get("OTEL_SERVICE_NAME") or DEFAULT_SERVICE_NAME
    provider = create_tracer_provider(resource=Resource.create({"service.name": service}))
    for p in processors if processors is not None else _processors(env):
        provider.add_span_processor(p)
    opentelemetry.trace.set_tracer_provider(provider)
    return Tracing(OpenTelemetryInterceptor(add_temporal_spans=False), provider)


def from_environment(env: Mapping[str, str] = os.environ) -> Tracing | None:
    """:func:`setup` when the environment asks for traces, else None."""
    return setup(env=env) if enabled(env) else None


def _processors(env: Mapping[str, str]) -> list[SpanProcessor]:
    names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",")]
    return [BatchSpanProcessor(_exporter(n, env)) for n in names if n and n != "none"]


def _exporter(name: str, env: Mapping[str, str]) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter()
    if name != "otlp":
        raise TracingConfigError(
            f"OTEL_TRACES_EXPORTER={name!r} is not supported; use otlp, console or none"
        )
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    )
    if protocol != "http/protobuf":
        raise TracingConfigError(
            f"OTLP protocol {protocol!r} is not supported; towline exports OTLP over HTTP: "
            "set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf and point "
            "OTEL_EXPORTER_OTLP_ENDPOINT at the collector's HTTP port (usually 4318)"
        )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()
