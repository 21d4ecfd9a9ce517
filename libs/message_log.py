"""Reading the message log (``messages``, ``message_events``, ``message_raw``).

The gateway answers a tenant's requests with these; ``sendarix message show`` (an operator, any
tenant) uses the same functions, so the log's SQL lives once, here.
"""

from __future__ import annotations

import uuid
import zlib

import asyncpg

from schemas.events import DeliveryEvent

LoggedMessage = tuple[asyncpg.Record, list[DeliveryEvent]]
"""A ``messages`` row and its events in the order they happened."""


async def read_message(
    pool: asyncpg.Pool, message_id: str, tenant_id: str | None = None
) -> LoggedMessage | None:
    """A message and its timeline; with ``tenant_id``, None unless it is that tenant's."""
    key = uuid.UUID(message_id)
    async with pool.acquire() as connection:
        row = await connection.fetchrow(
            "SELECT * FROM messages WHERE id = $1 AND ($2::uuid IS NULL OR tenant_id = $2)",
            key,
            uuid.UUID(tenant_id) if tenant_id is not None else None,
        )
        if row is None:
            return None
        events = await connection.fetch(
            "SELECT event FROM message_events WHERE message_id = $1"
            " ORDER BY occurred_at, recorded_at",
            key,
        )
    return row, [DeliveryEvent.model_validate(e["event"]) for e in events]


async def raw_message(pool: asyncpg.Pool, message_id: str, tenant_id: str) -> bytes | None:
    """The bytes of the tenant's message as last handed to SMTP (None: never sent, or not
    theirs)."""
    content: bytes | None = await pool.fetchval(
        "SELECT content FROM message_raw WHERE message_id = $1 AND tenant_id = $2",
        uuid.UUID(message_id),
        uuid.UUID(tenant_id),
    )
    return zlib.decompress(content) if content is not None else None
