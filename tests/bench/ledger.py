"""What one delivered message costs the stack, as the broker, the database and Jaeger count it.

Read before and after a phase, once the pipeline has settled (every consumer group of the run
has committed all it was given, then PostgreSQL's backends have flushed their statistics):

- records: the end offsets of every topic of this run's prefix, summed (every produce);
- offset commits: the end offsets of ``__consumer_offsets``, summed over all its partitions. A
  commit appends one record per partition it commits, so this counts partition-commits (group
  joins and leaves add a few records too);
- transactions and rows: ``pg_stat_database`` of ``sendarix`` (``xact_commit``, ``tup_*``);
- spans: the traces of a sample of delivered messages, from Jaeger's query API. A trace may hold
  several messages (a batch request's messages share its trace), so a trace's spans are divided
  by the messages in it (the distinct ``sendarix.message_id`` of its spans).

The idle stack's own rate of each counter (its pollers) is measured too, and its share of each
figure is shown beside it.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from libs.settings import Settings
from tests.bench.load import Accepted, Load
from tests.bench.measure import evenly

CONSUMER_OFFSETS = "__consumer_offsets"
PG_STATS_FLUSH_SECONDS = 11.0
"""An idle PostgreSQL backend reports its statistics at most 10 s after its last transaction."""
SETTLE_SECONDS = 90.0
"""How long the run's consumer groups get to catch up before the counters are read anyway."""
SPAN_SAMPLE = 20
"""Delivered messages whose traces are read from Jaeger."""
PG_STATS = (
    "SELECT xact_commit, tup_inserted, tup_updated, tup_deleted"
    " FROM pg_stat_database WHERE datname = 'sendarix'"
)


@dataclass(frozen=True)
class Counters:
    """The stack's work so far, in the broker's and the database's own counts."""

    records: int
    offset_commits: int
    transactions: int
    rows_inserted: int
    rows_updated: int
    rows_deleted: int

    def __sub__(self, earlier: Counters) -> Counters:
        return Counters(
            *(getattr(self, f.name) - getattr(earlier, f.name) for f in fields(Counters))
        )


def per_second(spent: Counters, seconds: float) -> dict[str, float]:
    """Each counter's rate, e.g. of the idle stack."""
    return {name: round(value / seconds, 3) for name, value in asdict(spent).items()}


def ledger(
    spent: Counters, delivered: int, seconds: float, idle_per_s: dict[str, float] | None
) -> dict[str, dict[str, float]]:
    """Each counter in total and per delivered message, and the part of that per-message
    figure the idle stack would have spent anyway in the same ``seconds``."""
    return {
        name: {
            "total": value,
            "per_message": round(value / delivered, 3),
            "idle_per_message": round((idle_per_s or {}).get(name, 0.0) * seconds / delivered, 3),
        }
        for name, value in asdict(spent).items()
    }


def sum_offsets(ends: dict[TopicPartition, int], topic: Callable[[str], bool]) -> int:
    """The end offsets of the partitions whose topic passes ``topic``, summed."""
    return sum(offset for partition, offset in ends.items() if topic(partition.topic))


async def read_counters(settings: Settings, pool: asyncpg.Pool) -> Counters:
    """The counters now."""
    ends = await _end_offsets(settings, lambda topic: True)
    row = await pool.fetchrow(PG_STATS)
    assert row is not None
    return Counters(
        records=sum_offsets(ends, lambda topic: topic.startswith(settings.topic_prefix)),
        offset_commits=sum_offsets(ends, lambda topic: topic == CONSUMER_OFFSETS),
        transactions=row["xact_commit"],
        rows_inserted=row["tup_inserted"],
        rows_updated=row["tup_updated"],
        rows_deleted=row["tup_deleted"],
    )


