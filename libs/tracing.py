"""OpenTelemetry set-up: one tracer provider per process, spans exported over OTLP/HTTP.

W3C trace context travels in Kafka headers: the runtime starts one span per message per service
from the record's ``traceparent`` and stamps what it publishes with that span's, so every service
a message passes through adds its span to the same trace.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import lru_cache

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import (
    INVALID_SPAN,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    TraceFlags,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from libs.settings import Settings

_provider: TracerProvider | None = None


def setup_tracing(service: str, settings: Settings) -> TracerProvider:
    """Install the process's tracer provider, named after the service (idempotent)."""
    global _provider
    if _provider is None:
        _provider = TracerProvider(resource=Resource.create({"service.name": service}))
        if settings.tracing_enabled:
            exporter = OTLPSpanExporter(endpoint=f"{settings.otlp_endpoint}/v1/traces")
            _provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=500))
        trace.set_tracer_provider(_provider)
    return _provider


def shutdown_tracing() -> None:
    """Flush the spans still buffered; called when a process stops."""
    if _provider is not None:
        _provider.shutdown()


def current_trace_id() -> str:
    """The current trace id as 32 hex digits (all zeros outside any trace)."""
    return format(trace.get_current_span().get_span_context().trace_id, "032x")


def trace_headers() -> dict[str, str]:
    """The W3C ``traceparent`` (and ``tracestate``) of the current span, to store or send."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def context_from_headers(headers: Mapping[str, str]) -> Context:
    """The trace context carried by stored or received headers."""
    return propagate.extract(dict(headers))


_W3C = TraceContextTextMapPropagator()
KafkaHeaders = Sequence[tuple[str, bytes]]
_TRACEPARENT = re.compile(rb"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def record_span(headers: KafkaHeaders) -> Span:
    """The span that produced a record (from its W3C ``traceparent``), as a parent to hang
    spans on; nothing is recorded for it here. The invalid span when the record carries none.

    Read straight from the header (one regular expression) rather than through the
    propagator's getter machinery: every record of every hop goes through here.
    """
    for name, value in headers:
        if name == "traceparent":
            found = _TRACEPARENT.match(value.strip())
            if found is None:
                break
            trace_id, span_id = int(found[1], 16), int(found[2], 16)
            if not trace_id or not span_id:
                break
            context = SpanContext(
                trace_id, span_id, is_remote=True, trace_flags=TraceFlags(int(found[3], 16))
            )
            return NonRecordingSpan(context)
    return INVALID_SPAN


@lru_cache(maxsize=16)
def _tracer(service: str) -> trace.Tracer:
    return trace.get_tracer(service)


def message_span(
    service: str, headers: KafkaHeaders, start_ns: int, attributes: dict[str, str | int]
) -> Span:
    """The span of one message's passage through ``service``, a child of its record's span.

    Started at ``start_ns`` (when its batch arrived) and ended by the caller once everything
    the message caused is acknowledged, so the trace shows the time it really spent here.
    """
    return _tracer(service).start_span(
        service,
        context=trace.set_span_in_context(record_span(headers)),
        kind=SpanKind.CONSUMER,
        start_time=start_ns,
        attributes=attributes,
    )


def traceparent(context: Context) -> list[tuple[str, bytes]]:
    """The W3C headers of ``context``, to stamp on a published record."""
    carrier: dict[str, str] = {}
    _W3C.inject(carrier, context=context)
    return [(name, value.encode()) for name, value in carrier.items()]
