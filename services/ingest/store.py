"""The SQL of the tables ingest owns: ``idempotency_keys``, ``messages``, ``message_events``."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from libs.database import Connection
from schemas.events import DeliveryEvent

KEY_LIFETIME = timedelta(hours=24)

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


async def insert_events(
    connection: Connection, events: Sequence[tuple[DeliveryEvent, str]]
) -> set[str]:
    """Add events (each with its JSON) to their messages' timelines; the ids of the new ones."""
    rows = await connection.fetch(
        "INSERT INTO message_events (event_id, message_id, type, occurred_at, event)"
        " SELECT e.event_id, e.message_id, e.type, e.occurred_at, e.event::jsonb"
        " FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[], $5::text[])"
        " AS e (event_id, message_id, type, occurred_at, event)"
        " ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
        [uuid.UUID(event.id) for event, _ in events],
        [uuid.UUID(event.subject) for event, _ in events],
        [event.type for event, _ in events],
        [event.time for event, _ in events],
        [text for _, text in events],
    )
    return {str(row["event_id"]) for row in rows}


async def locked_statuses(connection: Connection, message_ids: Sequence[str]) -> dict[str, str]:
    """The status of each message that has a row, the rows locked until the transaction ends
    (in id order, so two writers never wait on each other in a circle)."""
    rows = await connection.fetch(
        "SELECT id, status FROM messages WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE",
        [uuid.UUID(message_id) for message_id in message_ids],
    )
    return {str(row["id"]): row["status"] for row in rows}


FIRST_WINS = ("lane", "stream", "category", "sender", "recipient", "template", "key_id")
"""Columns the first event that knows them fills; later events never change them."""
LATEST_WINS = ("subject", "template_version", "layout_version", "locale", "route")
"""Columns that follow the message (rendered subject, what it was rendered from, route taken)."""


def message_fields(event: DeliveryEvent) -> dict[str, Any]:
    """The columns of the message row one event describes."""
    data = event.data
    return {
        "tenant_id": uuid.UUID(data.tenant_id),
        "trace_id": data.trace_id,
        "lane": data.lane,
        "stream": data.stream,
        "category": data.category,
        "sender": data.sender,
        "recipient": data.recipient,
        "subject": data.subject,
        "template": data.template,
        "template_version": data.template_version,
        "layout_version": data.layout_version,
        "locale": data.locale,
        "route": data.route.model_dump_json() if data.route else None,
        "tags": json.dumps(data.tags, ensure_ascii=False),
        "metadata": json.dumps(data.metadata, ensure_ascii=False),
        "key_id": uuid.UUID(data.key_id) if data.key_id else None,
        "time": event.time,
    }


def merge_fields(fields: dict[str, Any], later: dict[str, Any]) -> None:
    """Fold the columns a later event of the same message describes into ``fields``."""
    for name in FIRST_WINS:
        if fields[name] is None:
            fields[name] = later[name]
    for name in LATEST_WINS:
        if later[name] is not None:
            fields[name] = later[name]
    fields["updated_at"] = max(fields.get("updated_at", fields["time"]), later["time"])


@dataclass(frozen=True)
class MessageRow:
    """A message row as a batch of events leaves it."""

    message_id: str
    fields: dict[str, Any]
    status: str


async def upsert_messages(connection: Connection, rows: Sequence[MessageRow]) -> None:
    """Create or update the rows of the messages a batch moved, in one statement.

    The first event of a message creates its row; later ones fill what is still unknown and
    update what moves (the route, the template version, the subject once rendered).
    """
    if not rows:
        return
    columns: dict[str, list[Any]] = {name: [] for name in MESSAGE_COLUMNS}
    for row in rows:
        values = {
            **row.fields,
            "id": uuid.UUID(row.message_id),
            "status": row.status,
            "accepted_at": row.fields["time"],
            "updated_at": row.fields.get("updated_at", row.fields["time"]),
        }
        for name in MESSAGE_COLUMNS:
            columns[name].append(values[name])
    await connection.execute(
        "INSERT INTO messages (id, tenant_id, trace_id, status, lane, stream, category, sender,"
        " recipient, subject, template, template_version, layout_version, locale, route, tags,"
        " metadata, accepted_at, updated_at, key_id)"
        " SELECT m.id, m.tenant_id, m.trace_id, m.status, m.lane, m.stream, m.category,"
        " m.sender, m.recipient, m.subject, m.template, m.template_version, m.layout_version,"
        " m.locale, m.route::jsonb, ARRAY(SELECT jsonb_array_elements_text(m.tags::jsonb)),"
        " m.metadata::jsonb, m.accepted_at, m.updated_at, m.key_id"
        " FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[],"
        " $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::int[], $13::int[],"
        " $14::text[], $15::text[], $16::text[], $17::text[], $18::timestamptz[],"
        " $19::timestamptz[], $20::uuid[])"
        " AS m (id, tenant_id, trace_id, status, lane, stream, category, sender, recipient,"
        " subject, template, template_version, layout_version, locale, route, tags, metadata,"
        " accepted_at, updated_at, key_id)"
        " ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status,"
        " lane = coalesce(messages.lane, EXCLUDED.lane),"
        " stream = coalesce(messages.stream, EXCLUDED.stream),"
        " category = coalesce(messages.category, EXCLUDED.category),"
        " sender = coalesce(messages.sender, EXCLUDED.sender),"
        " recipient = coalesce(messages.recipient, EXCLUDED.recipient),"
        " subject = coalesce(EXCLUDED.subject, messages.subject),"
        " template = coalesce(messages.template, EXCLUDED.template),"
        " key_id = coalesce(messages.key_id, EXCLUDED.key_id),"
        " template_version = coalesce(EXCLUDED.template_version, messages.template_version),"
        " layout_version = coalesce(EXCLUDED.layout_version, messages.layout_version),"
        " locale = coalesce(EXCLUDED.locale, messages.locale),"
        " route = coalesce(EXCLUDED.route, messages.route),"
        " updated_at = greatest(messages.updated_at, EXCLUDED.updated_at)",
        *(columns[name] for name in MESSAGE_COLUMNS),
    )


MESSAGE_COLUMNS = (
    "id",
    "tenant_id",
    "trace_id",
    "status",
    "lane",
    "stream",
    "category",
    "sender",
    "recipient",
    "subject",
    "template",
    "template_version",
    "layout_version",
    "locale",
    "route",
    "tags",
    "metadata",
    "accepted_at",
    "updated_at",
    "key_id",
)


RETENTION_BATCH = 1000
"""Messages deleted per statement by the retention job: short transactions, small locks."""


async def forget_old_messages(pool: asyncpg.Pool, limit: int = RETENTION_BATCH) -> int:
    """Delete up to ``limit`` messages older than their tenant's ``retention_days``, with their
    events and sent bytes, in one statement; return how many (fewer than ``limit``: done)."""
    deleted: int = await pool.fetchval(
        "WITH doomed AS (SELECT m.id FROM tenants t CROSS JOIN LATERAL"
        " (SELECT id FROM messages WHERE tenant_id = t.id"
        " AND accepted_at < now() - make_interval(days => t.retention_days) LIMIT $1) m"
        " LIMIT $1),"
        " events AS (DELETE FROM message_events e USING doomed WHERE e.message_id = doomed.id),"
        " raw AS (DELETE FROM message_raw r USING doomed WHERE r.message_id = doomed.id),"
        " gone AS (DELETE FROM messages m USING doomed WHERE m.id = doomed.id RETURNING 1)"
        " SELECT count(*) FROM gone",
        limit,
    )
    return deleted
