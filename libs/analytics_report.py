"""A tenant's analytics over a time range: counts, rates and latency per bucket (and group).

Read by ``GET /v1/analytics`` and ``sendarix analytics``. It reads only the aggregate rows of
the asked granularity (``analytics_counts``, ``analytics_latency``), through their primary key
(tenant, granularity, bucket range): a 90-day report at day granularity reads 90 days of day
rows, never the message log. Counts and latency are read at once, on two connections.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from pydantic import BaseModel

from libs.analytics import DIMENSIONS, Granularity, bucket_start, percentile, rates
from schemas.events import MessageState

MAX_BUCKETS = 2000
"""The most buckets one report spans (about 33 hours of minutes, 83 days of hours, 5 years of
days): more is a question for a coarser granularity."""
FILTERS = ("stream", "lane", "category", "template", "variant", "recipient_domain")
MAX_ROWS = 200_000
"""The most aggregate rows one report adds up: a grouping by recipient domain over thousands of
buckets could otherwise ask the gateway to hold millions."""


class ReportTooLarge(ValueError):
    """The report would add up more than ``MAX_ROWS`` rows."""


@dataclass(frozen=True)
class AnalyticsQuery:
    """What to report: buckets starting in [since floored to a bucket, until)."""

    since: datetime
    until: datetime
    granularity: Granularity
    filters: dict[str, str] = field(default_factory=dict)
    group_by: tuple[str, ...] = ()


def refusal(query: AnalyticsQuery, now: datetime, minute_retention: timedelta) -> str | None:
    """Why the report cannot be made as asked (None: it can)."""
    if query.until <= query.since:
        return "until must be after since"
    buckets = (query.until - bucket_start(query.since, query.granularity)) / query.granularity.step
    if buckets > MAX_BUCKETS:
        return (
            f"{int(buckets)} {query.granularity.value} buckets asked; at most {MAX_BUCKETS}"
            " — ask for a coarser granularity or a shorter range"
        )
    if query.granularity is Granularity.MINUTE and query.since < now - minute_retention:
        hours = minute_retention / timedelta(hours=1)
        return f"minute buckets are kept {hours:g} hours; ask for hour or day granularity"
    return None


class Latency(BaseModel):
    """Accept -> delivered latency of the delivered messages, from the histogram."""

    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    sample: int


class Figures(BaseModel):
    counts: dict[str, int]
    rates: dict[str, float | None]
    latency: Latency


class BucketFigures(Figures):
    start: datetime
    group: dict[str, str | None]


class AnalyticsReport(BaseModel):
    """Buckets with any event, oldest first (within a bucket, by group); totals over all."""

    since: datetime
    until: datetime
    granularity: Granularity
    filters: dict[str, str]
    group_by: list[str]
    buckets: list[BucketFigures]
    totals: Figures


@dataclass
class _Tally:
    counts: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    histogram: defaultdict[int, int] = field(default_factory=lambda: defaultdict(int))

    def figures(self) -> dict[str, Any]:
        counts = {state.value: self.counts.get(state.value, 0) for state in MessageState}
        latency = Latency(
            p50_ms=_rounded(percentile(self.histogram, 0.50)),
            p95_ms=_rounded(percentile(self.histogram, 0.95)),
            p99_ms=_rounded(percentile(self.histogram, 0.99)),
            sample=sum(self.histogram.values()),
        )
        return {"counts": counts, "rates": rates(counts), "latency": latency}


def _rounded(milliseconds: float | None) -> float | None:
    return None if milliseconds is None else round(milliseconds, 1)


def _statement(
    table: str, measure: str, query: AnalyticsQuery, tenant: uuid.UUID | None
) -> tuple[str, list[Any]]:
    groups = "".join(f", {name}" for name in query.group_by)
    arguments: list[Any] = [query.granularity.value, bucket_start(query.since, query.granularity)]
    arguments.append(query.until)
    conditions = ["granularity = $1", "bucket >= $2", "bucket < $3"]
    filters = {**query.filters, **({"tenant_id": tenant} if tenant is not None else {})}
    for name, value in filters.items():
        arguments.append(value)
        conditions.append(f"{name} = ${len(arguments)}")
    sql = (
        f"SELECT bucket{groups}, {measure}, sum(count)::bigint AS count FROM {table}"
        f" WHERE {' AND '.join(conditions)} GROUP BY bucket{groups}, {measure}"
        f" LIMIT {MAX_ROWS + 1}"
    )
    return sql, arguments


async def read_report(
    pool: asyncpg.Pool, tenant_id: str | None, query: AnalyticsQuery
) -> AnalyticsReport:
    """The report ``query`` asks for, of the tenant's aggregates (None: every tenant's
    together, for an operator)."""
    assert set(query.group_by) <= set(DIMENSIONS) and set(query.filters) <= set(FILTERS)
    tenant = uuid.UUID(tenant_id) if tenant_id is not None else None
    buckets: defaultdict[tuple[Any, ...], _Tally] = defaultdict(_Tally)
    totals = _Tally()
    counts_sql, arguments = _statement("analytics_counts", "event_type", query, tenant)
    latency_sql, _ = _statement("analytics_latency", "bin", query, tenant)
    counted, binned = await asyncio.gather(
        pool.fetch(counts_sql, *arguments), pool.fetch(latency_sql, *arguments)
    )
    if max(len(counted), len(binned)) > MAX_ROWS:
        raise ReportTooLarge(
            f"more than {MAX_ROWS} figures: group by fewer dimensions, filter, or ask for a"
            " coarser granularity or a shorter range"
        )
    for row in counted:
        key = (row["bucket"], *(row[name] for name in query.group_by))
        buckets[key].counts[row["event_type"]] += row["count"]
        totals.counts[row["event_type"]] += row["count"]
    for row in binned:
        key = (row["bucket"], *(row[name] for name in query.group_by))
        buckets[key].histogram[row["bin"]] += row["count"]
        totals.histogram[row["bin"]] += row["count"]
    return AnalyticsReport(
        since=query.since,
        until=query.until,
        granularity=query.granularity,
        filters=query.filters,
        group_by=list(query.group_by),
        buckets=[
            BucketFigures(
                start=key[0],
                group={
                    name: value or None for name, value in zip(query.group_by, key[1:], strict=True)
                },
                **tally.figures(),
            )
            for key, tally in sorted(buckets.items())
        ],
        totals=Figures(**totals.figures()),
    )
