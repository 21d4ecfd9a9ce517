"""The SQL of the tables ingest owns: ``idempotency_keys``, ``messages``, ``message_events``."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from schemas.events import DeliveryEvent

KEY_LIFETIME = timedelta(hours=24)

Connection = asyncpg.Connection | PoolConnectionProxy
"""A connection of its own or one borrowed from the pool (to share a transaction)."""


@dataclass(frozen=True)
class StoredKey:
    """An idempotency key as stored: the request it guards and the answer it got.

    ``response`` is None while the first request under the key is still being accepted (or
    crashed on the way): a repeat of that request then accepts it again with the same ids.
    """

    request_hash: str
    response: dict[str, Any] | None
    claimed_at: datetime


def _stored_key(row: asyncpg.Record) -> StoredKey:
    return StoredKey(row["request_hash"], row["response"] or None, row["created_at"])


async def claim_key(pool: asyncpg.Pool, tenant_id: str, key: str, request_hash: str) -> StoredKey:
    """Claim ``key`` for a request (a pending claim) unless a live claim exists; return that."""
    args = (uuid.UUID(tenant_id), key)
    row = await pool.fetchrow(
        "INSERT INTO idempotency_keys (tenant_id, key, request_hash, response)"
        " VALUES ($1, $2, $3, '{}')"  # an empty response: still pending
        " ON CONFLICT (tenant_id, key) DO UPDATE"
        " SET request_hash = EXCLUDED.request_hash, response = EXCLUDED.response,"
        " created_at = now()"
        " WHERE idempotency_keys.created_at < now() - $4::interval"
        " RETURNING request_hash, response, created_at",
        *args,
        request_hash,
        KEY_LIFETIME,
    )
    if row is None:  # a live claim exists; a new statement sees it committed
        row = await pool.fetchrow(
            "SELECT request_hash, response, created_at FROM idempotency_keys"
            " WHERE tenant_id = $1 AND key = $2",
            *args,
        )
        assert row is not None, "an idempotency key vanished while claimed"
    return _stored_key(row)


async def save_response(
    pool: asyncpg.Pool, tenant_id: str, key: str, response: dict[str, Any]
) -> None:
    """Keep the answer given under ``key``, to give it again to a repeat of the request."""
    await pool.execute(
        "UPDATE idempotency_keys SET response = $3 WHERE tenant_id = $1 AND key = $2",
        uuid.UUID(tenant_id),
        key,
        response,
    )


async def forget_expired_keys(pool: asyncpg.Pool) -> int:
    """Delete the idempotency keys past their lifetime; return how many."""
    deleted: int = await pool.fetchval(
        "WITH gone AS (DELETE FROM idempotency_keys WHERE created_at < now() - $1::interval"
        " RETURNING 1) SELECT count(*) FROM gone",
        KEY_LIFETIME,
    )
    return deleted


async def insert_event(connection: Connection, event: DeliveryEvent) -> bool:
    """Add an event to its message's timeline; False when it was there already."""
    inserted = await connection.fetchval(
        "INSERT INTO message_events (event_id, message_id, type, occurred_at, event)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (event_id) DO NOTHING RETURNING true",
        uuid.UUID(event.id),
        uuid.UUID(event.subject),
        event.type,
        event.time,
        event.model_dump(mode="json"),
    )
    return bool(inserted)


async def locked_status(connection: Connection, message_id: str) -> str | None:
    """A message's status, its row locked until the transaction ends (None: no row yet)."""
    status: str | None = await connection.fetchval(
        "SELECT status FROM messages WHERE id = $1 FOR UPDATE", uuid.UUID(message_id)
    )
    return status


async def upsert_message(connection: Connection, event: DeliveryEvent, status: str) -> None:
    """Create or update the message row an event describes, in ``status``.

    The first event creates the row; later ones fill what is still unknown and update what
    moves (the route, the template version, the subject once rendered).
    """
    data = event.data
    await connection.execute(
        "INSERT INTO messages (id, tenant_id, trace_id, status, lane, stream, category, sender,"
        " recipient, subject, template, template_version, route, tags, metadata, accepted_at,"
        " updated_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $16)"
        " ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status,"
        " lane = coalesce(messages.lane, EXCLUDED.lane),"
        " stream = coalesce(messages.stream, EXCLUDED.stream),"
        " category = coalesce(messages.category, EXCLUDED.category),"
        " sender = coalesce(messages.sender, EXCLUDED.sender),"
        " recipient = coalesce(messages.recipient, EXCLUDED.recipient),"
        " subject = coalesce(EXCLUDED.subject, messages.subject),"
        " template = coalesce(messages.template, EXCLUDED.template),"
        " template_version = coalesce(EXCLUDED.template_version, messages.template_version),"
        " route = coalesce(EXCLUDED.route, messages.route),"
        " updated_at = greatest(messages.updated_at, EXCLUDED.updated_at)",
        uuid.UUID(data.message_id),
        uuid.UUID(data.tenant_id),
        data.trace_id,
        status,
        data.lane,
        data.stream,
        data.category,
        data.sender,
        data.recipient,
        data.subject,
        data.template,
        data.template_version,
        data.route.model_dump(mode="json") if data.route else None,
        data.tags,
        data.metadata,
        event.time,
    )


async def message(
    pool: asyncpg.Pool, tenant_id: str, message_id: str
) -> tuple[asyncpg.Record, list[DeliveryEvent]] | None:
    """A tenant's message and its events in the order they happened (None: not theirs)."""
    async with pool.acquire() as connection:
        row = await connection.fetchrow(
            "SELECT * FROM messages WHERE id = $1 AND tenant_id = $2",
            uuid.UUID(message_id),
            uuid.UUID(tenant_id),
        )
        if row is None:
            return None
        events = await connection.fetch(
            "SELECT event FROM message_events WHERE message_id = $1"
            " ORDER BY occurred_at, recorded_at",
            uuid.UUID(message_id),
        )
    return row, [DeliveryEvent.model_validate(e["event"]) for e in events]