async def _end_offsets(
    settings: Settings, wanted: Callable[[str], bool]
) -> dict[TopicPartition, int]:
    """The end offset of every partition of this run's topics and of ``__consumer_offsets``
    whose topic is ``wanted``."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics()
    finally:
        await admin.close()
    partitions = [
        TopicPartition(topic["topic"], partition["partition"])
        for topic in described
        if (topic["topic"].startswith(settings.topic_prefix) or topic["topic"] == CONSUMER_OFFSETS)
        and wanted(topic["topic"])
        for partition in topic["partitions"]
    ]
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    await consumer.start()
    try:
        ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    return ends


def behind(committed: dict[TopicPartition, int], ends: dict[TopicPartition, int]) -> int:
    """How many records a group has yet to commit, over the partitions it ever committed."""
    return sum(max(0, ends.get(partition, 0) - offset) for partition, offset in committed.items())


async def _backlog(settings: Settings) -> int:
    """Records the run's services have not committed yet, over all their groups.

    The groups' offsets are read before the end offsets: a record produced and committed in
    between then shows as not yet consumed, never the other way round.
    """
    ours = f"{settings.topic_prefix}sendarix-"
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        groups = [
            group for group, _ in await admin.list_consumer_groups() if group.startswith(ours)
        ]
        committed: list[dict[TopicPartition, int]] = []
        for group in groups:
            offsets = await admin.list_consumer_group_offsets(group)
            committed.append({partition: meta.offset for partition, meta in offsets.items()})
    finally:
        await admin.close()
    topics = {partition.topic for offsets in committed for partition in offsets}
    ends = await _end_offsets(settings, topics.__contains__)
    return sum(behind(offsets, ends) for offsets in committed)


async def settled(
    settings: Settings, pool: asyncpg.Pool, within: float = SETTLE_SECONDS
) -> Counters:
    """The counters once the run's consumer groups have caught up (or ``within`` s passed) and
    PostgreSQL's statistics are flushed."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not await _backlog(settings):
            break
        await asyncio.sleep(1.0)
    await asyncio.sleep(PG_STATS_FLUSH_SECONDS)
    return await read_counters(settings, pool)


def trace_spans(trace: dict[str, Any]) -> tuple[int, int, Counter[str]]:
    """A Jaeger trace's spans, the messages in it, and its spans per service."""
    services = {key: process["serviceName"] for key, process in trace["processes"].items()}
    messages = {
        tag["value"]
        for span in trace["spans"]
        for tag in span.get("tags", [])
        if tag["key"] == "sendarix.message_id"
    }
    by_service = Counter(services.get(span["processID"], "?") for span in trace["spans"])
    return len(trace["spans"]), max(1, len(messages)), by_service


def spans_per_message(traces: list[dict[str, Any]]) -> dict[str, Any]:
    """The mean spans per message over sampled messages' traces (one trace per sample)."""
    if not traces:
        return {"sampled": 0}
    total = 0.0
    by_service: dict[str, float] = {}
    for trace in traces:
        spans, messages, services = trace_spans(trace)
        total += spans / messages
        for service, count in services.items():
            by_service[service] = by_service.get(service, 0.0) + count / messages
    return {
        "sampled": len(traces),
        "per_message": round(total / len(traces), 2),
        "by_service": {
            service: round(share / len(traces), 2)
            for service, share in sorted(by_service.items(), key=lambda item: -item[1])
        },
    }


async def sampled_traces(
    jaeger_url: str, load: Load, delivered: list[Accepted], count: int = SPAN_SAMPLE
) -> list[dict[str, Any]]:
    """The Jaeger traces of ``count`` delivered messages; a message through the topic has its
    trace id looked up with ``GET /v1/messages/{id}``."""
    found: list[dict[str, Any]] = []
    async with httpx.AsyncClient(base_url=jaeger_url, timeout=60) as jaeger:
        for item in evenly(delivered, count):
            trace_id = item.trace_id
            if trace_id is None:
                view = await load.get(f"/v1/messages/{item.message_id}")
                trace_id = view["trace_id"] if view else None
            if trace_id is None:
                continue
            response = await jaeger.get(f"/api/traces/{trace_id}")
            if response.status_code == 200 and (data := response.json().get("data")):
                found.append(data[0])
    return found
