"""The message log: every delivery event recorded once, and the message's status moved by it."""

from __future__ import annotations

import logging
import uuid

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


async def record(pool: asyncpg.Pool, event: DeliveryEvent) -> bool:
    """Record ``event`` unless it was already; return whether it was new.

    An event of a type this version does not know joins the timeline without moving the status;
    one whose ids are not UUIDs is skipped (logged), as retrying it could never succeed.
    """
    async with pool.acquire() as connection, connection.transaction():
        return await _record_on(connection, event)


async def record_all(pool: asyncpg.Pool, events: list[DeliveryEvent]) -> int:
    """Record a batch of events in one transaction; return how many were new."""
    async with pool.acquire() as connection, connection.transaction():
        return sum([await _record_on(connection, event) for event in events])


async def _record_on(connection: store.Connection, event: DeliveryEvent) -> bool:
    if not recordable(event):
        log.error("skipping event %s of message %s: its ids are not UUIDs", event.id, event.subject)
        return False
    if not await store.insert_event(connection, event):
        return False
    try:
        incoming = event.state
    except ValueError:
        log.warning("recorded event of unknown type %s for %s", event.type, event.subject)
        return True
    current = await store.locked_status(connection, event.subject)
    status = next_status(MessageState(current) if current else None, incoming)
    await store.upsert_message(connection, event, status.value)
    return True
