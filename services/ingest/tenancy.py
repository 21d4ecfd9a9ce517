"""Who is sending: tenants by API key (HTTP) and by id (topic), cached for a short while."""

from __future__ import annotations

import asyncpg

from libs.cache import TtlCache
from libs.tenants import Tenant, hash_api_key, tenant_by_api_key, tenant_by_id

TENANT_TTL_SECONDS = 30.0
"""How long a tenant is trusted from memory: a revoked key or a new domain applies this late."""


class TenantDirectory:
    """Tenant look-ups for every request, answered from memory when recently asked."""

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
