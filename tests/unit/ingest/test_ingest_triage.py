"""The triage's peek at a raw send request: a scheduling hint, never a decision."""

from __future__ import annotations

import json

import pytest

from schemas.common import Lane
from services.ingest.ids import RecordOrigin
from services.ingest.triage import peek_lane


@pytest.mark.parametrize(
    ("fields", "lane"),
    [
        ({"category": "otp"}, Lane.CRITICAL),
        ({"category": "billing"}, Lane.HIGH),
        ({"category": "notification"}, Lane.NORMAL),
        ({}, Lane.NORMAL),
        ({"category": "notification", "priority": "bulk"}, Lane.BULK),
        ({"stream": "broadcast", "priority": "critical"}, Lane.BULK),
        ({"category": "notification", "priority": "critical"}, Lane.HIGH),
        ({"stream": "nonsense"}, Lane.NORMAL),
    ],
)
def test_the_lane_is_peeked_from_the_bytes(fields: dict[str, str], lane: Lane) -> None:
    body = {"tenant_id": "t", "from": "a@b.test", "to": "c@d.test", **fields}
    assert peek_lane(json.dumps(body).encode()) is lane


@pytest.mark.parametrize("value", [b"", b"\xff\xfe", b"[" * 100_000, b'{"category": 5}'])
def test_garbage_goes_to_the_normal_lane(value: bytes) -> None:
    assert peek_lane(value) is Lane.NORMAL


def test_an_origin_reads_back_what_it_wrote() -> None:
    origin = RecordOrigin("p.sendarix.send.requests", 3, 1234)
    assert RecordOrigin.parse(str(origin)) == origin
    assert RecordOrigin.parse("no/origin") is None
