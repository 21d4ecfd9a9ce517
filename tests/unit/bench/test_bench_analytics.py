"""The analytics scenario's synthetic events: whole messages, a realistic mix, valid records."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime

from schemas.events import DeliveryEvent
from tests.bench.analytics import analytics_goals, synthetic_events


def test_synthetic_events_are_whole_messages_of_a_realistic_mix() -> None:
    tenants = [str(uuid.uuid4()) for _ in range(20)]

    records = synthetic_events("events", 20_000, tenants, datetime.now(UTC))

    events = [DeliveryEvent.model_validate_json(r.value) for r in records]
    types = Counter(e.state.value for e in events)
    assert 20_000 <= len(events) < 20_010
    assert types["accepted"] == types["delivered"] + types["bounced"]
    assert 0.02 < types["bounced"] / types["accepted"] < 0.04
    assert all(r.key == e.subject.encode() for r, e in zip(records, events, strict=True))
    domains = Counter(e.data.recipient.rpartition("@")[2] for e in events if e.data.recipient)
    assert domains.most_common(1)[0][0] == "gmail.com"


def test_the_goal_is_five_thousand_events_a_second() -> None:
    def figures(rate: int | None) -> dict[str, object]:
        return {"aggregation": {"events_per_s": rate}}

    assert analytics_goals(None) == []
    assert [met for met, _ in analytics_goals(figures(5000))] == [True]
    assert [met for met, _ in analytics_goals(figures(4999))] == [False]
    assert [met for met, _ in analytics_goals(figures(None))] == [False]
