"""The aggregate tables this service owns: adding a batch to them once, and their retention.

A batch is added in one transaction that also moves ``analytics_offsets`` past it. The offset
rows are locked first, so a record redelivered after a crash (or read by two processes during a
rebalance) is found at or below its partition's offset and skipped: counts never double.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

import asyncpg

from libs.analytics import DIMENSIONS, Granularity
from libs.batch import Consumed
from libs.database import Connection
from services.analytics.aggregate import Tally

T = TypeVar("T")
_DIMENSION_COLUMNS = ", ".join(DIMENSIONS)
_DIMENSION_ARRAYS = ", ".join(f"${n}::text[]" for n in range(4, 4 + len(DIMENSIONS)))
_REST = f"granularity, bucket, {_DIMENSION_COLUMNS}, event_type, reason, count"
_REST_BINS = f"granularity, bucket, {_DIMENSION_COLUMNS}, bin, count"


async def unseen(connection: Connection, batch: Sequence[Consumed[T]]) -> list[Consumed[T]]:
    """The records of ``batch`` not added yet; locks their partitions' offsets until commit."""
    partitions = sorted({(item.raw.topic, item.raw.partition) for item in batch})
    if not partitions:
        return []
    rows = await connection.fetch(
        "INSERT INTO analytics_offsets (topic, partition, last_offset)"
        " SELECT topic, partition, -1 FROM unnest($1::text[], $2::int[]) AS p (topic, partition)"
        " ON CONFLICT (topic, partition) DO UPDATE SET last_offset = analytics_offsets.last_offset"
        " RETURNING topic, partition, last_offset",
        [topic for topic, _ in partitions],
        [partition for _, partition in partitions],
    )
    done = {(row["topic"], row["partition"]): row["last_offset"] for row in rows}
    return [item for item in batch if item.raw.offset > done[(item.raw.topic, item.raw.partition)]]


async def add_tally(connection: Connection, tally: Tally) -> None:
    """Add the batch's counts and latency bins: one statement per table."""
    if tally.counts:
        await connection.execute(
            f"INSERT INTO analytics_counts (tenant_id, granularity, bucket, {_DIMENSION_COLUMNS},"
            " event_type, reason, count)"
            f" SELECT tenant::uuid, {_REST} FROM unnest($1::text[], $2::text[],"
            f" $3::timestamptz[], {_DIMENSION_ARRAYS}, $10::text[], $11::text[], $12::bigint[])"
            f" AS u (tenant, {_REST})"
            " ON CONFLICT (tenant_id, granularity, bucket, stream, lane, category, template,"
            " variant, recipient_domain, event_type, reason)"
            " DO UPDATE SET count = analytics_counts.count + EXCLUDED.count",
            *_columns(tally.counts),
        )
    if tally.latency:
        await connection.execute(
            f"INSERT INTO analytics_latency (tenant_id, granularity, bucket, {_DIMENSION_COLUMNS},"
            " bin, count)"
            f" SELECT tenant::uuid, {_REST_BINS} FROM unnest($1::text[], $2::text[],"
            f" $3::timestamptz[], {_DIMENSION_ARRAYS}, $10::smallint[], $11::bigint[])"
            f" AS u (tenant, {_REST_BINS})"
            " ON CONFLICT (tenant_id, granularity, bucket, stream, lane, category, template,"
            " variant, recipient_domain, bin)"
            " DO UPDATE SET count = analytics_latency.count + EXCLUDED.count",
            *_columns(tally.latency),
        )


def _columns(counted: Mapping[tuple[Any, ...], int]) -> list[list[Any]]:
    """Counted keys and their counts as one list per column (for ``unnest``), in key order so
    that two processes adding to the same rows lock them in the same order."""
    rows = [(*key, count) for key, count in sorted(counted.items())]
    return [list(column) for column in zip(*rows, strict=True)]


async def advance_offsets(connection: Connection, batch: Sequence[Consumed[T]]) -> None:
    """Record that the batch's records are added (the offset rows are locked by ``unseen``)."""
    last: dict[tuple[str, int], int] = {}
    for item in batch:
        where = (item.raw.topic, item.raw.partition)
        last[where] = max(last.get(where, -1), item.raw.offset)
    await connection.execute(
        "UPDATE analytics_offsets o SET last_offset = greatest(o.last_offset, l.last_offset)"
        " FROM unnest($1::text[], $2::int[], $3::bigint[]) AS l (topic, partition, last_offset)"
        " WHERE o.topic = l.topic AND o.partition = l.partition",
        [topic for topic, _ in last],
        [partition for _, partition in last],
        list(last.values()),
    )


async def accepted_times(connection: Connection, message_ids: Sequence[str]) -> dict[str, datetime]:
    """When each of these messages was accepted, as the message log has it."""
    ids = []
    for message_id in message_ids:
        try:
            ids.append(uuid.UUID(message_id))
        except ValueError:
            continue
    if not ids:
        return {}
    rows = await connection.fetch(
        "SELECT id, accepted_at FROM messages WHERE id = ANY($1::uuid[])", ids
    )
    return {str(row["id"]): row["accepted_at"] for row in rows}


async def drop_expired(
    pool: asyncpg.Pool, keep: dict[Granularity, timedelta], now: datetime
) -> int:
    """Delete the buckets older than their granularity's retention; the rows deleted."""
    deleted = 0
    for table in ("analytics_counts", "analytics_latency"):
        for granularity, kept in keep.items():
            status = await pool.execute(
                f"DELETE FROM {table} WHERE granularity = $1 AND bucket < $2",
                granularity.value,
                now - kept,
            )
            deleted += int(status.split()[-1])
    return deleted
