"""What the queues hold now: per stage and lane, per destination site, and the scheduled retries.

A stage's depth is its consumer group's lag (log end offset minus committed offset, summed over
the lane's partitions) and its oldest waiting record is the one at the committed offset; both
come from the broker, read at most once a second (``current_stages``) so that a page polling the
view does not poll the broker. Retries wait in ``retry_schedule``, not on a topic: their stage is
read from there. Sites are what the senders wrote in ``delivery_sites`` in the last 10 s.

Stage depths and site states are platform figures; waiting and scheduled counts are a tenant's
own unless an operator asks (``tenant_id`` None).
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import BaseModel

from libs.broker import group_id
from libs.cache import TtlCache
from libs.queue_controls import QueueControl, read_controls
from libs.settings import Settings
from libs.topics import (
    DELIVER,
    DELIVER_SLOW,
    POLICY,
    RENDER,
    RETRY,
    ROUTE,
    intake_topic,
)
from schemas.common import Lane

GAUGE_TTL_SECONDS = 1.0
"""How old the broker's figures may be: a page refreshing every second reads them once."""
OLDEST_WAIT_SECONDS = 1.0
"""How long reading the oldest waiting records may take; a record not fetched by then counts
as none (age 0) rather than holding the view."""
FETCH_BYTES = 64 * 1024
"""Bytes fetched per partition to read its oldest record's timestamp (the broker returns one
batch at least, whatever its size)."""
SITE_FRESH_SECONDS = 10
"""A sender's site snapshot older than this is of a sender that stopped: left out."""
MAX_SCHEDULED_GROUPS = 500
MAX_EVENTS = 1000


@dataclass(frozen=True)
class Reader:
    """One lane of one stage and the consumer group that reads it."""

    stage: str
    lane: Lane
    topic: str
    group: str


STAGE_READERS: dict[str, tuple[str, str]] = {
    "intake": ("ingest", "intake-"),
    RENDER.name: ("render", ""),
    POLICY.name: ("policy-check", ""),
    ROUTE.name: ("router", ""),
    DELIVER.name: ("sender", ""),
    DELIVER_SLOW.name: ("sender", "slow-"),
}
"""Each stage on a topic, with the service and the role prefix (before the lane) of its groups."""


def readers(settings: Settings) -> list[Reader]:
    """Every stage lane on a topic and its consumer group, in pipeline order."""
    prefix = settings.topic_prefix
    found = []
    for stage, (service, role) in STAGE_READERS.items():
        for lane in Lane:
            topic = (
                intake_topic(lane, prefix)
                if stage == "intake"
                else f"{prefix}sendarix.{stage}.{lane.value}"
            )
            found.append(
                Reader(stage, lane, topic, group_id(service, f"{role}{lane.value}", settings))
            )
    return found


class StageDepth(BaseModel):
    """What waits in one lane of one stage: how many, and for how long the oldest has."""

    stage: str
    lane: Lane
    depth: int
    oldest_seconds: float
    next_due_at: datetime | None = None
    """Retries only: when the first waiting attempt is due."""


def waiting_positions(
    committed: Mapping[TopicPartition, int],
    starts: Mapping[TopicPartition, int],
    ends: Mapping[TopicPartition, int],
) -> dict[TopicPartition, tuple[int, int]]:
    """Per partition, the first waiting offset and the end, where records wait.

    A partition the group never committed is read from its start (the groups read from the
    earliest record), and records retention deleted are no longer waiting.
    """
    waiting = {}
    for partition, end in ends.items():
        start = starts.get(partition, 0)
        position = max(committed.get(partition, start), start)
        if end > position:
            waiting[partition] = (position, end)
    return waiting


