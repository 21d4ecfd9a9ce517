"""OpenTelemetry set-up: one tracer provider per process, spans exported over OTLP/HTTP.

W3C trace context travels in Kafka headers (FastStream's telemetry middleware injects and
extracts it), so every service a message passes through adds its spans to the same trace.
"""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

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
