"""The send-requests intake on the real broker: bad records dead-lettered, never blocking."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import httpx
import pytest
from opentelemetry import trace

from libs.settings import Settings
from libs.tenants import Tenant
from libs.topics import EVENTS, SEND_REQUESTS, SEND_REQUESTS_DLQ, lane_topic, public_topic
from schemas.common import Lane
from schemas.pipeline import ParkedRecord
from services.ingest.app import IngestService
from services.ingest.ids import RecordOrigin, record_message_ids, rejection_id
from tests.support import TopicTap, eventually, started

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def service(settings: Settings) -> AsyncIterator[IngestService]:
    async with started(IngestService(settings.model_copy(update={"http_port": 0}))) as running:
        yield running


@pytest.fixture
async def tap(settings: Settings, service: IngestService) -> AsyncIterator[TopicTap]:
    prefix = settings.topic_prefix
    topics = (
        public_topic(SEND_REQUESTS_DLQ, prefix),
        public_topic(EVENTS, prefix),
        lane_topic("render", Lane.NORMAL, prefix),
    )
    async with TopicTap(settings, *topics) as watching:
        yield watching


def request(tenant_id: str, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "tenant_id": tenant_id,
        "from": "app@example.test",
        "to": "user@example.org",
        "subject": "Hello",
        "text": "Hi",
        "metadata": {"run": uuid.uuid4().hex},
    }
    return body | fields


async def produce(
    service: IngestService, settings: Settings, value: bytes, **headers: str
) -> RecordOrigin:
    """Put a record on partition 0 of send.requests, so later records queue behind it."""
    topic = public_topic(SEND_REQUESTS, settings.topic_prefix)
    sent = await service.broker.publish(
        value, topic, key=b"app-key", partition=0, headers=headers or None
    )
    return RecordOrigin(topic, sent.partition, sent.offset)


def letter_of(origin: RecordOrigin) -> Callable[[ParkedRecord], bool]:
    return lambda why: why.offset == origin.offset and why.topic == origin.topic


def accepted_of(message_id: str) -> Any:
    return lambda v: v.get("message", {}).get("message_id") == message_id


def event_of(message_id: str, state: str) -> Any:
    return lambda v: v.get("subject") == message_id and v.get("type") == f"sendarix.message.{state}"


async def test_invalid_records_are_dead_lettered_and_the_next_one_is_accepted(
    service: IngestService, settings: Settings, tenant: tuple[Tenant, str], tap: TopicTap
) -> None:
    tenant_id = tenant[0].id
    json_label = {"content-type": "application/json"}
    garbage = await produce(service, settings, b"\xff{not json", **json_label)
    invalid = await produce(service, settings, json.dumps(request(tenant_id, to=[])).encode())
    unknown = await produce(service, settings, json.dumps(request(str(uuid.uuid4()))).encode())
    forged = request(tenant_id, **{"from": "ceo@elsewhere.test"})
    refused = await produce(service, settings, json.dumps(forged).encode(), **json_label)
    valid = await produce(service, settings, json.dumps(request(tenant_id)).encode())

    expected = {
        garbage: ("malformed_json", ()),
        invalid: ("invalid_request", ("/to",)),
        unknown: ("unknown_tenant", ("/tenant_id",)),
        refused: ("sender_not_allowed", ("/from",)),
    }
    for origin, (reason, pointers) in expected.items():
        [(record, why)] = await tap.wait_for_parked(letter_of(origin))
        assert (why.reason, why.pointers) == (reason, pointers)
        assert (why.service, why.role) == ("ingest", "intake")
        assert record.key == b"app-key"
    [(kept, _)] = await tap.wait_for_parked(letter_of(garbage))
    assert kept.value == b"\xff{not json"
    assert dict(kept.headers)["content-type"] == b"application/json"

    for origin in (invalid, refused):  # the tenant is known: it hears of the rejection
        [rejected] = await tap.wait_for(event_of(rejection_id(origin), "rejected"))
        assert rejected["data"]["tenant_id"] == tenant_id
        assert rejected["data"]["problem"]["code"] == expected[origin][0]

    [message_id] = record_message_ids(valid, 1)
    [record] = await tap.wait_for(accepted_of(message_id))
    assert record["message"]["tenant_id"] == tenant_id
    await tap.wait_for(event_of(message_id, "accepted"))
    rejections = [v for v in tap.json_values() if v.get("type") == "sendarix.message.rejected"]
    assert {v["subject"] for v in rejections} == {rejection_id(invalid), rejection_id(refused)}


async def test_an_idempotency_key_is_shared_with_the_http_gateway(
    service: IngestService,
    settings: Settings,
    pool: asyncpg.Pool,
    tenant: tuple[Tenant, str],
    tap: TopicTap,
) -> None:
    body = request(tenant[0].id, idempotency_key=f"signup-{uuid.uuid4()}")
    http_body = {k: v for k, v in body.items() if k not in ("tenant_id", "idempotency_key")}
    transport = httpx.ASGITransport(app=service.api)
    async with httpx.AsyncClient(transport=transport, base_url="http://ingest.test") as http:
        sent = await http.post(
            "/v1/messages",
            json=http_body,
            headers={
                "Authorization": f"Bearer {tenant[1]}",
                "Idempotency-Key": body["idempotency_key"],
            },
        )
    assert sent.status_code == 202, sent.text
    http_id = sent.json()["id"]
    await tap.wait_for(accepted_of(http_id))

    repeat = await produce(service, settings, json.dumps(body).encode())
    reused = await produce(
        service, settings, json.dumps(body | {"subject": "Something else"}).encode()
    )
    after = await produce(service, settings, json.dumps(request(tenant[0].id)).encode())

    [(_, letter)] = await tap.wait_for_parked(letter_of(reused))
    assert letter.reason == "idempotency_key_reused"
    [after_id] = record_message_ids(after, 1)

    async def logged() -> set[str] | None:  # records are handled in order: the repeat is done
        rows = await pool.fetch(
            "SELECT id FROM messages WHERE tenant_id = $1 AND status = 'accepted'", tenant_uuid
        )
        ids = {str(row["id"]) for row in rows}
        # the two messages' events are on different partitions: the log may see them in any order
        return ids if {http_id, after_id} <= ids else None

    tenant_uuid = uuid.UUID(tenant[0].id)
    assert await eventually(logged) == {http_id, after_id}
    assert not [why for _, why in tap.parked() if letter_of(repeat)(why)]


async def test_the_trace_continues_from_the_record_headers(
    service: IngestService, settings: Settings, tenant: tuple[Tenant, str], tap: TopicTap
) -> None:
    with trace.get_tracer("tests").start_as_current_span("application produces") as span:
        trace_id = format(span.get_span_context().trace_id, "032x")
        origin = await produce(service, settings, json.dumps(request(tenant[0].id)).encode())
    [message_id] = record_message_ids(origin, 1)
    [record] = await tap.wait_for(accepted_of(message_id))
    assert record["message"]["trace_id"] == trace_id
    [accepted] = await tap.wait_for(event_of(message_id, "accepted"))
    assert accepted["data"]["trace_id"] == trace_id
