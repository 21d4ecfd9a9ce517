"""policy-check on the real broker and database: suppressed recipients stop, feedback suppresses."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from libs.settings import Settings
from libs.tenants import Tenant
from libs.topics import EVENTS, lane_topic, public_topic
from schemas.common import Lane, Stream
from schemas.events import Bounce, BounceCategory, EventData, MessageState, delivery_event
from schemas.pipeline import RenderedMessage, SmtpReply
from services.policy_check import store
from services.policy_check.app import PolicyCheckService
from services.policy_check.decide import Suppression, SuppressionReason
from tests.records import rendered_message
from tests.support import TopicTap, eventually, started

pytestmark = pytest.mark.integration

LANE = Lane.NORMAL


@pytest.fixture(scope="module")
async def service(settings: Settings) -> AsyncIterator[PolicyCheckService]:
    async with started(PolicyCheckService(settings)) as running:
        yield running


@pytest.fixture
async def tap(settings: Settings, service: PolicyCheckService) -> AsyncIterator[TopicTap]:
    topics = (
        lane_topic("route", LANE, settings.topic_prefix),
        public_topic(EVENTS, settings.topic_prefix),
    )
    async with TopicTap(settings, *topics) as watching:
        yield watching


def address() -> str:
    return f"user-{uuid.uuid4().hex[:8]}@example.test"


async def check(service: PolicyCheckService, settings: Settings, message: RenderedMessage) -> None:
    """Put a message on policy.<LANE>, always partition 0 so later records queue behind it."""
    topic = lane_topic("policy", LANE, settings.topic_prefix)
    key = message.message.message_id.encode()
    await service.broker.publish(message.model_dump_json().encode(), topic, key=key, partition=0)


def routed(message: RenderedMessage) -> Any:
    return lambda v: "content" in v and v["message"]["message_id"] == message.message.message_id


def suppressed(message: RenderedMessage) -> Any:
    message_id = message.message.message_id
    return lambda v: (
        v.get("subject") == message_id and v.get("type") == "sendarix.message.suppressed"
    )


async def test_suppressed_recipient_stops_and_others_are_cleared(
    service: PolicyCheckService,
    settings: Settings,
    pool: asyncpg.Pool,
    tenant: tuple[Tenant, str],
    tap: TopicTap,
) -> None:
    tenant_id = tenant[0].id
    bounced, unsubscribed = address(), address()
    await store.add_suppressions(
        pool,
        [
            Suppression(tenant_id, bounced, SuppressionReason.HARD_BOUNCE),
            Suppression(tenant_id, unsubscribed, SuppressionReason.UNSUBSCRIBE),
        ],
    )
    to_bounced = rendered_message(tenant_id=tenant_id, lane=LANE, recipient=bounced.upper())
    broadcast = rendered_message(
        tenant_id=tenant_id, lane=LANE, recipient=unsubscribed, stream=Stream.BROADCAST
    )
    transactional = rendered_message(tenant_id=tenant_id, lane=LANE, recipient=unsubscribed)
    other_tenant = rendered_message(lane=LANE, recipient=bounced)
    for message in (to_bounced, broadcast, transactional, other_tenant):
        await check(service, settings, message)

    [cleared] = await tap.wait_for(routed(transactional))
    assert cleared == transactional.model_dump(mode="json")
    await tap.wait_for(routed(other_tenant))
    for message, code in (
        (to_bounced, "suppressed_hard_bounce"),
        (broadcast, "suppressed_unsubscribe"),
    ):
        [event] = await tap.wait_for(suppressed(message))
        assert event["data"]["problem"]["code"] == code
        assert not [v for v in tap.json_values() if routed(message)(v)]


async def feedback(
    service: PolicyCheckService, settings: Settings, state: MessageState, **data: Any
) -> None:
    values: dict[str, Any] = {
        "message_id": "feedback-test",  # one key, one partition: events are read in this order
        "trace_id": uuid.uuid4().hex,
        "service": "sender",
    }
    event = delivery_event(state, EventData(**(values | data)), datetime.now(UTC))
    await service.broker.publish(
        event.model_dump_json().encode(),
        public_topic(EVENTS, settings.topic_prefix),
        key=event.subject.encode(),
    )


async def test_hard_bounces_and_complaints_suppress_the_address(
    service: PolicyCheckService,
    settings: Settings,
    pool: asyncpg.Pool,
    tenant: tuple[Tenant, str],
) -> None:
    tenant_id = tenant[0].id
    soft, hard, hostile = address(), address(), address()
    await feedback(
        service,
        settings,
        MessageState.BOUNCED,
        tenant_id=tenant_id,
        recipient=soft,
        smtp=SmtpReply(code=452, enhanced_status="4.2.2", text="mailbox full"),
        bounce=Bounce(category=BounceCategory.MAILBOX_FULL, hard=False),
    )
    await feedback(
        service,
        settings,
        MessageState.BOUNCED,
        tenant_id=tenant_id,
        recipient=hard.upper(),
        smtp=SmtpReply(code=550, enhanced_status="5.1.1", text="user unknown"),
        bounce=Bounce(category=BounceCategory.INVALID_RECIPIENT, hard=True),
    )
    await feedback(
        service, settings, MessageState.COMPLAINED, tenant_id=tenant_id, recipient=hostile
    )

    async def reason(address: str) -> str | None:
        stored: str | None = await pool.fetchval(
            "SELECT reason FROM suppressions WHERE tenant_id = $1 AND address = $2",
            uuid.UUID(tenant_id),
            address,
        )
        return stored

    assert await eventually(lambda: reason(hard)) == "hard_bounce"
    assert await eventually(lambda: reason(hostile)) == "complaint"
    assert await reason(soft) is None


async def test_storing_suppressions_is_idempotent_and_only_ever_widens(
    pool: asyncpg.Pool, tenant: tuple[Tenant, str]
) -> None:
    tenant_id, target = tenant[0].id, address()

    def of(reason: SuppressionReason) -> Suppression:
        return Suppression(tenant_id, target, reason)

    async def add(reason: SuppressionReason) -> bool:
        return bool(await store.add_suppressions(pool, [of(reason)]))

    assert await add(SuppressionReason.UNSUBSCRIBE)
    assert not await add(SuppressionReason.UNSUBSCRIBE)
    assert await add(SuppressionReason.HARD_BOUNCE)
    assert not await add(SuppressionReason.UNSUBSCRIBE)
    assert not await add(SuppressionReason.COMPLAINT)
    other, bad = address(), (str(uuid.uuid4()), target)
    found = await store.suppressions_for(pool, [(tenant_id, target), (tenant_id, other), bad])
    assert found == {(tenant_id, target): of(SuppressionReason.HARD_BOUNCE)}
    assert await store.suppressions_for(pool, [("not-a-uuid", target)]) == {}


async def test_one_batch_may_suppress_an_address_twice(
    pool: asyncpg.Pool, tenant: tuple[Tenant, str]
) -> None:
    tenant_id, target = tenant[0].id, address()
    stored = await store.add_suppressions(
        pool,
        [
            Suppression(tenant_id, target, SuppressionReason.UNSUBSCRIBE),
            Suppression(tenant_id, target, SuppressionReason.COMPLAINT),
            Suppression(tenant_id, target, SuppressionReason.HARD_BOUNCE),
        ],
    )
    assert [s.reason for s in stored] == [SuppressionReason.COMPLAINT]
