"""webhook against a real local HTTP receiver: signed, retried on 5xx, posted once per event."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest
from opentelemetry import trace
from standardwebhooks import Webhook

from libs.settings import Settings
from libs.tenants import Tenant, set_webhook
from libs.topics import EVENTS, public_topic
from schemas.events import DeliveryEvent, EventData, MessageState, delivery_event
from services.webhook.app import WebhookService
from tests.support import WebhookReceiver, eventually, serving_webhooks, started

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with serving_webhooks() as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
async def service(settings: Settings) -> AsyncIterator[WebhookService]:
    async with started(WebhookService(settings)) as running:
        yield running


async def subscribed(pool: asyncpg.Pool, tenant: Tenant, url: str) -> Tenant:
    updated = await set_webhook(pool, tenant.id, url)
    assert updated is not None and updated.webhook_secret is not None
    return updated


def event_for(tenant: Tenant, message_id: str | None = None) -> DeliveryEvent:
    data = EventData(
        message_id=message_id or str(uuid.uuid4()),
        tenant_id=tenant.id,
        recipient="zoë@example.test",
        trace_id=uuid.uuid4().hex,
        service="sender",
    )
    return delivery_event(MessageState.DELIVERED, data, datetime.now(UTC))


async def publish(service: WebhookService, settings: Settings, event: DeliveryEvent) -> bytes:
    body = event.model_dump_json().encode()
    topic = public_topic(EVENTS, settings.topic_prefix)
    await service.broker.publish(body, topic, key=event.subject.encode())
    return body


async def outcome(pool: asyncpg.Pool, event: DeliveryEvent, url: str) -> asyncpg.Record | None:
    return await pool.fetchrow(
        "SELECT status, attempts, last_code, last_error FROM webhook_deliveries"
        " WHERE event_id = $1 AND url = $2",
        uuid.UUID(event.id),
        url,
    )


async def test_event_is_posted_once_signed_and_traced(
    service: WebhookService,
    settings: Settings,
    pool: asyncpg.Pool,
    tenant: tuple[Tenant, str],
    receiver: WebhookReceiver,
) -> None:
    name, url = receiver.url([200])
    subscriber = await subscribed(pool, tenant[0], url)
    event = event_for(subscriber)
    with trace.get_tracer("tests").start_as_current_span("produce event") as span:
        body = await publish(service, settings, event)
    row = await eventually(lambda: outcome(pool, event, url))

    assert dict(row) == {"status": "delivered", "attempts": 1, "last_code": 200, "last_error": None}
    [(headers, received)] = receiver.posts[name]
    assert received == body
    assert headers["content-type"] == "application/cloudevents+json"
    assert headers["webhook-id"] == event.id
    assert subscriber.webhook_secret is not None
    assert Webhook(subscriber.webhook_secret).verify(received, headers) == json.loads(body)
    trace_id = format(span.get_span_context().trace_id, "032x")
    assert headers["traceparent"].split("-")[1] == trace_id


async def test_server_errors_are_retried_until_accepted(
    service: WebhookService,
    settings: Settings,
    pool: asyncpg.Pool,
    tenant: tuple[Tenant, str],
    receiver: WebhookReceiver,
) -> None:
    name, url = receiver.url([500, 500, 200])
    event = event_for(await subscribed(pool, tenant[0], url))
    body = await publish(service, settings, event)
    row = await eventually(lambda: outcome(pool, event, url))

    assert (row["status"], row["attempts"], row["last_code"]) == ("delivered", 3, 200)
    posts = receiver.posts[name]
    assert [received for _, received in posts] == [body] * 3
    assert {headers["webhook-id"] for headers, _ in posts} == {event.id}


async def test_refusal_is_not_retried(
    service: WebhookService,
    settings: Settings,
    pool: asyncpg.Pool,
    tenant: tuple[Tenant, str],
    receiver: WebhookReceiver,
) -> None:
    name, url = receiver.url([404])
    event = event_for(await subscribed(pool, tenant[0], url))
    await publish(service, settings, event)
    row = await eventually(lambda: outcome(pool, event, url))

    assert (row["status"], row["attempts"], row["last_code"]) == ("failed", 1, 404)
    assert "404" in row["last_error"]
    assert len(receiver.posts[name]) == 1


async def test_duplicate_event_is_posted_once(
    service: WebhookService,
    settings: Settings,
    pool: asyncpg.Pool,
    tenant: tuple[Tenant, str],
    receiver: WebhookReceiver,
) -> None:
    name, url = receiver.url([200])
    subscriber = await subscribed(pool, tenant[0], url)
    event = event_for(subscriber)
    later = event_for(subscriber, message_id=event.subject)  # same key: read after the copies
    later = later.model_copy(update={"id": str(uuid.uuid4())})
    for copy in (event, event, later):
        await publish(service, settings, copy)
    await eventually(lambda: outcome(pool, later, url))

    ids = [headers["webhook-id"] for headers, _ in receiver.posts[name]]
    assert ids == [event.id, later.id]
