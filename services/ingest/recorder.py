"""The message log: every delivery event recorded once, and the message's status moved by it.

A batch of events is recorded in one transaction of three set-based statements: the events
(duplicates dropped by id), the current status of their messages (rows locked, in id order),
and one upsert of every message the batch moved. Text PostgreSQL cannot store (NUL, lone
surrogates — an event produced by anyone may carry them) is scrubbed before it gets there; a
batch that still fails is split by the runtime until the event at fault is parked alone.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from schemas.events import DeliveryEvent, MessageState
from services.ingest import store
from services.ingest.status import next_status

log = logging.getLogger(__name__)


def recordable(event: DeliveryEvent) -> bool:
    """False for an event whose ids cannot key the log."""
    try:
        uuid.UUID(event.id), uuid.UUID(event.subject), uuid.UUID(event.data.tenant_id)
    except ValueError:
        return False
    return True


def storable(event: DeliveryEvent, raw: bytes) -> tuple[DeliveryEvent, str]:
    """The event and its JSON as PostgreSQL can store them.

    The record's own bytes are stored as they are unless they escape a character (``\\u``):
    our producers never write NUL or surrogates, but a record on a public topic may.
    """
    if b"\\u" not in raw:
        return event, raw.decode()
    clean = _scrubbed(json.loads(raw))
    return DeliveryEvent.model_validate(clean), json.dumps(clean, ensure_ascii=False)


def _scrubbed(value: Any) -> Any:
    """``value`` with NUL dropped and lone surrogates replaced in every string."""
    if isinstance(value, str):
        return value.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, list):
        return [_scrubbed(item) for item in value]
    if isinstance(value, dict):
        return {_scrubbed(key): _scrubbed(item) for key, item in value.items()}
    return value


@dataclass
class MessageMove:
    """What the new events of one message change in its row."""

    fields: dict[str, Any]
    states: list[MessageState]


async def record_all(pool: asyncpg.Pool, batch: Sequence[tuple[DeliveryEvent, bytes]]) -> int:
    """Record a batch of events (each with the JSON it was read as) in one transaction; return
    how many were new."""
    events: list[tuple[DeliveryEvent, str]] = []
    for event, raw in batch:
        if not recordable(event):
            log.error("skipping event %s of %s: its ids are not UUIDs", event.id, event.subject)
            continue
        events.append(storable(event, raw))
    if not events:
        return 0
    async with pool.acquire() as connection, connection.transaction():
        new = await store.insert_events(connection, events)
        moves = _moves([event for event, _ in events if event.id in new])
        current = await store.locked_statuses(connection, sorted(moves))
        rows = [
            store.MessageRow(message_id, move.fields, _fold(current.get(message_id), move.states))
            for message_id, move in moves.items()
            if move.states  # events of types this version does not know only join the timeline
        ]
        await store.upsert_messages(connection, rows)
    return len(new)


def _moves(events: list[DeliveryEvent]) -> dict[str, MessageMove]:
    """The new events grouped by message, in the order they were read."""
    moves: dict[str, MessageMove] = {}
    for event in events:
        move = moves.get(event.subject)
        if move is None:
            move = moves[event.subject] = MessageMove(store.message_fields(event), [])
        else:
            store.merge_fields(move.fields, store.message_fields(event))
        try:
            move.states.append(event.state)
        except ValueError:
            log.warning("recorded event of unknown type %s for %s", event.type, event.subject)
    return moves


def _fold(current: str | None, states: list[MessageState]) -> str:
    """The status after ``states`` happened, in order, to a message in ``current``."""
    status = MessageState(current) if current else None
    for state in states:
        status = next_status(status, state)
    assert status is not None, "folded at least one state"
    return status.value
