"""policy-check's view polls the suppressions table: each committed write is taken once, also
while another transaction stays open for a long time (a slow import, a long job elsewhere)."""

from __future__ import annotations

import asyncpg
import pytest

from libs.suppressions import (
    HORIZON,
    Suppression,
    SuppressionReason,
    add_suppressions,
    changes_since,
)
from libs.tenants import Tenant
from schemas.common import Stream

pytestmark = pytest.mark.integration


async def test_a_long_transaction_elsewhere_does_not_make_polls_read_again(
    pool: asyncpg.Pool, tenant: tuple[Tenant, str]
) -> None:
    tenant_id = tenant[0].id
    taken: list[Suppression] = []

    def take(chunk: list[Suppression]) -> None:
        taken.extend(s for s in chunk if s.tenant_id == tenant_id)

    async with (
        pool.acquire() as long_running,
        pool.acquire() as poller,
        long_running.transaction(),
    ):
        await long_running.fetchval("SELECT pg_current_xact_id()")  # it holds an xid
        horizon: str = await poller.fetchval(HORIZON)
        written = [
            Suppression(tenant_id, f"p{i}@example.org", Stream.BROADCAST, SuppressionReason.MANUAL)
            for i in range(3)
        ]
        await add_suppressions(pool, written)

        first = await changes_since(poller, horizon, take)
        assert sorted(s.address for s in taken) == [f"p{i}@example.org" for i in range(3)]
        taken.clear()
        await changes_since(poller, first.horizon, take)
        assert taken == []  # already taken, though the long transaction still runs
