"""The webhook queue: what each endpoint is owed, the log of every post, and replays.

The webhook service queues a row per (endpoint, event) — a redelivered Kafka record is not
queued twice — and its dispatcher claims due rows with a lease, posts them and writes their
outcomes, a batch at a time. A delivered row stays ``KEEP_SETTLED`` (as long as the event topic
keeps records), the proof that its event was posted. Replays (the API, the CLI) queue events
again from the message log and the stored notices.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from pydantic import BaseModel

from libs.webhook_endpoints import Endpoint, key_of

KEEP_SETTLED = timedelta(days=7)
"""How long a settled post (and an attempt of the log) is kept."""
MAX_REPLAY = 10_000
"""Events one replay may queue."""
RESPONSE_EXCERPT = 1024


@dataclass(frozen=True)
class QueuedEvent:
    """An event owed to an endpoint."""

    endpoint_id: uuid.UUID
    event_id: uuid.UUID
    tenant_id: uuid.UUID
    event_type: str
    body: bytes
    traceparent: str | None = None


@dataclass(frozen=True)
class Claimed:
    """A due post, leased to the worker that claimed it."""

    event_id: uuid.UUID
    event_type: str
    body: bytes
    traceparent: str | None
    attempts: int
    first_attempt_at: datetime | None


@dataclass(frozen=True)
class Attempted:
    """One post made and where it leaves its queued row."""

    event_id: uuid.UUID
    event_type: str
    attempted_at: datetime
    status: str
    due_at: datetime
    code: int | None
    latency_ms: int
    response: str | None
    error: str | None


class Attempt(BaseModel):
    """One post to an endpoint, as its log shows it."""

    id: int
    attempted_at: datetime
    event_id: str
    event_type: str
    status_code: int | None
    latency_ms: int
    response: str | None
    error: str | None
    message_id: str | None = None
    """The message the event is about (None: a notice about the tenant)."""
    next_attempt_at: datetime | None = None
    """When the event is posted again, while it is still owed (None: settled)."""


class ReplayRefused(ValueError):
    """A replay that would queue more than ``MAX_REPLAY`` events."""


async def enqueue(pool: asyncpg.Pool, events: Sequence[QueuedEvent]) -> set[uuid.UUID]:
    """Queue ``events`` (one statement; those queued before are left as they are); the
    endpoints that got new rows."""
    if not events:
        return set()
    rows = await pool.fetch(
        "INSERT INTO webhook_queue (endpoint_id, event_id, tenant_id, event_type, body,"
        " traceparent) SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[],"
        " $5::bytea[], $6::text[]) ON CONFLICT (endpoint_id, event_id) DO NOTHING"
        " RETURNING endpoint_id",
        *_columns(events),
    )
    return {row["endpoint_id"] for row in rows}


def _columns(events: Sequence[QueuedEvent]) -> list[list[Any]]:
    return [
        [e.endpoint_id for e in events],
        [e.event_id for e in events],
        [e.tenant_id for e in events],
        [e.event_type for e in events],
        [e.body for e in events],
        [e.traceparent for e in events],
    ]


async def due_endpoints(pool: asyncpg.Pool) -> dict[uuid.UUID, int]:
    """Endpoints with posts due and not leased, and how many each."""
    rows = await pool.fetch(
        "SELECT endpoint_id, count(*) AS due FROM webhook_queue WHERE status = 'pending'"
        " AND due_at <= now() AND (locked_until IS NULL OR locked_until < now())"
        " GROUP BY endpoint_id"
    )
    return {row["endpoint_id"]: row["due"] for row in rows}


async def claim(
    pool: asyncpg.Pool, endpoint_id: uuid.UUID, limit: int, lease: timedelta
) -> list[Claimed]:
    """Lease up to ``limit`` due posts of an endpoint, oldest due first; rows another worker
    holds are skipped, and come back when their lease ends."""
    rows = await pool.fetch(
        "UPDATE webhook_queue q SET locked_until = now() + $3::interval FROM ("
        " SELECT event_id FROM webhook_queue WHERE endpoint_id = $1 AND status = 'pending'"
        " AND due_at <= now() AND (locked_until IS NULL OR locked_until < now())"
        " ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED) due"
        " WHERE q.endpoint_id = $1 AND q.event_id = due.event_id"
        " RETURNING q.event_id, q.event_type, q.body, q.traceparent, q.attempts,"
        " q.first_attempt_at",
        endpoint_id,
        limit,
        lease,
    )
    return [Claimed(**dict(row)) for row in rows]


async def record(
    pool: asyncpg.Pool, endpoint_id: uuid.UUID, attempts: Sequence[Attempted]
) -> tuple[int, datetime | None]:
    """Write what a batch of posts to one endpoint did (its rows, its log, its health) in one
    transaction; the endpoint's failures in a row since its last success, and since when."""
    delivered = any(a.status == "delivered" for a in attempts)
    column = {name: [getattr(a, name) for a in attempts] for name in Attempted.__annotations__}
    async with pool.acquire() as connection, connection.transaction():
        # The endpoint's row first, as deleting the endpoint locks it before its queue rows: the
        # other order deadlocks with a delete.
        health = await connection.fetchrow(
            "UPDATE webhook_endpoints SET"
            " failures = CASE WHEN $2 THEN 0 ELSE failures + $3 END,"
            " failing_since = CASE WHEN $2 THEN NULL ELSE coalesce(failing_since, $4) END"
            " WHERE id = $1 RETURNING failures, failing_since",
            endpoint_id,
            delivered,
            len(attempts),
            min(a.attempted_at for a in attempts),
        )
        await connection.execute(
            "UPDATE webhook_queue q SET status = a.status, attempts = q.attempts + 1,"
            " first_attempt_at = coalesce(q.first_attempt_at, a.attempted_at),"
            " due_at = a.due_at, locked_until = NULL, last_code = a.code, last_error = a.error,"
            " settled_at = CASE WHEN a.status = 'pending' THEN NULL ELSE a.attempted_at END"
            " FROM unnest($2::uuid[], $3::text[], $4::timestamptz[], $5::timestamptz[],"
            " $6::int[], $7::text[]) AS a (event_id, status, attempted_at, due_at, code, error)"
            " WHERE q.endpoint_id = $1 AND q.event_id = a.event_id",
            endpoint_id,
            *(column[n] for n in ("event_id", "status", "attempted_at", "due_at", "code", "error")),
        )
        await connection.execute(
            "INSERT INTO webhook_attempts (endpoint_id, event_id, event_type, attempted_at,"
            " status_code, latency_ms, response, error) SELECT $1, * FROM unnest($2::uuid[],"
            " $3::text[], $4::timestamptz[], $5::int[], $6::int[], $7::text[], $8::text[])",
            endpoint_id,
            *(column[n] for n in ("event_id", "event_type", "attempted_at", "code")),
            *(column[n] for n in ("latency_ms", "response", "error")),
        )
    return (health["failures"], health["failing_since"]) if health else (0, None)


