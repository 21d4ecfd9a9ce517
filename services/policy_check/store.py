"""The ``suppressions`` table: addresses each tenant must not send to."""

from __future__ import annotations

import uuid

import asyncpg

from services.policy_check.decide import Suppression, SuppressionReason


def _tenant_key(tenant_id: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(tenant_id)
    except ValueError:
        return None


def _reason(stored: str) -> SuppressionReason:
    """A stored reason; one this code does not know (written by hand) blocks like ``manual``."""
    try:
        return SuppressionReason(stored)
    except ValueError:
        return SuppressionReason.MANUAL


async def suppression_for(pool: asyncpg.Pool, tenant_id: str, address: str) -> Suppression | None:
    """The tenant's suppression of ``address`` (already normalised), if any."""
    tenant = _tenant_key(tenant_id)
    if tenant is None:  # no suppression can be stored for an id that is not a UUID
        return None
    reason = await pool.fetchval(
        "SELECT reason FROM suppressions WHERE tenant_id = $1 AND address = $2", tenant, address
    )
    return Suppression(tenant_id, address, _reason(reason)) if reason is not None else None


async def add_suppression(pool: asyncpg.Pool, suppression: Suppression) -> bool:
    """Store ``suppression``; True when it is new or widens an unsubscribe to every stream.

    An existing suppression otherwise stays as it is, so storing the same one twice is harmless.
    """
    tenant = _tenant_key(suppression.tenant_id)
    if tenant is None:
        return False
    status = await pool.execute(
        "INSERT INTO suppressions (tenant_id, address, reason) VALUES ($1, $2, $3)"
        " ON CONFLICT (tenant_id, address)"
        " DO UPDATE SET reason = EXCLUDED.reason, created_at = now()"
        " WHERE suppressions.reason = $4 AND EXCLUDED.reason <> $4",
        tenant,
        suppression.address,
        suppression.reason.value,
        SuppressionReason.UNSUBSCRIBE.value,
    )
    return status.endswith(" 1")
