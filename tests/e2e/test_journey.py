"""One OTP from the HTTP request to the SMTP reply and the webhook, in one trace."""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg
import pytest
from standardwebhooks import Webhook

from deploy.stack.pipeline import metrics_ports
from deploy.stack.profiles import TEST
from libs.templates import put_template
from libs.tenants import Tenant
from libs.webhook_endpoints import EndpointFields, create_endpoint
from libs.webhook_targets import TargetGuard
from tests.e2e.conftest import Topology
from tests.support import (
    Scrape,
    WebhookReceiver,
    eventually,
    jaeger_services,
    moved,
    scrape,
    serving_webhooks,
)

pytestmark = pytest.mark.e2e

PIPELINE = {"ingest", "render", "policy-check", "router", "sender"}


@pytest.fixture
async def receiver() -> Any:
    async with serving_webhooks() as running:
        yield running


async def test_otp_is_delivered_traced_and_streamed_to_the_webhook(
    topology: Topology,
    pool: asyncpg.Pool,
    tenant: tuple[Tenant, str],
    receiver: WebhookReceiver,
) -> None:
    account, api_key = tenant
    hook, url = receiver.url()
    configured = await create_endpoint(
        pool, TargetGuard(topology.settings), account.id, EndpointFields(url=url)
    )
    await put_template(
        pool, account.id, "otp", "Your {{ app }} code is {{ code }}", None, "Code: {{ code }}"
    )
    accepted = await topology.send(
        api_key,
        {
            "from": "Acme <login@example.test>",
            "to": "success@simulator.sendarix.test",
            "template": "otp",
            "data": {"code": "482916", "app": "Acme"},
            "category": "otp",
            "tags": ["login"],
        },
    )
    message_id = accepted["id"]

    shown = await topology.settled(api_key, message_id, "delivered")

    assert shown["lane"] == "critical"
    assert shown["trace_id"] == accepted["trace_id"]
    types = [event["type"] for event in shown["events"]]
    for state in ("accepted", "rendered", "routed", "delivered"):
        assert state in types
    delivered = [m for m in topology.simulator_deliveries() if message_id in m["message_id"]]
    assert len(delivered) == 1

    async def posted_delivered() -> list[dict[str, Any]] | None:
        bodies = [json.loads(body) for _, body in receiver.posts[hook]]
        found = [b for b in bodies if b["type"] == "sendarix.message.delivered"]
        return found or None

    [event] = await eventually(posted_delivered)
    headers, body = next(
        (h, b) for h, b in receiver.posts[hook] if json.loads(b)["id"] == event["id"]
    )
    Webhook(configured.secret).verify(body, headers)
    assert event["subject"] == message_id

    async def whole_trace() -> set[str] | None:
        services = await jaeger_services(topology.settings, accepted["trace_id"])
        return services if services and PIPELINE | {"webhook"} <= services else None

    assert PIPELINE | {"webhook"} <= await eventually(whole_trace, timeout=30)


async def test_throttled_message_is_retried_in_the_same_trace(
    topology: Topology, tenant: tuple[Tenant, str]
) -> None:
    _, api_key = tenant
    accepted = await topology.send(
        api_key,
        {
            "from": "billing@example.test",
            "to": f"throttle+{uuid.uuid4().hex[:6]}@simulator.sendarix.test",
            "subject": "Your receipt",
            "text": "Thanks!",
            "category": "receipt",
        },
    )

    shown = await topology.settled(api_key, accepted["id"], "delivered")

    deferrals = [e for e in shown["events"] if e["type"] == "deferred"]
    assert len(deferrals) == 3
    assert all(e["smtp"]["code"] == 421 for e in deferrals)

    async def whole_trace() -> set[str] | None:
        services = await jaeger_services(topology.settings, accepted["trace_id"])
        return services if services and PIPELINE | {"retry-scheduler"} <= services else None

    assert PIPELINE | {"retry-scheduler"} <= await eventually(whole_trace, timeout=30)


async def test_mail_for_other_domains_reaches_the_relay(
    topology: Topology, tenant: tuple[Tenant, str]
) -> None:
    _, api_key = tenant
    subject = f"Welcome {uuid.uuid4().hex}"
    accepted = await topology.send(
        api_key,
        {
            "from": "hello@example.test",
            "to": "new.user@example.com",
            "subject": subject,
            "html": "<p>Welcome aboard</p>",
            "category": "notification",
        },
    )

    await topology.settled(api_key, accepted["id"], "delivered")

    message = await topology.in_mailpit(subject)
    assert message["To"][0]["Address"] == "new.user@example.com"
    assert accepted["id"] in message["MessageID"]


async def test_a_delivery_shows_in_the_gateway_and_sender_metrics(
    topology: Topology, tenant: tuple[Tenant, str]
) -> None:
    _, api_key = tenant
    gateway = f"{topology.settings.public_url}/metrics"
    sender = f"http://127.0.0.1:{metrics_ports(TEST.metrics_base_port)['sender']}/metrics"
    gateway_before, sender_before = await scrape(gateway), await scrape(sender)
    accepted = await topology.send(
        api_key,
        {
            "from": "login@example.test",
            "to": "success@simulator.sendarix.test",
            "subject": "Your code",
            "text": "Code: 123456",
            "category": "otp",
        },
    )

    shown = await topology.settled(api_key, accepted["id"], "delivered")

    assert shown["lane"] == "critical"
    gateway_after = await scrape(gateway)
    assert (
        moved(
            gateway_before,
            gateway_after,
            "sendarix_ingest_requests_total",
            door="http",
            lane="critical",
            outcome="accepted",
        )
        == 1
    )

    async def sender_counted() -> Scrape | None:
        after = await scrape(sender)
        handled = moved(
            sender_before,
            after,
            "sendarix_records_total",
            service="sender",
            lane="critical",
            outcome="handled",
        )
        return after if handled >= 1 else None

    sender_after = await eventually(sender_counted)
    critical = {"lane": "critical"}
    assert moved(sender_before, sender_after, "sendarix_smtp_replies_total", **critical) == 1
    assert moved(sender_before, sender_after, "sendarix_smtp_replies_total", reply_class="2xx") == 1
    assert (
        moved(sender_before, sender_after, "sendarix_delivery_attempts_total", state="delivered")
        == 1
    )
    latency = "sendarix_accept_to_delivered_seconds_count"
    assert moved(sender_before, sender_after, latency, **critical) == 1
    assert any(n == "sendarix_consumer_lag" for n, _ in sender_after)
