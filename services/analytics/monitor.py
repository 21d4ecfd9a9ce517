"""Deliverability monitoring: measure every tenant from the aggregates, open and resolve alerts,
and publish each opening and resolution as a notice.

An evaluation runs under an advisory lock (several analytics processes: one evaluates at a
time). The ``alerts`` rows are the outbox of the notices: the changes commit first, then a
notice is published and marked published only once the broker acknowledged it, and every
evaluation publishes what is not marked yet. A crash in between publishes it again under the
same id (``notice_id`` of the alert), which readers of ``sendarix.notices`` drop as a copy.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
from prometheus_client import Gauge

from libs.alerts import AlertKind
from libs.analytics import Granularity, percentile
from libs.batch import Publication
from libs.database import Connection
from libs.topics import NOTICES, public_topic
from schemas.events import BounceCategory, MessageState
from schemas.notices import AlertSeverity, Notice, NoticeData, NoticeType, notice_id
from services.analytics.alerts import Change, Measure, Threshold, decide

EVALUATION_LOCK = 7_201_512
"""Advisory lock id: one evaluation at a time, whatever the number of analytics processes."""
SOURCE = "/sendarix/analytics"
NOTICE_CONTENT_TYPE = b"application/cloudevents+json"
BLOCKING = (BounceCategory.SPAM_BLOCK.value, BounceCategory.POLICY.value)
"""Bounce categories that mean the destination refuses the sender rather than the address."""

ALERTS_OPEN = Gauge(
    "sendarix_alerts_open", "Deliverability alerts open now", ["tenant", "kind", "severity"]
)

Send = Callable[[Sequence[Publication]], Awaitable[object]]


@dataclass(frozen=True)
class RateSql:
    """How one kind of rate alert is measured: what counts against it, out of what."""

    bad: str
    sample: str
    key: str | None = None


DELIVERED, BOUNCED = MessageState.DELIVERED.value, MessageState.BOUNCED.value
DEFERRED, COMPLAINED = MessageState.DEFERRED.value, MessageState.COMPLAINED.value
RATES: dict[AlertKind, RateSql] = {
    AlertKind.BOUNCE_RATE: RateSql(
        f"event_type = '{BOUNCED}'", f"event_type IN ('{DELIVERED}', '{BOUNCED}')"
    ),
    AlertKind.COMPLAINT_RATE: RateSql(
        f"event_type = '{COMPLAINED}'", f"event_type = '{DELIVERED}'"
    ),
    AlertKind.DOMAIN_DEFERRALS: RateSql(
        f"event_type = '{DEFERRED}' OR (event_type = '{BOUNCED}' AND reason IN {BLOCKING!r})",
        f"event_type IN ('{DELIVERED}', '{BOUNCED}', '{DEFERRED}')",
        key="recipient_domain",
    ),
}


def window_granularity(window: timedelta) -> Granularity:
    """The finest buckets still kept for a window: minutes up to two hours, hours beyond."""
    return Granularity.MINUTE if window <= timedelta(hours=2) else Granularity.HOUR


async def rate_measures(
    connection: Connection, kind: AlertKind, threshold: Threshold, now: datetime
) -> list[Measure]:
    """Every tenant's (and key's) rate of ``kind`` over its window."""
    how = RATES[kind]
    window = timedelta(seconds=threshold.window_seconds)
    key = f", {how.key}" if how.key else ""
    rows = await connection.fetch(
        f"SELECT tenant_id{key}, sum(count) FILTER (WHERE {how.bad}) AS bad,"
        f" sum(count) FILTER (WHERE {how.sample}) AS sample FROM analytics_counts"
        f" WHERE granularity = $1 AND bucket >= $2 AND bucket <= $3 GROUP BY tenant_id{key}",
        window_granularity(window).value,
        now - window,
        now,
    )
    return [
        Measure(
            str(row["tenant_id"]),
            kind,
            row[how.key] if how.key else None,
            (row["bad"] or 0) / row["sample"],
            row["sample"],
        )
        for row in rows
        if row["sample"]
    ]


async def latency_measures(
    connection: Connection, threshold: Threshold, now: datetime
) -> list[Measure]:
    """Every tenant's critical-lane accept->delivered p99 (ms) over its window."""
    window = timedelta(seconds=threshold.window_seconds)
    rows = await connection.fetch(
        "SELECT tenant_id, bin, sum(count)::bigint AS count FROM analytics_latency"
        " WHERE granularity = $1 AND bucket >= $2 AND bucket <= $3 AND lane = 'critical'"
        " GROUP BY tenant_id, bin",
        window_granularity(window).value,
        now - window,
        now,
    )
    histograms: defaultdict[str, dict[int, int]] = defaultdict(dict)
    for row in rows:
        histograms[str(row["tenant_id"])][row["bin"]] = row["count"]
    return [
        Measure(tenant, AlertKind.CRITICAL_LATENCY, None, p99, sum(histogram.values()))
        for tenant, histogram in histograms.items()
        if (p99 := percentile(histogram, 0.99)) is not None
    ]


