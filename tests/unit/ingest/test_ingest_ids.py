"""Message ids: repeatable exactly where a request may be processed twice."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from services.ingest.ids import (
    RecordOrigin,
    fresh_message_ids,
    keyed_message_ids,
    record_message_ids,
    rejection_id,
)

CLAIMED = datetime(2030, 1, 1, tzinfo=UTC)


def test_fresh_ids_are_distinct_uuids() -> None:
    ids = fresh_message_ids(3) + fresh_message_ids(3)
    assert len({uuid.UUID(i) for i in ids}) == 6


def test_keyed_ids_repeat_for_the_same_claim_only() -> None:
    ids = keyed_message_ids("tenant-a", "order-1", CLAIMED, 3)
    assert ids == keyed_message_ids("tenant-a", "order-1", CLAIMED, 3)
    assert len(set(ids)) == 3
    assert keyed_message_ids("tenant-a", "order-1", CLAIMED, 1) == ids[:1]
    others = [
        keyed_message_ids("tenant-b", "order-1", CLAIMED, 3),
        keyed_message_ids("tenant-a", "order-2", CLAIMED, 3),
        keyed_message_ids("tenant-a", "order-1", CLAIMED + timedelta(days=1), 3),
    ]
    for other in others:
        assert not set(other) & set(ids)


def test_record_ids_follow_the_records_place_on_the_topic() -> None:
    origin = RecordOrigin("sendarix.send.requests", 2, 41)
    ids = record_message_ids(origin, 2)
    assert ids == record_message_ids(RecordOrigin("sendarix.send.requests", 2, 41), 2)
    assert len(set(ids)) == 2
    assert not set(record_message_ids(RecordOrigin("sendarix.send.requests", 2, 42), 2)) & set(ids)
    assert not set(record_message_ids(RecordOrigin("sendarix.send.requests", 1, 41), 2)) & set(ids)
    assert rejection_id(origin) == rejection_id(origin)
    assert rejection_id(origin) not in ids