async def release(
    pool: asyncpg.Pool, endpoint_id: uuid.UUID, event_ids: Sequence[uuid.UUID]
) -> None:
    """Hand back leased posts unposted (their endpoint was disabled or removed meanwhile)."""
    await pool.execute(
        "UPDATE webhook_queue SET locked_until = NULL WHERE endpoint_id = $1"
        " AND event_id = ANY($2::uuid[])",
        endpoint_id,
        list(event_ids),
    )


async def forget_settled(pool: asyncpg.Pool) -> None:
    """Delete settled posts and logged attempts older than ``KEEP_SETTLED``."""
    await pool.execute(
        "DELETE FROM webhook_queue WHERE status <> 'pending' AND settled_at < now() - $1::interval",
        KEEP_SETTLED,
    )
    await pool.execute(
        "DELETE FROM webhook_attempts WHERE attempted_at < now() - $1::interval", KEEP_SETTLED
    )


async def list_attempts(
    pool: asyncpg.Pool, tenant_id: str, endpoint_id: str, before: int | None, limit: int
) -> list[Attempt] | None:
    """Up to ``limit`` posts to the tenant's endpoint, newest first, older than the attempt
    ``before`` (a page's cursor), each with its event's message and next post (what a support
    person asks first); None when the tenant has no such endpoint."""
    tenant, key = key_of(tenant_id), key_of(endpoint_id)
    if tenant is None or key is None:
        return None
    async with pool.acquire() as connection:
        if not await connection.fetchval(
            "SELECT 1 FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2", tenant, key
        ):
            return None
        rows = await connection.fetch(
            "SELECT a.id, a.attempted_at, a.event_id::text, a.event_type, a.status_code,"
            " a.latency_ms, a.response, a.error, e.message_id::text,"
            " CASE WHEN q.status = 'pending' THEN q.due_at END AS next_attempt_at"
            " FROM webhook_attempts a"
            " LEFT JOIN message_events e ON e.event_id = a.event_id"
            " LEFT JOIN webhook_queue q"
            " ON q.endpoint_id = a.endpoint_id AND q.event_id = a.event_id"
            " WHERE a.endpoint_id = $1 AND ($2::bigint IS NULL OR a.id < $2)"
            " ORDER BY a.id DESC LIMIT $3",
            key,
            before,
            limit,
        )
    return [Attempt.model_validate(dict(row)) for row in rows]


