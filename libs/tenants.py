"""Tenants and who calls with a key: read by ingest, written by the CLI."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from libs.cache import TtlCache
from libs.keys import (
    ApiKey,
    KeySettings,
    hash_api_key,
    insert_key,
    key_by_secret,
    mark_used,
)
from libs.sending_domains import insert_domains, normalise_domain
from schemas.common import DEFAULT_PRIORITY_CEILING, Lane

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tenant:
    """A customer of the platform and its sending domains."""

    id: str
    name: str
    domains: tuple[str, ...]
    """Every sending domain of the tenant, verified or not."""
    priority_ceiling: Lane = DEFAULT_PRIORITY_CEILING
    """The most urgent lane the tenant may ask for with ``priority`` (never ``critical``)."""
    critical_per_second: float = 20.0
    critical_burst: int = 40
    """How many messages per second (and at once) of the tenant's security mail go in the
    critical lane; beyond that they go in ``high``, so no tenant's flood delays another's OTPs."""
    rate_per_second: float = 5000.0
    rate_burst: int = 10000
    """How many messages per second (and at once) the tenant may send through one ingest
    process's HTTP gateway; beyond that it is answered 429."""
    verified_domains: tuple[str, ...] = ()
    dev_domains: tuple[str, ...] = ()
    """The domains created in dev mode: they may send unverified while dev mode is on."""

    def sendable_domains(self, dev_mode: bool) -> tuple[str, ...]:
        """The domains mail may be sent from now: verified ones, and in dev mode dev ones."""
        return (*self.verified_domains, *self.dev_domains) if dev_mode else self.verified_domains


TENANT_COLUMNS = (
    "t.*, (SELECT coalesce(jsonb_agg(jsonb_build_object('domain', d.domain,"
    " 'verified', d.status = 'verified', 'dev', d.created_in_dev_mode) ORDER BY d.domain), '[]')"
    " FROM sending_domains d WHERE d.tenant_id = t.id) AS sending_domains"
)
"""A tenant row ``t`` with its sending domains, so one query answers a look-up."""


def _tenant(row: asyncpg.Record) -> Tenant:
    domains = row["sending_domains"]
    return Tenant(
        id=str(row["id"]),
        name=row["name"],
        domains=tuple(d["domain"] for d in domains),
        verified_domains=tuple(d["domain"] for d in domains if d["verified"]),
        dev_domains=tuple(d["domain"] for d in domains if d["dev"]),
        priority_ceiling=Lane(row["priority_ceiling"]),
        critical_per_second=row["critical_per_second"],
        critical_burst=row["critical_burst"],
        rate_per_second=row["rate_per_second"],
        rate_burst=row["rate_burst"],
    )


async def create_tenant(
    pool: asyncpg.Pool,
    name: str,
    domains: list[str],
    api_key: str | None = None,
    *,
    dev_mode: bool,
) -> tuple[Tenant, str]:
    """Create a tenant with its first API key (every scope); return it and the key's secret
    (shown once, stored hashed).

    Its domains get their DKIM keys now; created in ``dev_mode``, they may send before their
    DNS records are verified (while dev mode is on). Raises ``InvalidDomain``.
    """
    tenant_id = str(uuid.uuid4())
    normalised = sorted({normalise_domain(d) for d in domains if d.strip()})
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute(
            "INSERT INTO tenants (id, name, domains) VALUES ($1, $2, $3)",
            uuid.UUID(tenant_id),
            name,
            normalised,
        )
        _, key = await insert_key(connection, tenant_id, KeySettings(), api_key)
        await insert_domains(connection, tenant_id, normalised, dev_mode)
    return Tenant(
        tenant_id,
        name,
        tuple(normalised),
        dev_domains=tuple(normalised) if dev_mode else (),
    ), key


