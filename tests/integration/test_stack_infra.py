"""The local infrastructure starts on a throw-away profile, answers, and stops without a trace.

Kafka is the test session's own (its port is already listening, so it is reused and left alone);
PostgreSQL, Jaeger, Zipkin and Mailpit are started fresh on free ports.
"""

from __future__ import annotations

import dataclasses
import shutil
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from deploy.stack.infra import infra_ports, start_infra
from deploy.stack.processes import Supervisor, listening
from deploy.stack.profiles import TEST, Profile
from libs.settings import Settings
from libs.trace_waterfall import fetch_trace, waterfall
from tests.support import eventually

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def scratch(settings: Settings) -> Iterator[Profile]:
    """A profile of its own, but for the session's Kafka; its state is removed afterwards."""
    ports: dict[str, Any] = {
        field.name: _free_port()
        for field in dataclasses.fields(TEST)
        if field.name.endswith("_port") and field.name != "kafka_port"
    }
    profile = dataclasses.replace(TEST, name=f"pytest-{uuid.uuid4().hex[:8]}", **ports)
    yield profile
    shutil.rmtree(profile.state_dir, ignore_errors=True)


async def test_missing_components_start_and_stop_and_running_ones_are_reused(
    scratch: Profile,
) -> None:
    supervisor = Supervisor(scratch.state_dir / "logs")
    try:
        started = await start_infra(scratch, supervisor)

        assert started == ["postgres", "jaeger", "zipkin", "mailpit"]
        connection = await asyncpg.connect(scratch.database_url)
        assert await connection.fetchval("SELECT current_database()") == "sendarix"
        await connection.close()
        async with httpx.AsyncClient() as client:
            jaeger = await client.get(f"http://127.0.0.1:{scratch.jaeger_ui_port}/api/services")
            mailpit = await client.get(f"http://127.0.0.1:{scratch.mailpit_ui_port}/api/v1/info")
        assert jaeger.status_code == mailpit.status_code == 200
        await _a_span_sent_to_jaeger_shows_in_zipkin(scratch)
    finally:
        supervisor.stop_all()

    ports = infra_ports(scratch)
    assert [name for name, port in ports.items() if listening(port)] == ["kafka"]


async def _a_span_sent_to_jaeger_shows_in_zipkin(profile: Profile) -> None:
    """The way a service's span reaches the tracing UI: OTLP to Jaeger, which keeps it for its
    query API and copies it through Kafka to Zipkin."""
    provider = TracerProvider(resource=Resource.create({"service.name": "stack-test"}))
    exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{profile.otlp_http_port}/v1/traces")
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tests")
    with (
        tracer.start_as_current_span("POST /v1/messages") as root,
        tracer.start_as_current_span("sender", attributes={"smtp.reply_code": 250}),
    ):
        pass
    provider.shutdown()
    trace_id = format(root.get_span_context().trace_id, "032x")
    settings = profile.settings()

    async with httpx.AsyncClient() as http:

        async def in_zipkin() -> list[dict[str, Any]] | None:
            answer = await http.get(f"{settings.tracing_ui_url}/api/v2/trace/{trace_id}")
            return answer.json() if answer.status_code == 200 else None

        zipkin_spans = await eventually(in_zipkin, timeout=30, every=0.5)
        jaeger_trace = await fetch_trace(http, settings, trace_id)

    assert {(s["localEndpoint"]["serviceName"], s["name"]) for s in zipkin_spans} == {
        ("stack-test", "post /v1/messages"),  # Zipkin lower-cases span names
        ("stack-test", "sender"),
    }
    assert jaeger_trace is not None
    assert [(r.depth, r.name) for r in waterfall(jaeger_trace)] == [
        (0, "POST /v1/messages"),
        (1, "sender"),
    ]