def stage_depths(
    stage_readers: Sequence[Reader],
    waiting: Mapping[TopicPartition, tuple[int, int]],
    oldest_ms: Mapping[TopicPartition, int],
    now_ms: int,
) -> list[StageDepth]:
    """One figure per stage lane from what waits on each partition and the timestamp of the
    oldest waiting record of each."""
    depths = []
    for reader in stage_readers:
        spans = [span for p, span in waiting.items() if p.topic == reader.topic]
        ages = [max(0, now_ms - ms) for p, ms in oldest_ms.items() if p.topic == reader.topic]
        depths.append(
            StageDepth(
                stage=reader.stage,
                lane=reader.lane,
                depth=sum(end - position for position, end in spans),
                oldest_seconds=max(ages, default=0) / 1000,
            )
        )
    return depths


async def _committed(admin: AIOKafkaAdminClient, group: str) -> dict[TopicPartition, int]:
    offsets = await admin.list_consumer_group_offsets(group)
    return {partition: meta.offset for partition, meta in offsets.items() if meta.offset >= 0}


async def _first_timestamps(
    consumer: AIOKafkaConsumer, positions: Mapping[TopicPartition, int], within: float
) -> dict[TopicPartition, int]:
    """The timestamp (ms) of the record at each position, as far as ``within`` seconds allow."""
    found: dict[TopicPartition, int] = {}
    if not positions:
        return found
    consumer.assign(list(positions))
    for partition, offset in positions.items():
        consumer.seek(partition, offset)
    deadline = time.monotonic() + within
    while len(found) < len(positions) and (left := deadline - time.monotonic()) > 0:
        fetched = await consumer.getmany(timeout_ms=int(left * 1000))
        for partition, records in fetched.items():
            if records and partition not in found:
                found[partition] = records[0].timestamp
                consumer.pause(partition)
    return found


async def measure_stages(settings: Settings) -> list[StageDepth]:
    """Read every stage lane's lag and oldest waiting record from the broker now.

    The groups' offsets are read before the end offsets: a record produced and committed in
    between shows as waiting, never the other way round. A topic the broker does not have (a
    stack from before a stage existed) shows nothing waiting.
    """
    stage_readers = readers(settings)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        offsets = await asyncio.gather(*(_committed(admin, r.group) for r in stage_readers))
        described = await admin.describe_topics([reader.topic for reader in stage_readers])
    finally:
        await admin.close()
    committed = {p: o for group in offsets for p, o in group.items()}
    partitions = [
        TopicPartition(topic["topic"], partition["partition"])
        for topic in described
        if not topic["error_code"]
        for partition in topic["partitions"]
    ]
    if not partitions:
        return stage_depths(stage_readers, {}, {}, 0)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        max_partition_fetch_bytes=FETCH_BYTES,
        fetch_max_bytes=FETCH_BYTES,
    )
    await consumer.start()
    try:
        consumer.assign(partitions)  # offsets of topics it has no metadata of wait ~2.5 s
        starts = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
        waiting = waiting_positions(committed, starts, ends)
        positions = {p: position for p, (position, _) in waiting.items()}
        oldest = await _first_timestamps(consumer, positions, OLDEST_WAIT_SECONDS)
    finally:
        await consumer.stop()
    return stage_depths(stage_readers, waiting, oldest, int(time.time() * 1000))


_measured: TtlCache[tuple[str, str], list[StageDepth]] = TtlCache(GAUGE_TTL_SECONDS)


async def current_stages(settings: Settings) -> list[StageDepth]:
    """The stage figures of the broker, measured at most once per ``GAUGE_TTL_SECONDS`` for a
    broker and prefix; callers at the same time share one measurement."""
    key = (settings.kafka_bootstrap, settings.topic_prefix)
    return await _measured.get(key, lambda: measure_stages(settings)) or []


