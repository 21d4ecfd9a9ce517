"""webhook against real local HTTP receivers, the real broker, database and a DNS server on
loopback: signed (both secrets during a rotation), queued once per event, retried, endpoints
isolated from each other, 410 disables, the SSRF guard at save and at post time.

The service runs with short pauses (first retry pause 0.05 s, so 0.3 s, 1.2 s, 6 s …), a 1 s
post timeout and a 0.1 s queue poll, so retries and the black hole's timeouts fit in a test.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from opentelemetry import trace
from standardwebhooks import Webhook, WebhookVerificationError

from libs.settings import Settings
from libs.tenants import Tenant, create_tenant
from libs.topics import EVENTS, NOTICES, public_topic
from libs.webhook_endpoints import (
    Endpoint,
    EndpointFields,
    EndpointPatch,
    EndpointRefused,
    create_endpoint,
    get_endpoint,
    rotate_secret,
    update_endpoint,
)
from libs.webhook_targets import TargetGuard
from schemas.events import DeliveryEvent, EventData, MessageState, delivery_event
from services.webhook.app import WebhookService
from tests.dns_server import LoopbackDns
from tests.support import (
    TopicTap,
    WebhookReceiver,
    black_hole,
    eventually,
    serving_webhooks,
    started,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def hook_settings(settings: Settings, dns_zone: LoopbackDns) -> Settings:
    return settings.model_copy(
        update={
            "webhook_retry_base_seconds": 0.05,
            "webhook_timeout_seconds": 1.0,
            "webhook_poll_seconds": 0.1,
            "dns_nameservers": dns_zone.nameserver,
        }
    )


@pytest.fixture(scope="module")
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with serving_webhooks() as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
async def service(hook_settings: Settings) -> AsyncIterator[WebhookService]:
    async with started(WebhookService(hook_settings)) as running:
        yield running


async def new_tenant(pool: asyncpg.Pool) -> Tenant:
    tenant, _ = await create_tenant(pool, f"hooks-{uuid.uuid4().hex[:6]}", [], dev_mode=True)
    return tenant


async def subscribed(
    pool: asyncpg.Pool, settings: Settings, tenant: Tenant, url: str, **fields: object
) -> Endpoint:
    given = EndpointFields.model_validate({"url": url} | fields)
    return await create_endpoint(pool, TargetGuard(settings), tenant.id, given)


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


async def queued(pool: asyncpg.Pool, endpoint: Endpoint, event_id: str) -> asyncpg.Record | None:
    """The event's queue row once it is settled (delivered or failed)."""
    return await pool.fetchrow(
        "SELECT status, attempts, last_code, last_error FROM webhook_queue"
        " WHERE endpoint_id = $1 AND event_id = $2 AND status <> 'pending'",
        uuid.UUID(endpoint.id),
        uuid.UUID(event_id),
    )


async def test_event_is_posted_once_signed_and_traced(
    service: WebhookService,
    hook_settings: Settings,
    pool: asyncpg.Pool,
    receiver: WebhookReceiver,
) -> None:
    name, url = receiver.url([200])
    tenant = await new_tenant(pool)
    endpoint = await subscribed(pool, hook_settings, tenant, url)
    event = event_for(tenant)
    with trace.get_tracer("tests").start_as_current_span("produce event") as span:
        body = await publish(service, hook_settings, event)
    row = await eventually(lambda: queued(pool, endpoint, event.id))

    assert dict(row) == {"status": "delivered", "attempts": 1, "last_code": 200, "last_error": None}
    [(headers, received)] = receiver.posts[name]
    assert received == body
    assert headers["content-type"] == "application/cloudevents+json"
    assert headers["webhook-id"] == event.id
    assert Webhook(endpoint.secret).verify(received, headers) == json.loads(body)
    with pytest.raises(WebhookVerificationError):  # a tampered body
        Webhook(endpoint.secret).verify(received.replace(b"zo", b"Zo"), headers)
    stale = headers | {"webhook-timestamp": str(int(time.time()) - 600)}
    with pytest.raises(WebhookVerificationError):  # a replayed (stale) post
        Webhook(endpoint.secret).verify(received, stale)
    trace_id = format(span.get_span_context().trace_id, "032x")
    assert headers["traceparent"].split("-")[1] == trace_id


async def test_during_a_rotation_both_secrets_verify(
    service: WebhookService,
    hook_settings: Settings,
    pool: asyncpg.Pool,
    receiver: WebhookReceiver,
) -> None:
    name, url = receiver.url([200])
    tenant = await new_tenant(pool)
    old = await subscribed(pool, hook_settings, tenant, url)
    new = await rotate_secret(pool, tenant.id, old.id, timedelta(hours=1))
    assert new is not None and new.secret != old.secret
    event = event_for(tenant)
    await publish(service, hook_settings, event)
    await eventually(lambda: queued(pool, old, event.id))

    [(headers, body)] = receiver.posts[name]
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (old.secret, new.secret):
        assert Webhook(secret).verify(body, headers)["id"] == event.id


