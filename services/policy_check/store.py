"""The ``suppressions`` table: addresses each tenant must not send to."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from services.policy_check.decide import Suppression, SuppressionReason

SuppressionKey = tuple[str, str]
"""(tenant id, normalised address)."""


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


async def suppressions_for(
    pool: asyncpg.Pool, keys: Sequence[SuppressionKey]
) -> dict[SuppressionKey, Suppression]:
    """The suppressions among ``keys`` (addresses already normalised), in one query."""
    valid = [(tenant, address) for tenant, address in keys if _tenant_key(tenant) is not None]
    if not valid:  # no suppression can be stored for a tenant id that is not a UUID
        return {}
    rows = await pool.fetch(
        "SELECT s.tenant_id, s.address, s.reason FROM suppressions s"
        " JOIN unnest($1::uuid[], $2::text[]) AS q (tenant_id, address)"
        " ON s.tenant_id = q.tenant_id AND s.address = q.address",
        [uuid.UUID(tenant) for tenant, _ in valid],
        [address for _, address in valid],
    )
    found = {}
    for row in rows:
        key = (str(row["tenant_id"]), row["address"])
        found[key] = Suppression(key[0], key[1], _reason(row["reason"]))
    return found


async def add_suppressions(
    pool: asyncpg.Pool, suppressions: Sequence[Suppression]
) -> list[Suppression]:
    """Store ``suppressions`` in one statement; return those that are new or widen an
    unsubscribe to every stream. An existing suppression otherwise stays as it is, so storing
    the same one twice is harmless."""
    wanted: dict[SuppressionKey, Suppression] = {}
    for suppression in suppressions:
        if _tenant_key(suppression.tenant_id) is None:
            continue
        key = (suppression.tenant_id, suppression.address)
        earlier = wanted.get(key)
        if earlier is None or earlier.reason is SuppressionReason.UNSUBSCRIBE:
            wanted[key] = suppression
    if not wanted:
        return []
    rows = await pool.fetch(
        "INSERT INTO suppressions (tenant_id, address, reason)"
        " SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[])"
        " ON CONFLICT (tenant_id, address)"
        " DO UPDATE SET reason = EXCLUDED.reason, created_at = now()"
        " WHERE suppressions.reason = $4 AND EXCLUDED.reason <> $4"
        " RETURNING tenant_id, address, reason",
        [uuid.UUID(s.tenant_id) for s in wanted.values()],
        [s.address for s in wanted.values()],
        [s.reason.value for s in wanted.values()],
        SuppressionReason.UNSUBSCRIBE.value,
    )
    return [Suppression(str(r["tenant_id"]), r["address"], _reason(r["reason"])) for r in rows]