async def store_notices(
    pool: asyncpg.Pool, notices: Sequence[tuple[str, str, str, datetime, bytes]]
) -> None:
    """Keep notices (id, tenant, type, time, JSON) for replays; one seen before is kept once."""
    if not notices:
        return
    await pool.execute(
        "INSERT INTO tenant_notices (id, tenant_id, type, occurred_at, notice)"
        " SELECT n.id, n.tenant_id, n.type, n.occurred_at, convert_from(n.notice, 'UTF8')::jsonb"
        " FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[], $5::bytea[])"
        " AS n (id, tenant_id, type, occurred_at, notice)"
        " WHERE EXISTS (SELECT 1 FROM tenants t WHERE t.id = n.tenant_id)"
        " ON CONFLICT (id) DO NOTHING",
        *([uuid.UUID(str(n[i])) if i < 2 else n[i] for n in notices] for i in range(5)),
    )


LATE_EVENTS_WITHIN = timedelta(days=30)
"""How long after its acceptance an event of a message is found by a replay of a time range
(complaints and asynchronous bounces come back days later, rarely weeks)."""


async def replay(
    pool: asyncpg.Pool,
    endpoint: Endpoint,
    event_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> int:
    """Queue again for ``endpoint`` the tenant's events (message events and notices) with id
    ``event_id``, or of ``since``..``until``, that its filters take; how many. An event posted
    before is posted again. ``ReplayRefused`` beyond ``MAX_REPLAY`` events."""
    tenant = uuid.UUID(endpoint.tenant_id)
    key = key_of(event_id) if event_id is not None else None
    if event_id is not None and key is None:
        return 0
    bounds: list[object]
    if key is not None:
        events_where, notices_where, bounds = "e.event_id = $2", "n.id = $2", [key]
    else:
        # The tenant's messages accepted in the range (or up to LATE_EVENTS_WITHIN before it, for
        # a complaint that came back late) lead to their events by the indexes both tables have.
        events_where = (
            "m.accepted_at >= $2::timestamptz - $4::interval AND m.accepted_at < $3"
            " AND e.occurred_at >= $2 AND e.occurred_at < $3"
        )
        notices_where = "n.occurred_at >= $2 AND n.occurred_at < $3"
        bounds = [since, until, LATE_EVENTS_WITHIN]
    rows = await pool.fetch(
        "SELECT e.event_id AS id, e.type, e.event::text AS body,"
        " e.event->'data'->>'stream' AS stream"
        " FROM message_events e JOIN messages m ON m.id = e.message_id WHERE m.tenant_id = $1"
        f" AND {events_where}"
        " UNION ALL SELECT n.id, n.type, n.notice::text, NULL FROM tenant_notices n"
        f" WHERE n.tenant_id = $1 AND {notices_where} LIMIT {MAX_REPLAY + 1}",
        tenant,
        *bounds,
    )
    if len(rows) > MAX_REPLAY:
        raise ReplayRefused(f"more than {MAX_REPLAY} events in that range: replay a shorter one")
    wanted = [row for row in rows if endpoint.wants(row["type"], row["stream"])]
    if not wanted:
        return 0
    events = [
        QueuedEvent(uuid.UUID(endpoint.id), row["id"], tenant, row["type"], row["body"].encode())
        for row in wanted
    ]
    await pool.execute(
        "INSERT INTO webhook_queue (endpoint_id, event_id, tenant_id, event_type, body,"
        " traceparent) SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[],"
        " $5::bytea[], $6::text[]) ON CONFLICT (endpoint_id, event_id) DO UPDATE SET"
        " status = 'pending', attempts = 0, first_attempt_at = NULL, due_at = now(),"
        " settled_at = NULL",
        *_columns(events),
    )
    return len(events)