async def evaluate(
    pool: asyncpg.Pool,
    limits: dict[AlertKind, Threshold],
    resolve_ratio: float,
    send: Send,
    prefix: str,
    now: datetime,
) -> int:
    """Measure, open/escalate/resolve, then publish what is unpublished; the alerts changed
    (-1: another process is evaluating).

    The changes commit before their notices are published (a second transaction): a notice
    never names an alert that a failed commit took back.
    """
    async with pool.acquire() as connection:
        async with connection.transaction():
            if not await _evaluating(connection):
                return -1
            measures: list[Measure] = []
            for kind in RATES:
                measures += await rate_measures(connection, kind, limits[kind], now)
            latency = AlertKind.CRITICAL_LATENCY
            measures += await latency_measures(connection, limits[latency], now)
            changed = await _apply(connection, measures, limits, resolve_ratio, now)
        async with connection.transaction():
            if await _evaluating(connection):
                await publish_unpublished(connection, send, prefix, now)
                await _update_gauge(connection)
    return changed


async def _evaluating(connection: Connection) -> bool:
    """Take the evaluation's lock until the end of the transaction; False: another has it."""
    return bool(await connection.fetchval("SELECT pg_try_advisory_xact_lock($1)", EVALUATION_LOCK))


async def _apply(
    connection: Connection,
    measures: list[Measure],
    limits: dict[AlertKind, Threshold],
    resolve_ratio: float,
    now: datetime,
) -> int:
    rows = await connection.fetch(
        "SELECT id, tenant_id, kind, key, severity FROM alerts WHERE resolved_at IS NULL"
    )
    open_now = {(str(r["tenant_id"]), r["kind"], r["key"]): r for r in rows}
    changed = 0
    for measure in measures:
        threshold = limits[measure.kind]
        row = open_now.get((measure.tenant_id, measure.kind.value, measure.key))
        severity = AlertSeverity(row["severity"]) if row is not None else None
        decision = decide(measure, severity, threshold, resolve_ratio)
        if decision.change is Change.OPEN:
            assert decision.severity is not None
            changed += await _open(connection, measure, threshold, decision.severity, now)
            continue
        if row is None:
            continue
        figures = (row["id"], measure.value, measure.sample, now)
        if decision.change is Change.RESOLVE:
            await connection.execute(
                "UPDATE alerts SET resolved_at = $4, last_value = $2, last_sample = $3,"
                " evaluated_at = $4 WHERE id = $1",
                *figures,
            )
            changed += 1
        elif decision.change is Change.ESCALATE:
            assert decision.severity is not None
            await connection.execute(
                "UPDATE alerts SET severity = $5, threshold = $6, last_value = $2,"
                " last_sample = $3, evaluated_at = $4 WHERE id = $1",
                *figures,
                decision.severity.value,
                threshold.of(decision.severity),
            )
            changed += 1
        else:
            await connection.execute(
                "UPDATE alerts SET last_value = $2, last_sample = $3, evaluated_at = $4"
                " WHERE id = $1",
                *figures,
            )
    return changed


