"""The analytics scenario: how fast the analytics consumer aggregates the event stream, and how
fast a 90-day report reads.

1. ``events`` synthetic delivery events (20 tenants, a few large; 55 recipient domains, three
   quarters of the mail to five mailbox providers; five categories and their lanes; per
   message accepted, rendered, routed, then delivered, bounced, or deferred and delivered —
   about four events a message, all in the last ten minutes) are produced to
   an events topic of the scenario's own, before the consumer runs. An analytics service is
   then started in this process (its own consumer group) and timed draining them: events/s
   is what it added after its first batch landed over the time that took.
2. A tenant's history of 90 days of day rows (``HISTORY_ROWS_PER_DAY`` combinations of
   dimensions a day) is written to ``analytics_counts`` and ``analytics_latency``, and the
   report of ``GET /v1/analytics`` (``libs.analytics_report.read_report``, the gateway's own
   function) is timed over it: day granularity, 90 days, without and with a ``group_by``.

``python -m tests.bench.analytics`` runs it alone against the test profile's infrastructure.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import click

from libs.analytics import Granularity
from libs.analytics_report import AnalyticsQuery, read_report
from libs.batch import Publication
from libs.broker import ensure_topics, make_broker
from libs.database import apply_migrations, open_pool
from libs.events import event_headers
from libs.settings import Settings
from libs.topics import EVENTS, public_topic
from schemas.common import Stream, natural_lane
from schemas.events import Bounce, BounceCategory, EventData, MessageState, delivery_event
from services.analytics.app import AnalyticsService
from tests.bench.measure import latency_summary

GOAL_PER_S = 5000
TENANTS = 20
DOMAINS = ["gmail.com", "yahoo.com", "outlook.com", "icloud.com", "gmx.de"] + [
    f"corp{n}.example" for n in range(50)
]
DOMAIN_WEIGHTS = [40, 12, 12, 8, 3] + [0.5] * 50
"""Mailbox providers take most of the mail, a long tail of company domains the rest."""
TENANT_WEIGHTS = [30, 20, 10] + [40 / 17] * 17
"""A few large senders and many small ones."""
CATEGORIES = ["otp", "password_reset", "billing", "notification", "receipt"]
PRODUCE_CHUNK = 5000
DRAIN_TIMEOUT_SECONDS = 600.0
HISTORY_DAYS = 90
HISTORY_ROWS_PER_DAY = 1000
REPORTS = 20


def synthetic_events(
    topic: str, count: int, tenants: list[str], now: datetime
) -> list[Publication]:
    """About ``count`` events of whole messages, as the services would publish them."""
    chance = random.Random(12)
    records: list[Publication] = []
    while len(records) < count:
        category = chance.choice(CATEGORIES)
        data = EventData(
            message_id=str(uuid.uuid4()),
            tenant_id=chance.choices(tenants, TENANT_WEIGHTS)[0],
            recipient=f"user{chance.randrange(10**6)}@{chance.choices(DOMAINS, DOMAIN_WEIGHTS)[0]}",
            stream=Stream.TRANSACTIONAL,
            lane=natural_lane(category, Stream.TRANSACTIONAL),
            category=category,
            template=category,
            trace_id=uuid.uuid4().hex,
            service="bench",
        )
        at = now - timedelta(seconds=chance.uniform(5, 600))
        steps = [MessageState.ACCEPTED, MessageState.RENDERED, MessageState.ROUTED]
        fate = chance.random()
        if fate < 0.03:
            steps.append(MessageState.BOUNCED)
        elif fate < 0.08:
            steps += [MessageState.DEFERRED, MessageState.DELIVERED]
        else:
            steps.append(MessageState.DELIVERED)
        for state in steps:
            at += timedelta(milliseconds=chance.expovariate(1 / 300))
            bounce = (
                Bounce(category=BounceCategory.INVALID_RECIPIENT, hard=True)
                if state is MessageState.BOUNCED
                else None
            )
            event = delivery_event(state, data.model_copy(update={"bounce": bounce}), at)
            value, key = event.model_dump_json().encode(), event.subject.encode()
            records.append(Publication(None, topic, value, key, event_headers(event)))
    return records


async def _counted(pool: asyncpg.Pool, tenants: list[str]) -> int:
    total = await pool.fetchval(
        "SELECT coalesce(sum(count), 0) FROM analytics_counts"
        " WHERE tenant_id = ANY($1::uuid[]) AND granularity = 'day'",
        [uuid.UUID(t) for t in tenants],
    )
    return int(total)


async def aggregation(settings: Settings, pool: asyncpg.Pool, count: int) -> dict[str, Any]:
    """Produce the events, then time a fresh analytics consumer draining them."""
    own = settings.model_copy(
        update={
            "topic_prefix": f"{settings.topic_prefix}a{uuid.uuid4().hex[:6]}.",
            "alert_evaluation_seconds": 3600.0,
        }
    )
    await ensure_topics(own)
    tenants = [str(uuid.uuid4()) for _ in range(TENANTS)]
    topic = public_topic(EVENTS, own.topic_prefix)
    records = synthetic_events(topic, count, tenants, datetime.now(UTC))
    producer = make_broker("bench-analytics", own)
    await producer.start()
    began = time.monotonic()
    try:
        for first in range(0, len(records), PRODUCE_CHUNK):
            await producer.send_confirmed(records[first : first + PRODUCE_CHUNK])
    finally:
        await producer.stop()
    produce_s = time.monotonic() - began
    service = AnalyticsService(own)
    await service.start()
    try:
        first_seen: tuple[float, int] | None = None
        deadline = time.monotonic() + DRAIN_TIMEOUT_SECONDS
        done = 0
        while time.monotonic() < deadline:
            done = await _counted(pool, tenants)
            if done and first_seen is None:
                first_seen = (time.monotonic(), done)
            if done >= len(records):
                break
            await asyncio.sleep(0.1)
        ended = time.monotonic()
    finally:
        await service.stop()
    rate = None
    if first_seen is not None and ended > first_seen[0]:
        rate = round((done - first_seen[1]) / (ended - first_seen[0]))
    return {
        "events": len(records),
        "aggregated": done,
        "produce_s": round(produce_s, 1),
        "drain_s": round(ended - first_seen[0], 1) if first_seen else None,
        "events_per_s": rate,
    }


HISTORY = """
INSERT INTO {table} (tenant_id, granularity, bucket, stream, lane, category, template, variant,
    recipient_domain, {measure}, count)
