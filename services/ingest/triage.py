"""Triage of ``sendarix.send.requests``: each record goes to the intake of its lane, unread.

The topic is one queue for every lane, so an OTP produced behind ten thousand bulk requests
would wait for all of them to be validated and accepted. The triage only peeks at the fields
that decide the lane (``category``, ``stream``, ``priority``) and forwards the record's bytes,
as they are, to ``sendarix.intake.<lane>`` — an order of magnitude cheaper than accepting it —
so the backlog in front of an OTP drains at the triage's pace, and the intake of the critical
lane takes it next. The peek is only a scheduling hint: the lane a message travels in is decided
when it is accepted, from the parsed request and the tenant's limits.
"""

from __future__ import annotations

import re
from typing import Any

from libs.batch import URGENT_LANES, Consumed, Outbox
from libs.topics import intake_topic
from schemas.common import Lane, Stream, lane_for
from services.ingest.ids import RecordOrigin

ORIGIN_HEADER = "sendarix-origin"
"""Where a triaged record was produced (``topic/partition/offset``): its message ids and its
dead letter refer to that place, not to the intake topic."""

_FIELD = re.compile(rb'"(category|stream|priority)"\s*:\s*"([a-z0-9_]{1,64})"')
PEEK_BYTES = 64 * 1024
"""Only the start of a record is looked at; a hint hidden further away costs nothing but order."""


def peek_lane(value: bytes) -> Lane:
    """The lane a send request most probably gets, from its raw bytes (normal when unsure)."""
    found = {name.decode(): word.decode() for name, word in _FIELD.findall(value[:PEEK_BYTES])}
    try:
        stream = Stream(found.get("stream", Stream.TRANSACTIONAL.value))
        priority = Lane(found["priority"]) if "priority" in found else None
    except ValueError:
        return Lane.NORMAL
    return lane_for(found.get("category"), stream, priority)


def triage(prefix: str, batch: list[Consumed[bytes]]) -> Outbox:
    """Forward every record of the batch to the intake of its lane, with its origin."""
    outbox = Outbox(prefix)
    for item in batch:
        raw = item.raw
        origin = RecordOrigin(raw.topic, raw.partition, raw.offset)
        headers = [
            *((name, value) for name, value in raw.headers if name != ORIGIN_HEADER),
            (ORIGIN_HEADER, str(origin).encode()),
        ]
        lane = peek_lane(item.value)
        topic = intake_topic(lane, prefix)
        outbox.add(None, topic, item.value, raw.key, headers, urgent=lane in URGENT_LANES)
    return outbox


def origin_of(item: Consumed[Any]) -> RecordOrigin:
    """Where the application produced a record the intake reads."""
    for name, value in item.raw.headers:
        if name == ORIGIN_HEADER:
            origin = RecordOrigin.parse(value.decode(errors="replace"))
            if origin is not None:
                return origin
    return RecordOrigin(item.raw.topic, item.raw.partition, item.raw.offset)
