"""The ``webhook_deliveries`` table: which event reached which endpoint, so none is posted twice."""

from __future__ import annotations

import uuid

import asyncpg

from services.webhook.delivery import DeliveryStatus, WebhookDelivery


async def already_delivered(pool: asyncpg.Pool, event_id: uuid.UUID, url: str) -> bool:
    """True when this event was delivered to ``url`` before (a redelivered or repeated event)."""
    status = await pool.fetchval(
        "SELECT status FROM webhook_deliveries WHERE event_id = $1 AND url = $2", event_id, url
    )
    return bool(status == DeliveryStatus.DELIVERED)


async def record_delivery(
    pool: asyncpg.Pool, event_id: uuid.UUID, tenant_id: str, url: str, delivery: WebhookDelivery
) -> None:
    """Store how posting an event ended; attempts add up over redeliveries of the event."""
    await pool.execute(
        "INSERT INTO webhook_deliveries"
        " (event_id, tenant_id, url, status, attempts, last_code, last_error)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)"
        " ON CONFLICT (event_id, url) DO UPDATE SET status = EXCLUDED.status,"
        " attempts = webhook_deliveries.attempts + EXCLUDED.attempts,"
        " last_code = EXCLUDED.last_code, last_error = EXCLUDED.last_error, updated_at = now()"
        " WHERE webhook_deliveries.status <> $8",
        event_id,
        uuid.UUID(tenant_id),
        url,
        delivery.status.value,
        delivery.attempts,
        delivery.last_code,
        delivery.last_error,
        DeliveryStatus.DELIVERED.value,
    )
