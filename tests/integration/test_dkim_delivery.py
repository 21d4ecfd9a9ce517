"""DKIM end to end: the real sender signs, Mailpit receives, and the bytes Mailpit got verify with
the key a real DNS server on loopback publishes (dnspython asks it, as any verifier would)."""

from __future__ import annotations

import email
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import dkim
import httpx
import pytest

from libs.domain_records import dkim_tags
from libs.sending_domains import sending_domain
from libs.settings import Settings
from libs.tenants import create_tenant
from libs.topics import EVENTS, lane_topic, public_topic
from schemas.common import Lane, Mailbox
from schemas.pipeline import DeliveryJob, Route
from services.sender.app import SenderService
from tests.dns_server import LoopbackDns, txt_lookup
from tests.support import TopicTap, started
from tests.unit.sender.jobs import delivery_job

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def sender(settings: Settings) -> AsyncIterator[SenderService]:
    async with started(SenderService(settings)) as running:
        yield running


@pytest.fixture
async def tap(settings: Settings, sender: SenderService) -> AsyncIterator[TopicTap]:
    async with TopicTap(settings, public_topic(EVENTS, settings.topic_prefix)) as watching:
        yield watching


async def signed_domain(pool: asyncpg.Pool, zone: LoopbackDns) -> tuple[str, str]:
    """A tenant with a domain of its own whose DKIM key is published; its id and domain."""
    domain = f"d{uuid.uuid4().hex[:10]}.example.net"
    tenant, _ = await create_tenant(pool, "dkim", [domain], dev_mode=True)
    stored = await sending_domain(pool, tenant.id, domain)
    assert stored is not None
    name = f"{stored.dkim.selector}._domainkey.{domain}"
    zone.add_txt(name, f"v=DKIM1; k=rsa; p={stored.dkim.public_key}")
    return tenant.id, domain


async def received_raw(settings: Settings, job: DeliveryJob, header_domain: str) -> bytes:
    """The exact bytes Mailpit received for ``job``."""
    api = settings.mailpit_ui_url
    query = {"query": f"message-id:{job.message.message_id}@{header_domain}"}
    async with httpx.AsyncClient() as client:
        [found] = (await client.get(f"{api}/api/v1/search", params=query)).json()["messages"]
        return (await client.get(f"{api}/api/v1/message/{found['ID']}/raw")).content


async def deliver_to_mailpit(
    sender: SenderService, settings: Settings, tap: TopicTap, tenant_id: str, sender_address: str
) -> DeliveryJob:
    relay = Route(name="relay", host=settings.relay_host, port=settings.relay_port, pool="test")
    job = delivery_job(
        "someone@example.org",
        route=relay,
        retry_for=timedelta(seconds=30),
        tenant_id=tenant_id,
        sender=Mailbox(address=sender_address, name="Acme"),
        reply_to=Mailbox(address="help@example.org"),
        headers={"List-Unsubscribe": "<https://example.org/u/1>"},
    )
    await sender.broker.publish(
        job.model_dump_json().encode(),
        lane_topic("deliver", Lane.CRITICAL, settings.topic_prefix),
        key=job.message.message_id.encode(),
    )
    message_id = job.message.message_id
    await tap.wait_for(
        lambda v: v.get("subject") == message_id and v.get("type") == "sendarix.message.delivered"
    )
    return job


@pytest.mark.parametrize("subdomain", ["", "mail."])
async def test_what_mailpit_received_verifies_over_dns(
    sender: SenderService,
    settings: Settings,
    tap: TopicTap,
    pool: asyncpg.Pool,
    dns_zone: LoopbackDns,
    subdomain: str,
) -> None:
    """Signed by the ``from`` domain's key; a subdomain (``mail.``) signs with its domain's."""
    tenant_id, domain = await signed_domain(pool, dns_zone)
    sent_from = f"{subdomain}{domain}"
    job = await deliver_to_mailpit(sender, settings, tap, tenant_id, f"security@{sent_from}")

    raw = await received_raw(settings, job, sent_from)
    assert dkim.verify(raw, dnsfunc=txt_lookup(dns_zone))
    tags = dkim_tags(str(email.message_from_bytes(raw)["DKIM-Signature"]))
    assert tags["d"] == domain
    signed = set(tags["h"].split(":"))
    assert {"from", "to", "subject", "date", "message-id", "mime-version", "content-type"} <= signed
    assert {"reply-to", "list-unsubscribe"} <= signed

    tampered = raw.replace(b"Subject: Your code", b"Subject: Your c0de")
    assert tampered != raw and not dkim.verify(tampered, dnsfunc=txt_lookup(dns_zone))
