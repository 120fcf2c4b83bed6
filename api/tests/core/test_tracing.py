"""Traces (core/tracing.py): with OTEL_EXPORTER_OTLP_ENDPOINT set, a request's trace goes on
through the outbox: the API's server span is the parent of the relay's publish span, which is
the parent of the worker's run span. The processes run their Procfile lines and export to an
OTLP/HTTP receiver in this test; without the variable, nothing of OpenTelemetry is set up."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from devtools.devstack import LocalStack
from tests.accounts import registration
from tests.conftest import SmtpSink, query, wait_for_mail
from tests.processes import API_DIR, celery_worker, procfile_environment, relay, rq_worker, wait_until, web_server


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]


class OtlpReceiver:
    """What a collector does for OTLP/HTTP traces (POST /v1/traces, protobuf), keeping the spans."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.paths: set[str] = set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                receiver.keep(self.path, request)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def keep(self, path: str, request: ExportTraceServiceRequest) -> None:
        received = []
        for resource_spans in request.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(
                        ReceivedSpan(
                            service=resource.get("service.name", ""),
                            name=span.name,
                            kind=span.kind,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            attributes={a.key: _value(a.value) for a in span.attributes},
                        )
                    )
        with self._lock:
            self.paths.add(path)
            self.spans.extend(received)

    def received(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self.spans)

    def __enter__(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind in ("string_value", "int_value", "bool_value", "double_value") else None


def run_span_of(spans: list[ReceivedSpan], task_id: str) -> ReceivedSpan | None:
    runs = [
        s for s in spans if s.kind == Span.SPAN_KIND_CONSUMER and s.attributes.get("messaging.message.id") == task_id
    ]
    assert len(runs) <= 1, runs
    return runs[0] if runs else None


def assert_one_trace(
    spans: list[ReceivedSpan], task_id: str, *, worker: str, queue: str, request: str
) -> tuple[ReceivedSpan, ReceivedSpan, ReceivedSpan]:
    """The task's run span, child of the relay's publish span, child of the request's server
    span, all in one trace that the server span begins; returns (server, publish, run)."""
    by_id = {span.span_id: span for span in spans}
    run = run_span_of(spans, task_id)
    assert run is not None, f"no run span for {task_id}: {spans}"
    assert (run.service, run.name) == (worker, f"run {queue}"), run
    publish = by_id.get(run.parent_span_id)
    assert publish is not None, f"the run span's parent was not exported: {run}"
    assert (publish.service, publish.name, publish.kind) == (
        "jobplatform-relay",
        f"publish {queue}",
        Span.SPAN_KIND_PRODUCER,
    ), publish
    assert publish.attributes["messaging.message.id"] == task_id, publish
    server = by_id.get(publish.parent_span_id)
    assert server is not None, f"the publish span's parent was not exported: {publish}"
    assert (server.service, server.name, server.kind) == ("jobplatform-api", request, Span.SPAN_KIND_SERVER), server
    assert server.parent_span_id == "", server
    assert {run.trace_id, publish.trace_id} == {server.trace_id}
    return server, publish, run


def children_of(spans: list[ReceivedSpan], parent: ReceivedSpan) -> list[ReceivedSpan]:
    return [span for span in spans if span.parent_span_id == parent.span_id]


def is_sql(span: ReceivedSpan) -> bool:
    return span.kind == Span.SPAN_KIND_CLIENT and span.attributes.get("db.system") == "postgresql"


def is_redis(span: ReceivedSpan) -> bool:
    return span.kind == Span.SPAN_KIND_CLIENT and span.attributes.get("db.system") == "redis"


async def test_a_trace_goes_from_the_request_through_the_outbox_to_celery_and_rq(
    stack: LocalStack, smtp_sink: SmtpSink, make_user: Any, tmp_path: Path
) -> None:
    _, follower_token = make_user("follower")
    with OtlpReceiver() as receiver:
        # A short batch delay: spans are exported while the processes run, not only at their exit.
        traced = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "200"}
        server, base_url = web_server(tmp_path, env=traced)
        processes = [
            server,
            relay(tmp_path, env=traced),
            celery_worker(tmp_path, env=traced),
            rq_worker(tmp_path, env=traced),
        ]
        try:
            for process in processes:
                process.start()
            async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
                registered = await client.post(
                    "/api/auth/register",
                    json=registration("ada"),
                )
                assert registered.status_code == 201, registered.text
                ada_id = registered.json()["id"]
                followed = await client.post(
                    f"/api/users/{ada_id}/follow", headers={"Authorization": f"Bearer {follower_token}"}
                )
                assert followed.status_code == 204, followed.text
            email_task = f"welcome-email-{ada_id}"
            notification_task = query(stack, "SELECT id FROM task_records WHERE queue = 'notifications'")
            await wait_for_mail(smtp_sink, "ada@example.com")
            for task_id in (email_task, notification_task):
                await wait_until(
                    lambda task_id=task_id: (
                        query(stack, f"SELECT status FROM task_records WHERE id = '{task_id}'") == "succeeded"
                    ),
                    what=f"task {task_id} to succeed",
                )
        finally:
            for process in reversed(processes):
                process.stop()
        await wait_until(
            lambda: all(run_span_of(receiver.received(), t) for t in (email_task, notification_task)),
            seconds=15,
            what="both run spans to be exported",
        )
        spans = receiver.received()
        assert receiver.paths == {"/v1/traces"}

    # The stored trace context is the server span's.
    stored = json.loads(query(stack, f"SELECT trace_context FROM outbox_messages WHERE task_id = '{email_task}'"))
    server, publish, run = assert_one_trace(
        spans, email_task, worker="jobplatform-celery", queue="emails", request="POST /api/auth/register"
    )
    context, flags = stored["traceparent"].rsplit("-", 1)
    assert context == f"00-{server.trace_id}-{server.span_id}", stored
    assert int(flags, 16) & 1, stored  # sampled
    # The request's statements are its spans, the broker commands the publish's, and the task's
    # statements and its SMTP session the run's.
    assert any(is_sql(span) for span in children_of(spans, server)), children_of(spans, server)
    assert any(is_redis(span) for span in children_of(spans, publish)), children_of(spans, publish)
    worked = children_of(spans, run)
    assert any(is_sql(span) for span in worked), worked
    assert [span.name for span in worked if span.name == "smtp send"] == ["smtp send"], worked

    assert_one_trace(
        spans,
        notification_task,
        worker="jobplatform-rq",
        queue="notifications",
        request="POST /api/users/{user_id}/follow",
    )
    # Nothing begins a trace with a client call of its own (broker polling, heartbeats, the
    # relay's claim query): every trace starts with a request, a publish or a run.
    roots = {(span.service, span.kind) for span in spans if span.parent_span_id == ""}
    assert all(kind != Span.SPAN_KIND_CLIENT for _, kind in roots), roots


