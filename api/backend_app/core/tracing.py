"""OpenTelemetry traces, off unless OTEL_EXPORTER_OTLP_ENDPOINT is set (README, "Observing it").

Each process calls `setup_tracing(<its service name>)` at start-up: the API in `create_app`,
the relay in its `main`, Celery in each pool process (`worker_process_init`), RQ in each
worker. Off, that call imports nothing of OpenTelemetry's SDK, exporters or instrumentors,
and every helper here is a no-op. On, spans go over OTLP/HTTP (protobuf) through a batch
processor that is flushed when the process ends.

A trace follows the work a request recorded, as the request id does: `outbox.add` stores the
current W3C trace context (`traceparent`, `tracestate`) with the task, the relay's `publish`
span (PRODUCER) is that context's child and travels in the message (Celery headers, RQ job
meta, `TRACE_CONTEXT_KEYS`), and each attempt's `run` span (CONSUMER) is its child.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from backend_app.core.config import Settings, get_settings, mask_url

logger = logging.getLogger(__name__)

# The service.name of each process when OTEL_SERVICE_NAME does not say otherwise.
API_SERVICE = "jobplatform-api"
RELAY_SERVICE = "jobplatform-relay"
CELERY_SERVICE = "jobplatform-celery"
RQ_SERVICE = "jobplatform-rq"

# W3C Trace Context: the carrier keys stored with a task and put on its messages.
TRACEPARENT_KEY = "traceparent"
TRACESTATE_KEY = "tracestate"
TRACE_CONTEXT_KEYS = (TRACEPARENT_KEY, TRACESTATE_KEY)

FLUSH_TIMEOUT_MILLIS = 5000

# The SDK's TracerProvider once tracing is on in this process; None while it is off.
_provider: Any = None


def tracing_enabled() -> bool:
    return _provider is not None


def setup_tracing(service_name: str, settings: Settings | None = None) -> bool:
    """Turn traces on in this process when OTEL_EXPORTER_OTLP_ENDPOINT is set; returns whether
    they are on. Idempotent: the first call's service name stays."""
    global _provider
    settings = settings or get_settings()
    if _provider is not None or settings.otel_exporter_otlp_endpoint is None:
        return _provider is not None
    # Imported here, so a process without tracing never loads the SDK or the instrumentors.
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased

    provider = TracerProvider(
        resource=Resource.create({SERVICE_NAME: settings.otel_service_name or service_name}),
        sampler=ParentBased(root=_sampler_without_stray_client_spans()),
    )
    # The exporter reads OTEL_EXPORTER_OTLP_ENDPOINT (adding /v1/traces) and its other OTEL_* variables.
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    # Database statements (engines made after this: db/base.py), Redis commands, push calls.
    # skip_dep_check: 0.66b2 declares SQLAlchemy < 2.1 and would refuse our 2.1; the engine
    # events it uses are unchanged, and tests/core/test_tracing.py checks the statement spans.
    SQLAlchemyInstrumentor().instrument(tracer_provider=provider, skip_dep_check=True)
    RedisInstrumentor().instrument(tracer_provider=provider)
    HTTPXClientInstrumentor().instrument(tracer_provider=provider)
    _provider = provider
    name, endpoint = settings.otel_service_name or service_name, mask_url(settings.otel_exporter_otlp_endpoint)
    logger.info("traces on: service %s, exported to %s", name, endpoint)
    return True


def _sampler_without_stray_client_spans() -> Any:
    """The root sampler: every trace that starts with our own work (a request, a publish, a task
    run), none that would start with a client call outside any of it (a worker polling its
    broker, heartbeats, the relay's claim query, the replica checks), which would be noise."""
    from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
    from opentelemetry.trace import SpanKind

    class WithoutStrayClientSpans(Sampler):
        def should_sample(
            self,
            parent_context: Any,
            trace_id: int,
            name: str,
            kind: Any = None,
            attributes: Any = None,
            links: Any = None,
            trace_state: Any = None,
        ) -> SamplingResult:
            if kind is SpanKind.CLIENT:
                return SamplingResult(Decision.DROP)
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)

        def get_description(self) -> str:
            return "WithoutStrayClientSpans"

    return WithoutStrayClientSpans()


def flush_tracing() -> None:
    """Export the spans still waiting (a process that ends without running atexit handlers:
    Celery's pool processes, RQ's work horses and pool workers)."""
    if _provider is not None:
        _provider.force_flush(FLUSH_TIMEOUT_MILLIS)


def current_trace_context() -> dict[str, str] | None:
    """The current span's W3C trace context, to store with work done later; None when off or
    outside any span."""
    if _provider is None:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier or None


def trace_context_from(lookup: Callable[[str], Any]) -> dict[str, str]:
    """The W3C trace context keys that `lookup` (a header or job meta reader) finds."""
    return {key: value for key in TRACE_CONTEXT_KEYS if isinstance(value := lookup(key), str) and value}


class RunningSpan:
    """A span started by `start_span` and current until `end` (for start and end hooks such as
    Celery's task_prerun / task_postrun signals)."""

    def __init__(self, span: Any, token: Any) -> None:
        self.span = span
        self._token = token

    def end(self, error: BaseException | None = None, *, failed: bool = False) -> None:
        """End the span, marked failed when `error` (recorded on it) or `failed` says so."""
        from opentelemetry import context
        from opentelemetry.trace import Status, StatusCode

        if error is not None:
            self.span.record_exception(error)
            self.span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        elif failed:
            self.span.set_status(Status(StatusCode.ERROR))
        self.span.end()
        context.detach(self._token)


def start_span(
    name: str, *, kind: str, parent: Mapping[str, str] | None, attributes: Mapping[str, Any] | None = None
) -> RunningSpan | None:
    """Start a span of `kind` ("producer", "consumer") whose parent is the trace context in
    `parent` (a new trace when it holds none, whatever is current), and make it current.
    None when tracing is off."""
    if _provider is None:
        return None
    from opentelemetry import context, trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    span = trace.get_tracer(__name__).start_span(
        name,
        context=TraceContextTextMapPropagator().extract(dict(parent or {})),
        kind=trace.SpanKind[kind.upper()],
        attributes=dict(attributes or {}),
    )
    return RunningSpan(span, context.attach(trace.set_span_in_context(span)))


@contextmanager
def span_from(
    name: str, *, kind: str, parent: Mapping[str, str] | None, attributes: Mapping[str, Any] | None = None
) -> Iterator[dict[str, str]]:
    """`start_span` for a block: yields the new span's trace context to pass on (empty when
    tracing is off); an exception leaving the block marks the span failed."""
    running = start_span(name, kind=kind, parent=parent, attributes=attributes)
    if running is None:
        yield {}
        return
    try:
        yield current_trace_context() or {}
    except BaseException as error:
        running.end(error)
        raise
    running.end()


@contextmanager
def client_span(name: str, attributes: Mapping[str, Any] | None = None) -> Iterator[None]:
    """A CLIENT span, child of the current one, around a call no instrumentor sees (SMTP)."""
    if _provider is None:
        yield
        return
    from opentelemetry import trace

    with trace.get_tracer(__name__).start_as_current_span(
        name, kind=trace.SpanKind.CLIENT, attributes=dict(attributes or {})
    ):
        yield
