"""Reading the message log (``messages``, ``message_events``, ``message_raw``).

The gateway answers a tenant's requests with these; ``sendarix message show`` (an operator, any
tenant) uses the same functions, so the log's SQL lives once, here.
"""

from __future__ import annotations

import logging
import uuid
import zlib
from enum import StrEnum
from typing import Any

import asyncpg
from prometheus_client import Counter

from libs.message_tokens import MessageToken, Purpose
from schemas.events import DeliveryEvent, EventData

log = logging.getLogger(__name__)

UNVERIFIED_TOKENS = Counter(
    "sendarix_unverified_tokens",
    "Return paths and unsubscribe links presented that Sendarix did not sign for the message"
    " they name (forged, or foreign), or that name no logged message; they change nothing.",
    ["purpose", "reason"],
)

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


async def raw_message(
    pool: asyncpg.Pool, message_id: str, tenant_id: str | None = None
) -> bytes | None:
    """The bytes of the message as last handed to SMTP (None: never sent); with ``tenant_id``,
    None unless it is that tenant's."""
    content: bytes | None = await pool.fetchval(
        "SELECT content FROM message_raw WHERE message_id = $1"
        " AND ($2::uuid IS NULL OR tenant_id = $2)",
        uuid.UUID(message_id),
        uuid.UUID(tenant_id) if tenant_id is not None else None,
    )
    return zlib.decompress(content) if content is not None else None


class Unverified(StrEnum):
    """Why a token names no message: none is logged under its id, or its MAC is not the one."""

    NOT_LOGGED = "not_logged"
    """No message has its id in the log: not yet (the recorder writes the log from events, a
    fraction of a second behind), no longer (past retention), or never (a made-up id)."""
    FORGED = "forged"
    """The message is logged, but the token was not made for it: forged, or made for another
    purpose, tenant or stream."""


async def message_of_token(
    pool: asyncpg.Pool, key: bytes, token: MessageToken, purpose: Purpose
) -> asyncpg.Record | Unverified:
    """The logged message a signed token names, when the token is genuine: made for this purpose
    and the message's tenant (and, for an unsubscribe link, the message's stream).

    Anything else is logged, counted and answered with why: a token is the only proof its bearer
    speaks of a message Sendarix sent.
    """
    row: asyncpg.Record | None = await pool.fetchrow(
        "SELECT * FROM messages WHERE id = $1", uuid.UUID(token.message_id)
    )
    if row is None:
        why = Unverified.NOT_LOGGED
    else:
        extra = (row["stream"] or "",) if purpose is Purpose.UNSUBSCRIBE else ()
        if token.verified(key, purpose, str(row["tenant_id"]), *extra):
            return row
        why = Unverified.FORGED
    UNVERIFIED_TOKENS.labels(purpose.value, why.value).inc()
    log.warning("a %s token of message %s: %s", purpose.value, token.message_id, why.value)
    return why


def logged_event_data(row: asyncpg.Record, service: str, **details: Any) -> EventData:
    """The event data of a message as its log row describes it (for events reported after its
    journey through the pipeline: cancelled, bounced later, complained, unsubscribed)."""
    return EventData(
        message_id=str(row["id"]),
        tenant_id=str(row["tenant_id"]),
        recipient=row["recipient"],
        sender=row["sender"],
        stream=row["stream"],
        lane=row["lane"],
        category=row["category"],
        tags=list(row["tags"]),
        metadata=row["metadata"],
        template=row["template"],
        trace_id=row["trace_id"],
        service=service,
        key_id=str(row["key_id"]) if row["key_id"] is not None else None,
        **details,
    )