def test_without_an_endpoint_nothing_of_opentelemetry_is_set_up() -> None:
    """Off, our code imports no OpenTelemetry module (core/tracing.py imports them only in
    setup_tracing), and the processes' modules load no tracing SDK, exporter or instrumentor and
    set no tracer provider. Libraries import some on their own: FastAPI the OpenTelemetry API
    (its built-in telemetry, idle without a provider), redis-py the SDK's metrics module when
    the SDK is installed."""

    def run(script: str, **extra: str) -> dict[str, Any]:
        env = {k: v for k, v in procfile_environment().items() if not k.startswith("OTEL_")}
        done = subprocess.run(
            [sys.executable, "-c", script + "import json, sys\nprint(json.dumps(report()))\n"],
            cwd=API_DIR,
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return json.loads(done.stdout.strip().splitlines()[-1])

    tracing_alone = (
        "import sys\n"
        "import backend_app.core.tracing\n"
        "def report():\n"
        "    return sorted(m for m in sys.modules if m.startswith('opentelemetry'))\n"
    )
    assert run(tracing_alone) == []

    processes = (
        "import sys\n"
        "import backend_app.main, backend_app.outbox.relay, backend_app.core.celery_app, backend_app.core.rq_worker\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('opentelemetry'))\n"
        "def report():\n"
        "    from opentelemetry import trace\n"
        "    return {'loaded': loaded, 'provider': type(trace.get_tracer_provider()).__name__}\n"
    )
    off = run(processes)
    tracing = (
        "opentelemetry.sdk.trace",
        "opentelemetry.exporter",
        "opentelemetry.instrumentation",
        "opentelemetry.proto",
    )
    assert [m for m in off["loaded"] if m.startswith(tracing)] == [], off["loaded"]
    assert off["provider"] == "ProxyTracerProvider"
    # Set but empty is off too, as OpenTelemetry reads it.
    assert run(processes, OTEL_EXPORTER_OTLP_ENDPOINT="")["provider"] == "ProxyTracerProvider"

    on = run(processes, OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9")
    assert {"opentelemetry.sdk.trace", "opentelemetry.exporter.otlp.proto.http.trace_exporter"} <= set(on["loaded"])
    assert on["provider"] == "TracerProvider"
