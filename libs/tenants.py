"""Tenants, their API keys and webhook endpoints: read by ingest and webhook, written by the CLI."""

from __future__ import annotations

import base64
import hashlib
import secrets
import uuid
from dataclasses import dataclass

import asyncpg

from libs.cache import TtlCache
from schemas.common import DEFAULT_PRIORITY_CEILING, Lane

API_KEY_PREFIX = "sx_"
WEBHOOK_SECRET_PREFIX = "whsec_"


@dataclass(frozen=True)
class Tenant:
    """A customer of the platform and the sending domains it has proven it owns."""

    id: str
    name: str
    domains: tuple[str, ...]
    webhook_url: str | None = None
    webhook_secret: str | None = None
    priority_ceiling: Lane = DEFAULT_PRIORITY_CEILING
    """The most urgent lane the tenant may ask for with ``priority`` (never ``critical``)."""
    critical_per_second: float = 20.0
    critical_burst: int = 40
    """How many messages per second (and at once) of the tenant's security mail go in the
    critical lane; beyond that they go in ``high``, so no tenant's flood delays another's OTPs."""


def hash_api_key(api_key: str) -> bytes:
    """The stored form of an API key."""
    return hashlib.sha256(api_key.encode()).digest()


def new_api_key() -> str:
    """A fresh random API key."""
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def new_webhook_secret() -> str:
    """A Standard Webhooks signing secret: ``whsec_`` and 32 random bytes in base64."""
    return WEBHOOK_SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _tenant(row: asyncpg.Record) -> Tenant:
    return Tenant(
        id=str(row["id"]),
        name=row["name"],
        domains=tuple(row["domains"]),
        webhook_url=row["webhook_url"],
        webhook_secret=row["webhook_secret"],
        priority_ceiling=Lane(row["priority_ceiling"]),
        critical_per_second=row["critical_per_second"],
        critical_burst=row["critical_burst"],
    )


async def create_tenant(
    pool: asyncpg.Pool,
    name: str,
    domains: list[str],
    webhook_url: str | None = None,
    api_key: str | None = None,
) -> tuple[Tenant, str]:
    """Create a tenant with one API key; return it and the key (shown once, stored hashed)."""
    tenant_id = str(uuid.uuid4())
    key = api_key or new_api_key()
    secret = new_webhook_secret() if webhook_url else None
    normalised = sorted({d.strip().lower() for d in domains if d.strip()})
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute(
            "INSERT INTO tenants (id, name, domains, webhook_url, webhook_secret)"
            " VALUES ($1, $2, $3, $4, $5)",
            uuid.UUID(tenant_id),
            name,
            normalised,
            webhook_url,
            secret,
        )
        await connection.execute(
            "INSERT INTO api_keys (key_hash, prefix, tenant_id) VALUES ($1, $2, $3)",
            hash_api_key(key),
            key[:8],
            uuid.UUID(tenant_id),
        )
    return Tenant(tenant_id, name, tuple(normalised), webhook_url, secret), key


async def set_webhook(pool: asyncpg.Pool, tenant_id: str, url: str | None) -> Tenant | None:
    """Point a tenant's webhook at ``url`` (None removes it), keeping or minting its secret."""
    row = await pool.fetchrow(
        "UPDATE tenants SET webhook_url = $2,"
        " webhook_secret = CASE WHEN $2::text IS NULL THEN NULL"
        " ELSE coalesce(webhook_secret, $3) END"
        " WHERE id = $1 RETURNING *",
        uuid.UUID(tenant_id),
        url,
        new_webhook_secret(),
    )
    return _tenant(row) if row else None


async def set_limits(
    pool: asyncpg.Pool,
    tenant_id: str,
    priority_ceiling: Lane | None = None,
    critical_per_second: float | None = None,
    critical_burst: int | None = None,
) -> Tenant | None:
    """Change how far a tenant may raise priority and its critical-lane rate (None: keep)."""
    if priority_ceiling is Lane.CRITICAL:
        raise ValueError("no tenant may ask for the critical lane: only security mail earns it")
    row = await pool.fetchrow(
        "UPDATE tenants SET priority_ceiling = coalesce($2, priority_ceiling),"
        " critical_per_second = coalesce($3, critical_per_second),"
        " critical_burst = coalesce($4, critical_burst) WHERE id = $1 RETURNING *",
        uuid.UUID(tenant_id),
        priority_ceiling.value if priority_ceiling else None,
        critical_per_second,
        critical_burst,
    )
    return _tenant(row) if row else None


async def set_retention(pool: asyncpg.Pool, tenant_id: str, days: int) -> int | None:
    """Keep a tenant's messages (events, sent bytes) ``days`` days in the log, after which
    ingest's retention job deletes them; None when there is no such tenant."""
    kept: int | None = await pool.fetchval(
        "UPDATE tenants SET retention_days = $2 WHERE id = $1 RETURNING retention_days",
        uuid.UUID(tenant_id),
        days,
    )
    return kept


async def tenant_by_api_key(pool: asyncpg.Pool, api_key: str) -> Tenant | None:
    """The tenant an unrevoked API key belongs to."""
    row = await pool.fetchrow(
        "SELECT t.* FROM api_keys k JOIN tenants t ON t.id = k.tenant_id"
        " WHERE k.key_hash = $1 AND k.revoked_at IS NULL",
        hash_api_key(api_key),
    )
    return _tenant(row) if row else None


async def tenant_by_id(pool: asyncpg.Pool, tenant_id: str) -> Tenant | None:
    """A tenant by id, or None (also for an id that is not a UUID)."""
    try:
        key = uuid.UUID(tenant_id)
    except ValueError:
        return None
    row = await pool.fetchrow("SELECT * FROM tenants WHERE id = $1", key)
    return _tenant(row) if row else None


TENANT_TTL_SECONDS = 30.0
"""How long a tenant is trusted from memory: a revoked key, a new domain or a new webhook
endpoint applies this late."""


class TenantDirectory:
    """Tenant look-ups made for every request or event, answered from memory when recent."""

    def __init__(self, pool: asyncpg.Pool, ttl: float = TENANT_TTL_SECONDS) -> None:
        self._pool = pool
        self._by_key: TtlCache[bytes, Tenant] = TtlCache(ttl)
        self._by_id: TtlCache[str, Tenant] = TtlCache(ttl)

    async def by_api_key(self, api_key: str) -> Tenant | None:
        """The tenant of an unrevoked API key."""
        return await self._by_key.get(
            hash_api_key(api_key), lambda: tenant_by_api_key(self._pool, api_key)
        )

    async def by_id(self, tenant_id: str) -> Tenant | None:
        """A tenant by id (None also for an id that is not a UUID)."""
        return await self._by_id.get(tenant_id, lambda: tenant_by_id(self._pool, tenant_id))