async def retry_depths(pool: asyncpg.Pool) -> list[StageDepth]:
    """The retry stage per lane: attempts waiting in ``retry_schedule``, the first due, and how
    long the most overdue one has been due (held by a pause or not released yet)."""
    rows = {
        row["lane"]: row
        for row in await pool.fetch(
            "SELECT lane, count(*) AS depth, min(due_at) AS next_due_at,"
            " extract(epoch FROM greatest(now() - min(due_at), interval '0')) AS overdue"
            " FROM retry_schedule GROUP BY lane"
        )
    }
    return [
        StageDepth(
            stage=RETRY.name,
            lane=lane,
            depth=rows[lane.value]["depth"] if lane.value in rows else 0,
            oldest_seconds=float(rows[lane.value]["overdue"]) if lane.value in rows else 0.0,
            next_due_at=rows[lane.value]["next_due_at"] if lane.value in rows else None,
        )
        for lane in Lane
    ]


class SiteView(BaseModel):
    """One destination site as the senders see it, and the mail waiting for it."""

    site: str
    states: dict[str, str]
    """The shaping state per lane (``normal``, ``throttled``, ``slow``... as the senders say)."""
    in_flight: int
    waiting: dict[str, int]
    """Attempts waiting for the site, by why they wait (``deferred``, ``shaped``, ``paused``...)."""
    limits: dict[str, Any]
    rate_per_minute: float | None
    last_replies: list[Any]


Row = Mapping[str, Any] | asyncpg.Record


def site_views(snapshots: Iterable[Row], waiting: Iterable[Row]) -> list[SiteView]:
    """Sites from the senders' fresh snapshots (summed over senders; limits and replies of the
    latest) and the waiting counts, by site name."""
    latest: dict[str, Row] = {}
    states: dict[str, dict[str, str]] = defaultdict(dict)
    in_flight: dict[str, int] = defaultdict(int)
    rates: dict[str, float] = defaultdict(float)
    for row in sorted(snapshots, key=lambda row: row["updated_at"]):
        site = row["site"]
        latest[site] = row
        states[site][row["lane"]] = row["state"]
        in_flight[site] += row["in_flight"]
        rates[site] += row["rate_per_minute"] or 0.0
    waits: dict[str, dict[str, int]] = defaultdict(dict)
    for row in waiting:
        waits[row["site"]][row["reason"]] = row["count"]
    return [
        SiteView(
            site=site,
            states=states[site],
            in_flight=in_flight[site],
            waiting=waits[site],
            limits=latest[site]["limits"] if site in latest else {},
            rate_per_minute=rates[site] if site in latest else None,
            last_replies=latest[site]["last_replies"] if site in latest else [],
        )
        for site in sorted(set(latest) | set(waits))
    ]


async def read_sites(pool: asyncpg.Pool, tenant_id: str | None) -> list[SiteView]:
    """Every site the senders deliver to or mail waits for; a tenant (``tenant_id``) sees the
    sites its own mail waits for, with its own waiting counts."""
    waiting = await pool.fetch(
        "SELECT site, reason, count(*) AS count FROM retry_schedule"
        " WHERE site IS NOT NULL AND ($1::text IS NULL OR tenant_id = $1) GROUP BY site, reason",
        tenant_id,
    )
    snapshots = await pool.fetch(
        "SELECT site, lane, state, in_flight, limits, rate_per_minute, last_replies, updated_at"
        " FROM delivery_sites WHERE updated_at > now() - make_interval(secs => $1)"
        " AND ($2::boolean OR site = ANY($3::text[]))",
        SITE_FRESH_SECONDS,
        tenant_id is None,
        [row["site"] for row in waiting],
    )
    return site_views(snapshots, waiting)


SCHEDULED_DIMENSIONS = {
    "tenant": "tenant_id",
    "domain": "domain",
    "lane": "lane",
    "site": "site",
    "route": "route",
}
"""What scheduled retries can be grouped by, and the ``retry_schedule`` column of each."""
DEFAULT_GROUPING = ("tenant", "domain", "lane")