async def set_limits(
    pool: asyncpg.Pool,
    tenant_id: str,
    priority_ceiling: Lane | None = None,
    critical_per_second: float | None = None,
    critical_burst: int | None = None,
    rate_per_second: float | None = None,
    rate_burst: int | None = None,
) -> Tenant | None:
    """Change how far a tenant may raise priority, its critical-lane rate and its send rate
    (None: keep)."""
    if priority_ceiling is Lane.CRITICAL:
        raise ValueError("no tenant may ask for the critical lane: only security mail earns it")
    row = await pool.fetchrow(
        "WITH t AS (UPDATE tenants SET priority_ceiling = coalesce($2, priority_ceiling),"
        " critical_per_second = coalesce($3, critical_per_second),"
        " critical_burst = coalesce($4, critical_burst),"
        " rate_per_second = coalesce($5, rate_per_second),"
        " rate_burst = coalesce($6, rate_burst) WHERE id = $1 RETURNING *)"
        f" SELECT {TENANT_COLUMNS} FROM t",
        uuid.UUID(tenant_id),
        priority_ceiling.value if priority_ceiling else None,
        critical_per_second,
        critical_burst,
        rate_per_second,
        rate_burst,
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
    """The tenant a usable (unrevoked, unexpired) API key belongs to."""
    row = await pool.fetchrow(
        f"SELECT {TENANT_COLUMNS} FROM api_keys k JOIN tenants t ON t.id = k.tenant_id"
        " WHERE k.key_hash = $1 AND k.revoked_at IS NULL"
        " AND (k.expires_at IS NULL OR k.expires_at > now())",
        hash_api_key(api_key),
    )
    return _tenant(row) if row else None


async def tenant_by_id(pool: asyncpg.Pool, tenant_id: str) -> Tenant | None:
    """A tenant by id, or None (also for an id that is not a UUID)."""
    try:
        key = uuid.UUID(tenant_id)
    except ValueError:
        return None
    row = await pool.fetchrow(f"SELECT {TENANT_COLUMNS} FROM tenants t WHERE t.id = $1", key)
    return _tenant(row) if row else None


TENANT_TTL_SECONDS = 30.0
"""How long a tenant is trusted from memory: a new domain or limit applies this late."""
KEY_TTL_SECONDS = 2.0
"""How long a key is trusted from memory: a revoked or narrowed key is refused by every ingest
process within this time (plus a look-up)."""
LAST_USED_EVERY_SECONDS = 60.0
"""A key's ``last_used_at`` is written at most this often by one process."""


@dataclass(frozen=True)
class Caller:
    """Who is calling: a tenant, through one of its keys."""

    tenant: Tenant
    key: ApiKey


class TenantDirectory:
    """Tenant and key look-ups made for every request or event, answered from memory when
    recent. It also notes when each key was last used, off the request's path."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        ttl: float = TENANT_TTL_SECONDS,
        key_ttl: float = KEY_TTL_SECONDS,
    ) -> None:
        self._pool = pool
        self._keys: TtlCache[bytes, ApiKey] = TtlCache(key_ttl)
        self._by_id: TtlCache[str, Tenant] = TtlCache(ttl)
        self._last_marked: dict[str, float] = {}
        self._marking: set[asyncio.Task[None]] = set()

    async def caller(self, api_key: str) -> Caller | None:
        """The tenant and key of a usable API key (None: unknown, revoked or expired)."""
        key = await self._keys.get(
            hash_api_key(api_key), lambda: key_by_secret(self._pool, api_key)
        )
        if key is None or not key.usable(datetime.now(UTC)):
            return None
        tenant = await self.by_id(key.tenant_id)
        if tenant is None:
            return None
        self._note_use(key.id)
        return Caller(tenant, key)

    async def by_id(self, tenant_id: str) -> Tenant | None:
        """A tenant by id (None also for an id that is not a UUID)."""
        return await self._by_id.get(tenant_id, lambda: tenant_by_id(self._pool, tenant_id))

    def _note_use(self, key_id: str) -> None:
        """Write the key's ``last_used_at`` in the background, at most once a minute."""
        moment = time.monotonic()
        if (
            moment - self._last_marked.get(key_id, -LAST_USED_EVERY_SECONDS)
            < LAST_USED_EVERY_SECONDS
        ):
            return
        self._last_marked[key_id] = moment
        task = asyncio.create_task(self._mark(key_id))
        self._marking.add(task)
        task.add_done_callback(self._marking.discard)

    async def _mark(self, key_id: str) -> None:
        try:
            await mark_used(self._pool, [key_id])
        except Exception as error:  # a note for the admin: never worth failing anything
            log.warning("could not note the use of key %s: %r", key_id, error)

    def forget(self, tenant_id: str) -> None:
        """Load a tenant afresh on its next look-up here, after a change made through this
        process (other processes see it within the TTL)."""
        self._by_id.forget(lambda tenant: tenant.id == tenant_id)
