"""analytics on the real broker and database: aggregates of known events, counted once however
often Kafka delivers them, and an alert that opens once, resolves once, each with its notice."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from aiokafka import ConsumerRecord

from libs.alerts import AlertKind, AlertStatus, list_alerts
from libs.analytics import Granularity
from libs.analytics_report import AnalyticsQuery, AnalyticsReport, read_report
from libs.batch import Consumed, Publication
from libs.events import event_headers
from libs.settings import Settings
from libs.tenants import Tenant
from libs.topics import EVENTS, NOTICES, public_topic
from schemas.common import Lane, Stream
from schemas.events import (
    Bounce,
    BounceCategory,
    DeliveryEvent,
    EventData,
    MessageState,
    delivery_event,
)
from schemas.notices import Notice, NoticeType
from services.analytics.app import AnalyticsService
from tests.support import TopicTap, eventually, started

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)
OPENING = NOW + timedelta(minutes=1)


@pytest.fixture(scope="module")
async def service(settings: Settings) -> AsyncIterator[AnalyticsService]:
    """The analytics service, its periodic evaluation out of the way (the tests evaluate)."""
    quiet = settings.model_copy(update={"alert_evaluation_seconds": 3600.0})
    async with started(AnalyticsService(quiet)) as running:
        yield running


def event(
    tenant_id: str,
    state: MessageState,
    at: datetime,
    message_id: str | None = None,
    **fields: object,
) -> DeliveryEvent:
    data = EventData.model_validate(
        {
            "message_id": message_id or str(uuid.uuid4()),
            "tenant_id": tenant_id,
            "recipient": f"user{uuid.uuid4().hex[:6]}@{fields.pop('domain', 'example.org')}",
            "stream": Stream.TRANSACTIONAL,
            "lane": fields.pop("lane", Lane.CRITICAL),
            "category": fields.pop("category", "otp"),
            "trace_id": uuid.uuid4().hex,
            "service": "sender",
            **fields,
        }
    )
    return delivery_event(state, data, at)


async def publish(service: AnalyticsService, events: list[DeliveryEvent]) -> None:
    """Put ``events`` on the event stream as the services do (their times as given)."""
    topic = public_topic(EVENTS, service.settings.topic_prefix)
    await service.broker.send_confirmed(
        [
            Publication(
                None, topic, e.model_dump_json().encode(), e.subject.encode(), event_headers(e)
            )
            for e in events
        ]
    )


async def report_with(
    pool: asyncpg.Pool, tenant_id: str, counts: dict[str, int], **query: object
) -> AnalyticsReport:
    """The day report of the tenant once its totals have ``counts``."""
    wanted = AnalyticsQuery(
        since=NOW - timedelta(days=1),
        until=NOW + timedelta(days=1),
        granularity=Granularity.DAY,
        **query,  # type: ignore[arg-type]
    )

    async def ready() -> AnalyticsReport | None:
        report = await read_report(pool, tenant_id, wanted)
        totals = report.totals.counts
        return report if all(totals[k] == v for k, v in counts.items()) else None

    return await eventually(ready, timeout=30)


async def test_known_events_add_up_and_redelivered_records_do_not_count_again(
    service: AnalyticsService, settings: Settings, pool: asyncpg.Pool, tenant: tuple[Tenant, str]
) -> None:
    tenant_id = tenant[0].id
    accepted_at = NOW - timedelta(minutes=5)
    ids = [str(uuid.uuid4()) for _ in range(10)]
    events = [event(tenant_id, MessageState.ACCEPTED, accepted_at, i) for i in ids]
    events += [
        event(tenant_id, MessageState.DELIVERED, accepted_at + timedelta(seconds=2), i)
        for i in ids[:8]
    ]
    block = Bounce(category=BounceCategory.SPAM_BLOCK, hard=False)
    events += [
        event(tenant_id, MessageState.BOUNCED, NOW, i, domain="blocks.example", bounce=block)
        for i in ids[8:]
    ]
    events.append(event(tenant_id, MessageState.DEFERRED, NOW, ids[0], category="billing"))
    async with TopicTap(settings, public_topic(EVENTS, settings.topic_prefix)) as tap:
        await publish(service, events)
        expected = {"accepted": 10, "delivered": 8, "bounced": 2, "deferred": 1, "failed": 0}

        report = await report_with(pool, tenant_id, expected)

        assert report.totals.rates["bounce"] == pytest.approx(0.2)
        assert report.totals.rates["deferral"] == pytest.approx(1 / 11)
        assert report.totals.latency.sample == 8
        assert report.totals.latency.p50_ms is not None
        assert 1400 < report.totals.latency.p50_ms < 2600
        by_domain = await report_with(pool, tenant_id, expected, group_by=("recipient_domain",))
        bounced = {b.group["recipient_domain"]: b.counts["bounced"] for b in by_domain.buckets}
        assert bounced == {"example.org": 0, "blocks.example": 2}
        billing = await report_with(
            pool, tenant_id, {"deferred": 1, "accepted": 0}, filters={"category": "billing"}
        )
        assert billing.totals.counts["delivered"] == 0

        async def all_read() -> list[ConsumerRecord[bytes, bytes]] | None:
            return tap.records if len(tap.records) >= len(events) else None

        again = [
            Consumed(DeliveryEvent.model_validate_json(r.value or b""), r, None, None)
            for r in await eventually(all_read)
        ]
        await service.aggregate_batch(again)

    report = await report_with(pool, tenant_id, expected)
    assert report.totals.counts["accepted"] == 10
    assert report.totals.latency.sample == 8


async def test_a_bounce_rate_alert_opens_once_and_resolves_once_with_its_notices(
    service: AnalyticsService, settings: Settings, pool: asyncpg.Pool, tenant: tuple[Tenant, str]
) -> None:
    tenant_id = tenant[0].id
    bounce = Bounce(category=BounceCategory.INVALID_RECIPIENT, hard=True)
    bounces = [
        event(tenant_id, MessageState.BOUNCED, NOW, lane=Lane.NORMAL, bounce=bounce)
        for _ in range(150)
    ]
    later = OPENING + timedelta(minutes=90)
    deliveries = [
        event(tenant_id, MessageState.DELIVERED, later, lane=Lane.NORMAL) for _ in range(200)
    ]
    async with TopicTap(settings, public_topic(NOTICES, settings.topic_prefix)) as tap:
        await publish(service, bounces + deliveries)
        await report_with(pool, tenant_id, {"bounced": 150, "delivered": 200})

        await service.evaluate_alerts(OPENING)
        await service.evaluate_alerts(OPENING + timedelta(seconds=15))

        [alert] = await list_alerts(pool, tenant_id, AlertStatus.ALL, 10)
        assert (alert.kind, alert.severity, alert.value, alert.sample) == (
            AlertKind.BOUNCE_RATE,
            "critical",
            1.0,
            150,
        )
        assert alert.resolved_at is None

        await service.evaluate_alerts(later + timedelta(minutes=5))
        await service.evaluate_alerts(later + timedelta(minutes=6))

        [resolved] = await list_alerts(pool, tenant_id, AlertStatus.RESOLVED, 10)
        assert resolved.id == alert.id and resolved.last_value == 0.0
        assert await list_alerts(pool, tenant_id, AlertStatus.OPEN, 10) == []

        notices = await tap.wait_for(lambda v: v["subject"] == alert.id, count=2)
        await service.evaluate_alerts(later + timedelta(minutes=7))

    mine = [Notice.model_validate(v) for v in tap.json_values() if v["subject"] == alert.id]
    assert [n.type for n in mine] == [NoticeType.ALERT_OPENED, NoticeType.ALERT_RESOLVED]
    assert len(notices) == 2
    assert mine[0].data.tenant_id == tenant_id and mine[0].data.kind == "bounce_rate"
    assert mine[0].data.severity == "critical" and mine[0].data.sample == 150
    assert [r.key for r in tap.records if r.value and alert.id.encode() in r.value] == [
        tenant_id.encode()
    ] * 2