SELECT $1::uuid, 'day', date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
           - d * interval '1 day',
       'transactional', (ARRAY['critical', 'high', 'normal'])[1 + g % 3],
       (ARRAY['otp', 'billing', 'notification', 'receipt', 'password_reset'])[1 + g % 5],
       'template_' || (g % 7), '', 'domain' || (g / 35) || '.example', {value}, 1 + g % 97
FROM generate_series(0, $2::int - 1) AS d, generate_series(0, $3::int - 1) AS g
"""


async def reports(pool: asyncpg.Pool) -> dict[str, Any]:
    """Time the 90-day day report of a tenant with a full history, plain and grouped."""
    tenant = str(uuid.uuid4())
    types = "(ARRAY['accepted', 'delivered', 'bounced', 'deferred', 'complained'])[1 + g % 5]"
    await pool.execute(
        HISTORY.format(
            table="analytics_counts", measure="event_type, reason", value=f"{types}, ''"
        ),
        uuid.UUID(tenant),
        HISTORY_DAYS,
        HISTORY_ROWS_PER_DAY,
    )
    await pool.execute(
        HISTORY.format(table="analytics_latency", measure="bin", value="(g % 40)::smallint"),
        uuid.UUID(tenant),
        HISTORY_DAYS,
        HISTORY_ROWS_PER_DAY,
    )
    try:
        now = datetime.now(UTC)
        figures: dict[str, Any] = {"rows": 2 * HISTORY_DAYS * HISTORY_ROWS_PER_DAY}
        for name, group_by in (("plain", ()), ("by_category", ("category",))):
            query = AnalyticsQuery(
                since=now - timedelta(days=HISTORY_DAYS),
                until=now,
                granularity=Granularity.DAY,
                group_by=group_by,
            )
            latencies = []
            for _ in range(REPORTS):
                began = time.perf_counter()
                report = await read_report(pool, tenant, query)
                latencies.append(1000 * (time.perf_counter() - began))
            figures[name] = {"buckets": len(report.buckets), **latency_summary(latencies)}
        return figures
    finally:
        for table in ("analytics_counts", "analytics_latency"):
            await pool.execute(f"DELETE FROM {table} WHERE tenant_id = $1", uuid.UUID(tenant))


async def analytics(settings: Settings, pool: asyncpg.Pool, events: int) -> dict[str, Any]:
    """Both phases of the scenario."""
    return {"aggregation": await aggregation(settings, pool, events), "report": await reports(pool)}


def analytics_goals(figures: dict[str, Any] | None) -> list[tuple[bool, str]]:
    """The issue's goal for the analytics consumer."""
    if not figures:
        return []
    rate = figures["aggregation"]["events_per_s"]
    return [
        (
            rate is not None and rate >= GOAL_PER_S,
            f"analytics aggregates >= {GOAL_PER_S} events/s: {rate}/s",
        )
    ]


def analytics_report(figures: dict[str, Any]) -> str:
    """The scenario's lines of the printed report."""
    drained, report = figures["aggregation"], figures["report"]
    return (
        f"analytics: {drained['aggregated']:,}/{drained['events']:,} events aggregated in"
        f" {drained['drain_s']} s = {drained['events_per_s']}/s; 90-day report over"
        f" {report['rows']:,} rows: p50 {report['plain'].get('p50_ms')} ms, p99"
        f" {report['plain'].get('p99_ms')} ms (grouped by category: p99"
        f" {report['by_category'].get('p99_ms')} ms)"
    )


@click.command()
@click.option("--events", type=int, default=200_000, show_default=True)
@click.option("--database", help="A database of the test cluster (default: the test profile's).")
def main(events: int, database: str | None) -> None:
    """Run the scenario alone against the test profile's broker and database."""
    from deploy.stack.profiles import TEST

    async def run() -> dict[str, Any]:
        url = TEST.database_url
        if database:
            url = url.rsplit("/", 1)[0] + "/" + database
        prefix = f"bench{uuid.uuid4().hex[:6]}."
        settings = TEST.settings(topic_prefix=prefix, log_json=False, database_url=url)
        await apply_migrations(settings.database_url)
        pool = await open_pool(settings, size=4)
        try:
            return await analytics(settings, pool, events)
        finally:
            await pool.close()

    figures = asyncio.run(run())
    click.echo(json.dumps(figures, indent=2))
    click.echo(analytics_report(figures))


if __name__ == "__main__":
    main()
