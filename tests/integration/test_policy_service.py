"""policy-check on the real broker and database: suppressed recipients stop, feedback suppresses,
and its in-process view follows the table."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from libs.settings import Settings
from libs.suppressions import (
    Suppression,
    SuppressionReason,
    active_suppressions,
    add_suppressions,
    remove_suppressions,
)
from libs.tenants import Tenant
from libs.topics import EVENTS, lane_topic, public_topic
from schemas.common import Lane, Stream
from schemas.events import Bounce, BounceCategory, EventData, MessageState
from schemas.pipeline import RenderedMessage
from services.policy_check.app import PolicyCheckService
from tests.records import rendered_message
from tests.support import TopicTap, emit, eventually, started

pytestmark = pytest.mark.integration

LANES = (Lane.CRITICAL, Lane.NORMAL, Lane.BULK)
R = SuppressionReason


@pytest.fixture(scope="module")
async def service(settings: Settings) -> AsyncIterator[PolicyCheckService]:
    async with started(PolicyCheckService(settings)) as running:
        yield running


@pytest.fixture
async def tap(settings: Settings, service: PolicyCheckService) -> AsyncIterator[TopicTap]:
    topics = [lane_topic("route", lane, settings.topic_prefix) for lane in LANES]
    async with TopicTap(settings, *topics, public_topic(EVENTS, settings.topic_prefix)) as tap:
        yield tap


def address() -> str:
    return f"user-{uuid.uuid4().hex[:8]}@example.test"


async def check(service: PolicyCheckService, settings: Settings, message: RenderedMessage) -> None:
    """Put a message on policy.<its lane>, partition 0 so later records queue behind it."""
    topic = lane_topic("policy", message.message.lane, settings.topic_prefix)
    key = message.message.message_id.encode()
    await service.broker.publish(message.model_dump_json().encode(), topic, key=key, partition=0)


def routed(message: RenderedMessage) -> Any:
    return lambda v: "content" in v and v["message"]["message_id"] == message.message.message_id


def suppressed(message: RenderedMessage) -> Any:
    message_id = message.message.message_id
    return lambda v: (
        v.get("subject") == message_id and v.get("type") == "sendarix.message.suppressed"
    )


async def expect(tap: TopicTap, stopped: dict[str, RenderedMessage], cleared: list[Any]) -> None:
    """Each of ``cleared`` reaches the router; each of ``stopped`` is suppressed with its code."""
    for message in cleared:
        await tap.wait_for(routed(message))
    for code, message in stopped.items():
        [event] = await tap.wait_for(suppressed(message))
        assert event["data"]["problem"]["code"] == code
        assert not [v for v in tap.json_values() if routed(message)(v)]


def suppression(tenant_id: str, to: str, stream: Stream, reason: R, **more: Any) -> Suppression:
    return Suppression(tenant_id, to, stream, reason, **more)


async def test_suppressed_recipients_stop_in_their_stream_only(
    service: PolicyCheckService,
    settings: Settings,
    pool: asyncpg.Pool,
    tenant: tuple[Tenant, str],
    tap: TopicTap,
) -> None:
    tenant_id = tenant[0].id
    bounced, unsubscribed = address(), address()
    stored = await add_suppressions(
        pool,
        [
            suppression(tenant_id, bounced, Stream.TRANSACTIONAL, R.HARD_BOUNCE),
            suppression(tenant_id, unsubscribed, Stream.BROADCAST, R.UNSUBSCRIBE),
        ],
    )
    service.view.learned(stored)
    to_bounced = rendered_message(tenant_id=tenant_id, recipient=bounced.upper())
    bounced_broadcast = rendered_message(
        tenant_id=tenant_id, lane=Lane.BULK, recipient=bounced, stream=Stream.BROADCAST
    )
    broadcast = rendered_message(
        tenant_id=tenant_id, lane=Lane.BULK, recipient=unsubscribed, stream=Stream.BROADCAST
    )
    transactional = rendered_message(tenant_id=tenant_id, recipient=unsubscribed)
    other_tenant = rendered_message(recipient=bounced)
    for message in (to_bounced, bounced_broadcast, broadcast, transactional, other_tenant):
        await check(service, settings, message)
    [cleared] = await tap.wait_for(routed(transactional))
    assert cleared == transactional.model_dump(mode="json")
    await expect(
        tap,
        {"suppressed_hard_bounce": to_bounced, "suppressed_unsubscribe": broadcast},
        [bounced_broadcast, other_tenant],
    )


async def feedback(
    service: PolicyCheckService, settings: Settings, state: MessageState, **data: Any
) -> None:
    values: dict[str, Any] = {
        "message_id": str(uuid.uuid4()),
        "trace_id": uuid.uuid4().hex,
        "service": "sender",
    }
    await emit(service.broker, settings, state, EventData(**(values | data)))


async def reasons(pool: asyncpg.Pool, tenant_id: str, to: str) -> set[tuple[str, str]] | None:
    found = await active_suppressions(pool, [(tenant_id, to)])
    stored = {(s.stream.value, s.reason.value) for s in found.get((tenant_id, to), [])}
    return stored or None


async def test_an_unsubscribe_stops_broadcast_and_a_complaint_spares_only_the_otp(
    service: PolicyCheckService,
    settings: Settings,
    pool: asyncpg.Pool,
    tenant: tuple[Tenant, str],
    tap: TopicTap,
) -> None:
    tenant_id = tenant[0].id
    leaver, hostile = address(), address()
    await feedback(
        service,
        settings,
        MessageState.UNSUBSCRIBED,
        tenant_id=tenant_id,
        recipient=leaver,
        stream=Stream.BROADCAST,
    )
    await feedback(
        service, settings, MessageState.COMPLAINED, tenant_id=tenant_id, recipient=hostile
    )
    await eventually(lambda: reasons(pool, tenant_id, leaver))
    await eventually(lambda: reasons(pool, tenant_id, hostile))

    newsletter = rendered_message(
        tenant_id=tenant_id, lane=Lane.BULK, recipient=leaver, stream=Stream.BROADCAST
    )
    receipt = rendered_message(tenant_id=tenant_id, recipient=leaver, category="receipt")
    otp = rendered_message(
        tenant_id=tenant_id, lane=Lane.CRITICAL, recipient=hostile, category="otp"
    )
    notice = rendered_message(tenant_id=tenant_id, recipient=hostile, category="notification")
    for message in (newsletter, receipt, otp, notice):
        await check(service, settings, message)
    await expect(
        tap,
        {"suppressed_unsubscribe": newsletter, "suppressed_complaint": notice},
        [receipt, otp],
    )


async def test_hard_bounces_and_repeated_soft_bounces_suppress_the_address(
    service: PolicyCheckService,
    settings: Settings,
    pool: asyncpg.Pool,
    tenant: tuple[Tenant, str],
) -> None:
    tenant_id = tenant[0].id
    hard, full, throttled = address(), address(), address()
    await feedback(
        service,
        settings,
        MessageState.BOUNCED,
        tenant_id=tenant_id,
        recipient=hard.upper(),
        stream=Stream.BROADCAST,
        bounce=Bounce(category=BounceCategory.INVALID_RECIPIENT, hard=True),
    )
    mailbox_full = Bounce(category=BounceCategory.MAILBOX_FULL, hard=False)
    throttling = Bounce(category=BounceCategory.THROTTLING, hard=False)
    for _ in range(settings.soft_bounce_count):
        for to, bounce in ((full, mailbox_full), (throttled, throttling)):
            state = MessageState.DEFERRED
            await feedback(
                service, settings, state, tenant_id=tenant_id, recipient=to, bounce=bounce
            )
    assert await eventually(lambda: reasons(pool, tenant_id, hard)) == {
        ("broadcast", "hard_bounce")
    }
    assert await eventually(lambda: reasons(pool, tenant_id, full)) == {
        ("transactional", "repeated_soft_bounce")
    }
    [pause] = (await active_suppressions(pool, [(tenant_id, full)]))[(tenant_id, full)]
    assert pause.expires_at is not None
    assert pause.expires_at - datetime.now(UTC) > timedelta(
        days=settings.soft_bounce_pause_days - 1
    )
    assert await reasons(pool, tenant_id, throttled) is None


async def test_the_view_takes_in_what_others_write_or_remove_within_two_seconds(
    service: PolicyCheckService,
    settings: Settings,
    pool: asyncpg.Pool,
    tenant: tuple[Tenant, str],
    tap: TopicTap,
) -> None:
    tenant_id, blocked = tenant[0].id, address()
    written = time.monotonic()
    await add_suppressions(pool, [suppression(tenant_id, blocked, Stream.TRANSACTIONAL, R.MANUAL)])

    async def seen(suppressed: bool) -> bool | None:
        return service.view.suppressed((tenant_id, blocked)) is suppressed or None

    await eventually(lambda: seen(True), timeout=2.0, every=0.05)
    assert time.monotonic() - written <= 2.0
    first = rendered_message(tenant_id=tenant_id, recipient=blocked)
    await check(service, settings, first)
    await expect(tap, {"suppressed_manual": first}, [])

    async with pool.acquire() as connection:
        removal = await remove_suppressions(
            connection, tenant_id, blocked, None, None, "test", "wrong address", True
        )
    assert [s.reason for s in removal.removed] == [R.MANUAL]
    removed = time.monotonic()
    await eventually(lambda: seen(False), timeout=2.0, every=0.05)
    assert time.monotonic() - removed <= 2.0
    second = rendered_message(tenant_id=tenant_id, recipient=blocked)
    await check(service, settings, second)
    await expect(tap, {}, [second])


async def test_a_restarted_view_loads_the_table_and_expired_rows_stop_nothing(
    settings: Settings, pool: asyncpg.Pool, tenant: tuple[Tenant, str]
) -> None:
    tenant_id, kept, expired = tenant[0].id, address(), address()
    past = datetime.now(UTC) - timedelta(seconds=1)
    await add_suppressions(
        pool,
        [
            suppression(tenant_id, kept, Stream.TRANSACTIONAL, R.HARD_BOUNCE),
            suppression(tenant_id, expired, Stream.TRANSACTIONAL, R.MANUAL, expires_at=past),
        ],
    )
    async with started(PolicyCheckService(settings)) as fresh:
        assert fresh.view.suppressed((tenant_id, kept))
        specs = [
            rendered_message(tenant_id=tenant_id, recipient=to).message for to in (kept, expired)
        ]
        problems = fresh.view.problems(specs, datetime.now(UTC))
    assert [p.code if p else None for p in problems] == ["suppressed_hard_bounce", None]


async def test_storing_is_idempotent_and_a_pause_only_ever_lengthens(
    pool: asyncpg.Pool, tenant: tuple[Tenant, str]
) -> None:
    tenant_id, target = tenant[0].id, address()
    soon = datetime.now(UTC) + timedelta(hours=1)

    async def add(reason: R, expires_at: datetime | None = None) -> bool:
        one = suppression(tenant_id, target, Stream.BROADCAST, reason, expires_at=expires_at)
        return bool(await add_suppressions(pool, [one, one]))

    assert await add(R.UNSUBSCRIBE)
    assert not await add(R.UNSUBSCRIBE)
    assert await add(R.REPEATED_SOFT_BOUNCE, soon)
    assert not await add(R.REPEATED_SOFT_BOUNCE, soon - timedelta(minutes=1))
    assert await add(R.REPEATED_SOFT_BOUNCE, soon + timedelta(minutes=1))
    assert await reasons(pool, tenant_id, target) == {
        ("broadcast", "unsubscribe"),
        ("broadcast", "repeated_soft_bounce"),
    }
    assert await active_suppressions(pool, [("not-a-uuid", target)]) == {}
