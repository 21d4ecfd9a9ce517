"""The ``webhook_deliveries`` table: which event reached which endpoint, so none is posted twice."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from services.webhook.delivery import DeliveryStatus, WebhookDelivery


@dataclass(frozen=True)
class DeliveryRow:
    """How posting one event to one endpoint ended."""

    event_id: uuid.UUID
    tenant_id: str
    url: str
    delivery: WebhookDelivery


async def delivered_already(
    pool: asyncpg.Pool, pairs: Sequence[tuple[uuid.UUID, str]]
) -> set[tuple[uuid.UUID, str]]:
    """Those of (event, endpoint) ``pairs`` delivered before (redelivered or repeated events)."""
    if not pairs:
        return set()
    rows = await pool.fetch(
        "SELECT d.event_id, d.url FROM webhook_deliveries d"
        " JOIN unnest($1::uuid[], $2::text[]) AS p (event_id, url)"
        " ON d.event_id = p.event_id AND d.url = p.url WHERE d.status = $3",
        [event_id for event_id, _ in pairs],
        [url for _, url in pairs],
        DeliveryStatus.DELIVERED.value,
    )
    return {(row["event_id"], row["url"]) for row in rows}


async def record_deliveries(pool: asyncpg.Pool, rows: Sequence[DeliveryRow]) -> None:
    """Store how posting each event ended (one statement); attempts add up over redeliveries
    of an event, and a delivered one stays delivered."""
    if not rows:
        return
    await pool.execute(
        "INSERT INTO webhook_deliveries"
        " (event_id, tenant_id, url, status, attempts, last_code, last_error)"
        " SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::int[],"
        " $6::int[], $7::text[])"
        " ON CONFLICT (event_id, url) DO UPDATE SET status = EXCLUDED.status,"
        " attempts = webhook_deliveries.attempts + EXCLUDED.attempts,"
        " last_code = EXCLUDED.last_code, last_error = EXCLUDED.last_error, updated_at = now()"
        " WHERE webhook_deliveries.status <> $8",
        [row.event_id for row in rows],
        [uuid.UUID(row.tenant_id) for row in rows],
        [row.url for row in rows],
        [row.delivery.status.value for row in rows],
        [row.delivery.attempts for row in rows],
        [row.delivery.last_code for row in rows],
        [row.delivery.last_error for row in rows],
        DeliveryStatus.DELIVERED.value,
    )
