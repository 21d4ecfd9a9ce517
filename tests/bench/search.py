"""``python -m tests.bench.search``: search latency over a message log of a million rows.

The log is generated in a scratch schema of the database (one ``INSERT … SELECT
generate_series``) as a copy of ``messages`` with every index the migrations gave it, searched
with the gateway's own query (``services.ingest.search``), then dropped. One tenant holds half
of the rows, 25 others the rest; each query runs with fresh random values, like clients would.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import click

from libs.database import Connection, open_pool
from libs.settings import Settings
from schemas.common import Stream
from schemas.events import MessageState
from services.ingest.search import Cursor, MessageQuery, search_messages
from tests.bench.measure import latency_summary

SCHEMA = "bench_search"
BIG_TENANT = "00000000-0000-0000-0000-000000000001"
SMALL_TENANT = "00000000-0000-0000-0000-000000000107"

GENERATE = f"""
INSERT INTO {SCHEMA}.messages (id, tenant_id, trace_id, status, lane, stream, category, sender,
    recipient, subject, template, tags, metadata, accepted_at, updated_at)
SELECT gen_random_uuid(),
       CASE WHEN g % 2 = 0 THEN '{BIG_TENANT}'::uuid
            ELSE ('00000000-0000-0000-0000-0000000001' || lpad((g % 50)::text, 2, '0'))::uuid END,
       md5(g::text),
       (ARRAY['delivered', 'delivered', 'delivered', 'bounced', 'deferred', 'failed',
              'routed', 'cancelled', 'complained', 'suppressed'])[1 + g % 10],
       'critical',
       CASE WHEN g % 20 = 0 THEN 'broadcast' ELSE 'transactional' END,
       (ARRAY['otp', 'password_reset', 'billing', 'notification', 'receipt'])[1 + g % 5],
       'app@example.test',
       'user' || (g % 100000) || '@Example.org',
       'Subject ' || g,
       CASE WHEN g % 3 = 0 THEN NULL ELSE 'template_' || (g % 10) END,
       ARRAY['tag' || (g % 500), 'kind' || (g % 7)],
       jsonb_build_object('order_id', g::text, 'user', (g % 50000)::text),
       now() - g * ($1::interval / $2::int),
       now() - g * ($1::interval / $2::int)
FROM generate_series(1, $2::int) AS g
"""
"""Messages over ``$1`` (30 days), ``$2`` of them."""

QueryMaker = Callable[[random.Random], MessageQuery]

QUERIES: dict[str, QueryMaker] = {
    "newest page": lambda r: MessageQuery(),
    "page after a cursor": lambda r: MessageQuery(
        after=Cursor(datetime.now(UTC) - timedelta(days=r.uniform(0, 29)), uuid.uuid4())
    ),
    "recipient": lambda r: MessageQuery(recipient=f"user{r.randrange(100000)}@example.org"),
    "status (common)": lambda r: MessageQuery(status=MessageState.DELIVERED),
    "status (rare)": lambda r: MessageQuery(status=MessageState.COMPLAINED),
    "tag": lambda r: MessageQuery(tags=(f"tag{r.randrange(500)}",)),
    "tag (common)": lambda r: MessageQuery(tags=(f"kind{r.randrange(7)}",)),
    "metadata pair": lambda r: MessageQuery(metadata=(("order_id", str(r.randrange(10**6))),)),
    "category": lambda r: MessageQuery(category=r.choice(["otp", "billing", "receipt"])),
    "template": lambda r: MessageQuery(template=f"template_{r.randrange(10)}"),
    "stream (rare)": lambda r: MessageQuery(stream=Stream.BROADCAST),
    "one-day window": lambda r: MessageQuery(
        since=(day := datetime.now(UTC) - timedelta(days=r.uniform(1, 28))),
        until=day + timedelta(days=1),
    ),
}


async def _generated(pool: asyncpg.Pool, rows: int) -> None:
    async with pool.acquire() as connection:
        await connection.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        await connection.execute(f"CREATE SCHEMA {SCHEMA}")
        await connection.execute(
            f"CREATE TABLE {SCHEMA}.messages (LIKE public.messages INCLUDING ALL)"
        )
        await connection.execute(GENERATE, timedelta(days=30), rows)
        await connection.execute(f"VACUUM ANALYZE {SCHEMA}.messages")


async def measure(settings: Settings, rows: int, runs: int) -> dict[str, Any]:
    """Generate the log, time ``runs`` searches of each kind per tenant, drop the log."""
    pool = await open_pool(settings, size=1)
    try:
        started = time.monotonic()
        await _generated(pool, rows)
        figures: dict[str, Any] = {"rows": rows, "generate_s": round(time.monotonic() - started)}
        async with pool.acquire() as connection:
            await connection.execute(f"SET search_path = {SCHEMA}, public")
            for tenant, label in ((BIG_TENANT, "big tenant"), (SMALL_TENANT, "small tenant")):
                figures[label] = await _timed(connection, tenant, runs)
            await connection.execute("RESET search_path")
        return figures
    finally:
        await pool.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        await pool.close()


async def _timed(connection: Connection, tenant: str, runs: int) -> dict[str, Any]:
    chance = random.Random(8)
    figures = {}
    for name, make in QUERIES.items():
        latencies = []
        for _ in range(runs):
            query = make(chance)
            started = time.perf_counter()
            await search_messages(connection, tenant, query)
            latencies.append(1000 * (time.perf_counter() - started))
        figures[name] = latency_summary(latencies)
    return figures


@click.command()
@click.option("--rows", default=1_000_000, show_default=True)
@click.option("--runs", default=200, show_default=True, help="Searches of each kind per tenant.")
def main(rows: int, runs: int) -> None:
    """Print the search latency figures as JSON (database from SENDARIX_DATABASE_URL)."""
    click.echo(json.dumps(asyncio.run(measure(Settings(), rows, runs)), indent=2))


if __name__ == "__main__":
    main()
