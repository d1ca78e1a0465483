"""Traces: run > workstream > task > tool call spans, through a real worker and dev server."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from temporalio.client import Client

from tests.helpers import echo, plan, sh, ws
from tests.workerproc import start_worker, wait_status
from towline.plan.load import check_data
from towline.starter import api
from towline.worker import tracing
from towline.worker.client import connect
from towline.worker.main import build_worker

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def traced() -> tuple[InMemorySpanExporter, tracing.Tracing]:
    """This process's tracing (set once per process), exporting to memory."""
    exporter = InMemorySpanExporter()
    return exporter, tracing.setup(processors=[SimpleSpanProcessor(exporter)])


@pytest.fixture
async def traced_queue(
    dev_server: str, towline_home: Path, traced: tuple[InMemorySpanExporter, tracing.Tracing]
) -> AsyncIterator[str]:
    """A task queue polled by a worker whose client carries the tracing interceptor."""
    client = await connect(dev_server, "default", interceptors=[traced[1].interceptor])
    queue = f"traced-{uuid.uuid4().hex[:8]}"
    async with build_worker(client, queue):
        yield queue


def _one(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, f"{name}: {[s.name for s in spans]}"
    return found[0]


def _parent_of(span: ReadableSpan, spans: list[ReadableSpan]) -> ReadableSpan:
    assert span.parent is not None, f"{span.name} has no parent"
    return next(s for s in spans if s.context.span_id == span.parent.span_id)


async def test_spans_cover_the_run_its_workstreams_tasks_and_tool_calls(
    client: Client,
    tmp_path: Path,
    traced_queue: str,
    traced: tuple[InMemorySpanExporter, tracing.Tracing],
) -> None:
    exporter = traced[0]
    spec = check_data(
        plan(
            ws("a", echo("one"), echo("two", needs=["one"])),
            ws("b", sh("three", "exit 1"), needs=["a"]),
            name="traced",
        )
    )
    # Started by a client without tracing, as `towline run` does: the run span is the root.
    rid = await api.start_run(client, spec, plan_dir=tmp_path, task_queue=traced_queue)
    state = await api.wait_run(client, rid)
    assert state.status == "failed"
    spans = [
        s
        for s in exporter.get_finished_spans()
        if s.attributes and s.attributes.get("towline.run_id") == rid
    ]

    run = _one(spans, f"run {rid}")
    assert run.parent is None
    assert run.attributes is not None
    assert run.attributes["towline.plan"] == "traced"
    assert run.status.status_code == StatusCode.ERROR
    for wid in ("a", "b"):
        assert _parent_of(_one(spans, f"workstream {wid}"), spans) is run
    one = _one(spans, "task a.one")
    assert _parent_of(one, spans).name == "workstream a"
    assert one.attributes is not None
    assert one.attributes["towline.tool"] == "echo"
    assert one.attributes["towline.status"] == "succeeded"
    assert one.attributes["towline.attempts"] == 1
    calls = [s for s in spans if s.name == "tool echo"]
    assert {_parent_of(s, spans).name for s in calls} == {"task a.one", "task a.two"}
    assert all(s.attributes and s.attributes["towline.attempt"] == 1 for s in calls)
    three = _one(spans, "task b.three")
    assert three.attributes is not None
    assert three.attributes["towline.category"] == "tool"
    assert three.status.status_code == StatusCode.ERROR
    shell = _one(spans, "tool shell")
    assert _parent_of(shell, spans) is three
    assert shell.attributes is not None
    assert shell.attributes["towline.task"] == "three"
    assert shell.status.status_code == StatusCode.ERROR
    assert {s.context.trace_id for s in spans} == {run.context.trace_id}


class _OtlpReceiver:
    """A minimal OTLP/HTTP trace receiver (protobuf over POST /v1/traces), as a collector
    or Jaeger would run: the spans it was sent, with their service names."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, str, dict[str, object]]] = []  # (service, name, attrs)
        received = self.spans

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest.FromString(body)
                for rs in request.resource_spans:
                    service = next(
                        a.value.string_value
                        for a in rs.resource.attributes
                        if a.key == "service.name"
                    )
                    for ss in rs.scope_spans:
                        for span in ss.spans:
                            attrs = {a.key: _any_value(a.value) for a in span.attributes}
                            received.append((service, span.name, attrs))
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> _OtlpReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _any_value(v: AnyValue) -> object:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


async def test_the_worker_exports_spans_over_otlp_when_the_environment_asks(
    client: Client, dev_server: str, tmp_path: Path
) -> None:
    queue = f"otlp-{uuid.uuid4().hex[:8]}"
    with _OtlpReceiver() as receiver:
        worker = start_worker(
            dev_server,
            queue,
            home=tmp_path / "home",
            env={
                "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
                "OTEL_SERVICE_NAME": "towline-test",
                "OTEL_BSP_SCHEDULE_DELAY": "100",  # ms between batch exports
            },
        )
        try:
            await wait_status(worker, "/readyz", 200)
            spec = check_data(plan(ws("w", echo("a")), name="otlp"))
            rid = await api.start_run(client, spec, plan_dir=tmp_path, task_queue=queue)
            assert (await api.wait_run(client, rid)).status == "succeeded"
            wanted = {f"run {rid}", "workstream w", "task w.a", "tool echo"}
            for _ in range(100):
                names = {name for _, name, a in receiver.spans if a.get("towline.run_id") == rid}
                if wanted <= names:
                    break
                await asyncio.sleep(0.1)
            assert wanted <= names, receiver.spans
            assert {service for service, _, _ in receiver.spans} == {"towline-test"}
        finally:
            worker.stop()