def grouping(text: str | None) -> tuple[str, ...]:
    """The dimensions of ``group_by`` (comma-separated); ValueError naming any unknown one."""
    if not text:
        return DEFAULT_GROUPING
    names = tuple(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    if unknown := [name for name in names if name not in SCHEDULED_DIMENSIONS]:
        raise ValueError(
            f"cannot group by {', '.join(unknown)}: choose from {', '.join(SCHEDULED_DIMENSIONS)}"
        )
    return names or DEFAULT_GROUPING


class ScheduledGroup(BaseModel):
    """Scheduled retries of one group (a dimension not grouped by is null) and one reason."""

    tenant_id: str | None = None
    domain: str | None = None
    lane: Lane | None = None
    site: str | None = None
    route: str | None = None
    reason: str
    waiting: int
    next_due_at: datetime


async def read_scheduled(
    pool: asyncpg.Pool, tenant_id: str | None, dimensions: Sequence[str]
) -> list[ScheduledGroup]:
    """Scheduled retries grouped by ``dimensions`` and the reason they wait, the biggest groups
    first (at most ``MAX_SCHEDULED_GROUPS``); a tenant's own only unless ``tenant_id`` is None."""
    columns = [SCHEDULED_DIMENSIONS[name] for name in dimensions] + ["reason"]
    listed = ", ".join(columns)
    rows = await pool.fetch(
        f"SELECT {listed}, count(*) AS waiting, min(due_at) AS next_due_at FROM retry_schedule"
        f" WHERE ($1::text IS NULL OR tenant_id = $1) GROUP BY {listed}"
        " ORDER BY waiting DESC, next_due_at LIMIT $2",
        tenant_id,
        MAX_SCHEDULED_GROUPS,
    )
    return [ScheduledGroup.model_validate(dict(row)) for row in rows]


async def read_controls_of(pool: asyncpg.Pool, tenant_id: str | None) -> list[QueueControl]:
    """The active controls a caller sees: a tenant those on it and those on every tenant."""
    return [
        control
        for control in await read_controls(pool)
        if tenant_id is None or control.scope.tenant_id in (None, tenant_id)
    ]


class QueueEvent(BaseModel):
    """One ``queue_events`` row: an operator's control or action, or a site's shaping change."""

    id: int
    at: datetime
    kind: str
    actor: str
    tenant_id: str | None
    scope: dict[str, Any]
    detail: dict[str, Any]


async def read_events(
    pool: asyncpg.Pool, tenant_id: str | None, since: datetime | None, limit: int
) -> list[QueueEvent]:
    """Queue events at or after ``since``, newest first; a tenant sees its own and the
    platform's (site changes, controls on every tenant), not other tenants'."""
    rows = await pool.fetch(
        "SELECT id, at, kind, actor, tenant_id, scope, detail FROM queue_events"
        " WHERE ($1::timestamptz IS NULL OR at >= $1)"
        " AND ($2::text IS NULL OR tenant_id = $2 OR tenant_id IS NULL)"
        " ORDER BY id DESC LIMIT $3",
        since,
        tenant_id,
        min(limit, MAX_EVENTS),
    )
    return [QueueEvent.model_validate(dict(row)) for row in rows]


class QueueOverview(BaseModel):
    """Everything the queue view shows at once."""

    at: datetime
    stages: list[StageDepth]
    sites: list[SiteView]
    scheduled: list[ScheduledGroup]
    """Scheduled retries by lane (and reason)."""
    controls: list[QueueControl]


async def read_overview(
    pool: asyncpg.Pool, settings: Settings, tenant_id: str | None
) -> QueueOverview:
    """The stages of the broker and of ``retry_schedule``, the sites, the scheduled retries by
    lane and the active controls, as ``tenant_id`` (None: an operator) sees them."""
    return QueueOverview(
        at=datetime.now(UTC),
        stages=[*await current_stages(settings), *await retry_depths(pool)],
        sites=await read_sites(pool, tenant_id),
        scheduled=await read_scheduled(pool, tenant_id, ("lane",)),
        controls=await read_controls_of(pool, tenant_id),
    )
