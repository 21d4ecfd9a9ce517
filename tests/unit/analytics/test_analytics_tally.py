"""A batch of events added up in memory: one count per bucket of each granularity."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from libs.analytics import latency_bin
from schemas.common import Lane, Stream
from schemas.events import (
    Bounce,
    BounceCategory,
    DeliveryEvent,
    EventData,
    MessageState,
    delivery_event,
)
from services.analytics.aggregate import RecentAcceptances, Tally, accept_to_delivery_ms

TENANT = str(uuid.uuid4())
AT = datetime(2026, 5, 1, 10, 30, 15, tzinfo=UTC)


def event(state: MessageState, at: datetime = AT, **fields: object) -> DeliveryEvent:
    data = EventData.model_validate(
        {
            "message_id": str(uuid.uuid4()),
            "tenant_id": TENANT,
            "recipient": "Zoë@Example.ORG",
            "stream": Stream.TRANSACTIONAL,
            "lane": Lane.CRITICAL,
            "category": "otp",
            "template": "otp",
            "trace_id": uuid.uuid4().hex,
            "service": "sender",
            **fields,
        }
    )
    return delivery_event(state, data, at)


def test_an_event_counts_once_in_its_minute_hour_and_day() -> None:
    tally = Tally()

    tally.add(event(MessageState.DELIVERED, template_version=3))

    dims = ("transactional", "critical", "otp", "otp", "3", "example.org")
    assert tally.counts == {
        (TENANT, "minute", datetime(2026, 5, 1, 10, 30, tzinfo=UTC), *dims, "delivered", ""): 1,
        (TENANT, "hour", datetime(2026, 5, 1, 10, tzinfo=UTC), *dims, "delivered", ""): 1,
        (TENANT, "day", datetime(2026, 5, 1, tzinfo=UTC), *dims, "delivered", ""): 1,
    }
    assert tally.latency == {}


def test_events_of_one_key_add_up_and_a_bounce_keeps_its_category() -> None:
    tally = Tally()
    bounce = Bounce(category=BounceCategory.SPAM_BLOCK, hard=False)

    for _ in range(3):
        tally.add(event(MessageState.BOUNCED, bounce=bounce))
    tally.add(event(MessageState.ACCEPTED, at=AT + timedelta(minutes=1)))

    minute = [(key[10], key[9], n) for key, n in tally.counts.items() if key[1] == "minute"]
    assert sorted(minute) == [("", "accepted", 1), ("spam_block", "bounced", 3)]
    assert tally.events == {"bounced": 3, "accepted": 1}


def test_a_delivery_with_a_known_acceptance_adds_its_latency() -> None:
    delivered = event(MessageState.DELIVERED)
    latency = accept_to_delivery_ms(delivered, AT - timedelta(milliseconds=1500))
    tally = Tally()

    tally.add(delivered, latency)

    assert latency == 1500
    assert {key[-1] for key in tally.latency} == {latency_bin(1500)}
    assert sum(tally.latency.values()) == 3
    assert accept_to_delivery_ms(event(MessageState.BOUNCED), AT) is None
    assert accept_to_delivery_ms(delivered, None) is None


def test_recent_acceptances_forget_the_oldest_beyond_capacity() -> None:
    recent = RecentAcceptances(capacity=2)

    for name in ("a", "b", "c"):
        recent.remember(name, AT)

    assert [recent.get(name) for name in ("a", "b", "c")] == [None, AT, AT]