async def test_retried_until_accepted_and_refusals_not_retried(
    service: WebhookService,
    hook_settings: Settings,
    pool: asyncpg.Pool,
    receiver: WebhookReceiver,
) -> None:
    tenant = await new_tenant(pool)
    flaky_name, flaky_url = receiver.url([500, 503, 200])
    flaky = await subscribed(pool, hook_settings, tenant, flaky_url)
    refusing_name, refusing_url = receiver.url([404])
    refusing = await subscribed(pool, hook_settings, tenant, refusing_url)
    event = event_for(tenant)
    await publish(service, hook_settings, event)

    row = await eventually(lambda: queued(pool, flaky, event.id), timeout=15)
    assert (row["status"], row["attempts"], row["last_code"]) == ("delivered", 3, 200)
    assert receiver.delivered_ids(flaky_name) == [event.id]
    refused = await eventually(lambda: queued(pool, refusing, event.id))
    assert (refused["status"], refused["attempts"], refused["last_code"]) == ("failed", 1, 404)
    assert len(receiver.posts[refusing_name]) == 1
    log = await pool.fetch(
        "SELECT status_code FROM webhook_attempts WHERE endpoint_id = $1 ORDER BY id",
        uuid.UUID(flaky.id),
    )
    assert [r["status_code"] for r in log] == [500, 503, 200]


async def test_a_redelivered_event_is_posted_once(
    service: WebhookService,
    hook_settings: Settings,
    pool: asyncpg.Pool,
    receiver: WebhookReceiver,
) -> None:
    name, url = receiver.url([200])
    tenant = await new_tenant(pool)
    endpoint = await subscribed(pool, hook_settings, tenant, url)
    event = event_for(tenant)
    later = event_for(tenant, message_id=event.subject)  # same key: read after the copies
    later = later.model_copy(update={"id": str(uuid.uuid4())})
    for copy in (event, event, later):
        await publish(service, hook_settings, copy)
    await eventually(lambda: queued(pool, endpoint, later.id))
    assert await queued(pool, endpoint, event.id) is not None

    assert sorted(receiver.delivered_ids(name)) == sorted(
        [event.id, later.id]
    )  # order: best effort


async def test_a_failing_and_a_black_holed_endpoint_never_delay_another(
    service: WebhookService,
    hook_settings: Settings,
    pool: asyncpg.Pool,
    receiver: WebhookReceiver,
) -> None:
    failing_name, failing_url = receiver.url([500] * 25 + [200])
    healthy_name, healthy_url = receiver.url([200])
    failing_tenant, hole_tenant, healthy_tenant = [await new_tenant(pool) for _ in range(3)]
    await subscribed(pool, hook_settings, failing_tenant, failing_url)
    await subscribed(pool, hook_settings, healthy_tenant, healthy_url)
    async with black_hole() as hole_url:
        await subscribed(pool, hook_settings, hole_tenant, hole_url)
        warm = event_for(healthy_tenant)
        await publish(service, hook_settings, warm)
        await eventually(lambda: _received(receiver, healthy_name, {warm.id}))

        failing = [event_for(failing_tenant) for _ in range(20)]
        holed = [event_for(hole_tenant) for _ in range(20)]
        healthy = [event_for(healthy_tenant) for _ in range(20)]
        published: dict[str, float] = {}
        for trio in zip(failing, holed, healthy, strict=True):
            for event in trio:
                await publish(service, hook_settings, event)
                published[event.id] = time.monotonic()
        wanted = {warm.id} | {e.id for e in healthy}
        await eventually(lambda: _received(receiver, healthy_name, wanted), timeout=10)
        arrivals = zip(receiver.posts[healthy_name], receiver.arrived[healthy_name], strict=True)
        took = max(
            at - published[h["webhook-id"]]
            for (h, _), at in arrivals
            if h["webhook-id"] in published
        )

        assert took < 1.0, f"a healthy endpoint's event took {took:.2f} s to reach it"
        everything = {e.id for e in failing}
        await eventually(lambda: _received(receiver, failing_name, everything), timeout=30)
        delivered = receiver.delivered_ids(failing_name)
        assert sorted(delivered) == sorted(everything)  # every one, none twice
        assert 500 in receiver.answered[failing_name]


async def _received(receiver: WebhookReceiver, name: str, ids: set[str]) -> bool | None:
    return True if ids <= set(receiver.delivered_ids(name)) else None


async def test_gone_disables_the_endpoint_and_tells_the_tenant(
    service: WebhookService,
    hook_settings: Settings,
    pool: asyncpg.Pool,
    receiver: WebhookReceiver,
) -> None:
    tenant = await new_tenant(pool)
    _, gone_url = receiver.url([410])
    gone = await subscribed(pool, hook_settings, tenant, gone_url)
    told_name, told_url = receiver.url([200])
    await subscribed(
        pool, hook_settings, tenant, told_url, event_types=["sendarix.webhook.disabled"]
    )
    async with TopicTap(hook_settings, public_topic(NOTICES, hook_settings.topic_prefix)) as tap:
        await publish(service, hook_settings, event_for(tenant))
        [notice] = await tap.wait_for(lambda n: n["subject"] == gone.id)

    assert notice["type"] == "sendarix.webhook.disabled"
    assert notice["data"]["tenant_id"] == tenant.id and "410" in notice["data"]["reason"]
    disabled = await get_endpoint(pool, tenant.id, gone.id)
    assert disabled is not None and not disabled.enabled and disabled.disabled_at is not None
    await eventually(lambda: _received(receiver, told_name, {notice["id"]}), timeout=10)
    [(_, body)] = receiver.posts[told_name]
    assert json.loads(body)["data"]["key"] == gone.id