async def _open(
    connection: Connection,
    measure: Measure,
    threshold: Threshold,
    severity: AlertSeverity,
    now: datetime,
) -> int:
    status = await connection.execute(
        "INSERT INTO alerts (id, tenant_id, kind, key, severity, value, threshold, sample,"
        " window_seconds, opened_at, last_value, last_sample, evaluated_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $6, $8, $10)"
        " ON CONFLICT (tenant_id, kind, coalesce(key, '')) WHERE resolved_at IS NULL DO NOTHING",
        uuid.uuid4(),
        uuid.UUID(measure.tenant_id),
        measure.kind.value,
        measure.key,
        severity.value,
        measure.value,
        threshold.of(severity),
        measure.sample,
        threshold.window_seconds,
        now,
    )
    return int(status.split()[-1])


async def publish_unpublished(
    connection: Connection, send: Send, prefix: str, now: datetime
) -> int:
    """Publish every opening and resolution not published yet, then mark them; how many."""
    rows = await connection.fetch(
        "SELECT * FROM alerts WHERE opened_published_at IS NULL"
        " OR (resolved_at IS NOT NULL AND resolved_published_at IS NULL) ORDER BY opened_at"
    )
    opened = [row for row in rows if row["opened_published_at"] is None]
    resolved = [row for row in rows if row["resolved_at"] is not None]
    notices = [alert_notice(row, NoticeType.ALERT_OPENED) for row in opened]
    notices += [alert_notice(row, NoticeType.ALERT_RESOLVED) for row in resolved]
    if not notices:
        return 0
    topic = public_topic(NOTICES, prefix)
    await send(
        [
            Publication(
                None,
                topic,
                notice.model_dump_json().encode(),
                notice.data.tenant_id.encode(),
                [("content-type", NOTICE_CONTENT_TYPE)],
            )
            for notice in notices
        ]
    )
    await connection.execute(
        "UPDATE alerts SET"
        " opened_published_at = CASE WHEN id = ANY($1::uuid[]) THEN $3"
        " ELSE opened_published_at END,"
        " resolved_published_at = CASE WHEN id = ANY($2::uuid[]) THEN $3"
        " ELSE resolved_published_at END"
        " WHERE id = ANY($1::uuid[]) OR id = ANY($2::uuid[])",
        [row["id"] for row in opened],
        [row["id"] for row in resolved],
        now,
    )
    return len(notices)


def alert_notice(row: asyncpg.Record, type_: NoticeType) -> Notice:
    """The notice of an alert's opening or resolution (the same id however often it is made)."""
    alert_id = str(row["id"])
    resolving = type_ is NoticeType.ALERT_RESOLVED
    return Notice(
        id=notice_id(type_, alert_id),
        source=SOURCE,
        type=type_,
        subject=alert_id,
        time=row["resolved_at"] if resolving else row["opened_at"],
        data=NoticeData(
            tenant_id=str(row["tenant_id"]),
            kind=row["kind"],
            severity=AlertSeverity(row["severity"]),
            key=row["key"],
            value=row["last_value"] if resolving else row["value"],
            threshold=row["threshold"],
            window_seconds=row["window_seconds"],
            sample=row["last_sample"] if resolving else row["sample"],
            reason=_reason(row, resolving),
        ),
    )


def _reason(row: asyncpg.Record, resolving: bool) -> str:
    about = f" for {row['key']}" if row["key"] else ""
    if resolving:
        return f"{row['kind']}{about} is back to {row['last_value']:.4g}"
    return f"{row['kind']}{about} reached {row['value']:.4g} (threshold {row['threshold']:.4g})"


async def _update_gauge(connection: Connection) -> None:
    rows = await connection.fetch(
        "SELECT tenant_id, kind, severity, count(*) AS open FROM alerts"
        " WHERE resolved_at IS NULL GROUP BY tenant_id, kind, severity"
    )
    ALERTS_OPEN.clear()
    for row in rows:
        ALERTS_OPEN.labels(str(row["tenant_id"]), row["kind"], row["severity"]).set(row["open"])