async def test_targets_are_checked_when_saved_and_again_when_posted(
    service: WebhookService,
    hook_settings: Settings,
    pool: asyncpg.Pool,
    dns_zone: LoopbackDns,
    receiver: WebhookReceiver,
) -> None:
    tenant = await new_tenant(pool)
    internal = f"internal-{uuid.uuid4().hex[:8]}.test"
    dns_zone.add_address(internal, "10.0.0.1")
    production = TargetGuard(hook_settings.model_copy(update={"dev_mode": False}))
    for url, reason in (
        ("http://127.0.0.1:8080/", "https"),
        ("https://127.0.0.1:8080/", "loopback"),
        ("https://169.254.169.254/", "metadata"),
        ("https://[::1]/", "loopback"),
        (f"https://{internal}/hook", "10.0.0.1, a private address"),
        ("file:///etc/passwd", "https"),
    ):
        with pytest.raises(EndpointRefused) as refused:
            await create_endpoint(pool, production, tenant.id, EndpointFields(url=url))
        assert refused.value.code == "webhook_target_refused" and reason in refused.value.detail

    named = f"hooks-{uuid.uuid4().hex[:8]}.test"
    dns_zone.add_address(named, "127.0.0.1", ttl=0)  # a rebinding attacker's name is never cached
    name, url = receiver.url([200])
    by_name = url.replace("127.0.0.1", named)
    endpoint = await subscribed(pool, hook_settings, tenant, by_name)
    first = event_for(tenant)
    await publish(service, hook_settings, first)
    await eventually(lambda: queued(pool, endpoint, first.id))
    [(headers, _)] = receiver.posts[name]
    assert headers["host"] == by_name.split("/")[2]  # posted to the checked address, by name

    dns_zone.clear(named)
    dns_zone.add_address(named, "10.0.0.1", ttl=0)  # rebinding: a private address at post time
    rebound = event_for(tenant)
    await publish(service, hook_settings, rebound)

    async def refused_attempt() -> asyncpg.Record | None:
        return await pool.fetchrow(
            "SELECT error FROM webhook_attempts WHERE endpoint_id = $1 AND event_id = $2",
            uuid.UUID(endpoint.id),
            uuid.UUID(rebound.id),
        )

    attempt = await eventually(refused_attempt)
    assert attempt["error"].startswith("webhook_target_refused") and "10.0.0.1" in attempt["error"]
    assert len(receiver.posts[name]) == 1


async def test_a_disabled_endpoint_is_queued_nothing_from_the_moment_it_is_disabled(
    service: WebhookService,
    hook_settings: Settings,
    pool: asyncpg.Pool,
    receiver: WebhookReceiver,
) -> None:
    tenant, marker_tenant = await new_tenant(pool), await new_tenant(pool)
    name, url = receiver.url([200])
    endpoint = await subscribed(pool, hook_settings, tenant, url)
    marker_name, marker_url = receiver.url([200])
    await subscribed(pool, hook_settings, marker_tenant, marker_url)
    first = event_for(tenant)
    await publish(service, hook_settings, first)
    await eventually(lambda: queued(pool, endpoint, first.id))  # its endpoints are in memory now

    guard = TargetGuard(hook_settings)
    await update_endpoint(pool, guard, tenant.id, endpoint.id, EndpointPatch(enabled=False))
    second = event_for(tenant)
    marker = event_for(marker_tenant, message_id=second.subject)  # same partition, read after
    for event in (second, marker):
        await publish(service, hook_settings, event)
    await eventually(lambda: _received(receiver, marker_name, {marker.id}))

    rows = await pool.fetchval(
        "SELECT count(*) FROM webhook_queue WHERE endpoint_id = $1", uuid.UUID(endpoint.id)
    )
    assert rows == 1 and receiver.delivered_ids(name) == [first.id]


async def test_an_answer_holding_nul_is_logged_without_failing_the_delivery(
    service: WebhookService,
    hook_settings: Settings,
    pool: asyncpg.Pool,
    receiver: WebhookReceiver,
) -> None:
    tenant = await new_tenant(pool)
    name, url = receiver.url([200])
    receiver.bodies[name] = b"ok\x00\xff then more"
    endpoint = await subscribed(pool, hook_settings, tenant, url)
    event = event_for(tenant)
    await publish(service, hook_settings, event)

    settled = await eventually(lambda: queued(pool, endpoint, event.id))

    assert settled["status"] == "delivered"
    logged = await pool.fetchval(
        "SELECT response FROM webhook_attempts WHERE endpoint_id = $1 AND event_id = $2",
        uuid.UUID(endpoint.id),
        uuid.UUID(event.id),
    )
    assert logged == "ok\ufffd\ufffd then more"
