"""The edge alone: how fast each door accepts, how fast one send is answered, how fast the
message log is searched.

Acceptance is what a client waits for: the batch endpoint's answer, the ``accepted`` event of a
record produced to ``sendarix.send.requests`` (the intake has checked it and the broker holds the
message), the 202 of a single request. Delivery goes on behind it, on the same two cores, so
these figures include the pipeline's competition for CPU, as a busy platform would.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer

from libs.dkim_keys import new_dkim_key
from libs.events import TENANT_HEADER, TYPE_HEADER, header
from libs.topics import EVENTS, public_topic
from schemas.events import MessageState
from services.sender.dkim_signing import sign_message
from tests.bench.baselines import raw_message
from tests.bench.load import BATCH_SIZE, BATCHES_IN_FLIGHT, Accepted, Load, wait_delivered
from tests.bench.measure import latency_summary
from tests.bench.plans import Kind
from tests.bench.stack import BenchStack

ACCEPTED_TYPE = MessageState.ACCEPTED.event_type
EVENT_WAIT_SECONDS = 30.0
"""How long the topic phase waits for the next ``accepted`` event before it gives up."""
SEARCH_ROUNDS = 40
"""Times each search query is asked; its p99 is the worst but one of them at 40."""


async def batch_accept(load: Load, batches: int) -> tuple[dict[str, Any], list[Accepted]]:
    """Post ``batches`` full batches of bulk notices, ``BATCHES_IN_FLIGHT`` at a time."""
    slots = asyncio.Semaphore(BATCHES_IN_FLIGHT)
    accepted: list[Accepted] = []

    async def post() -> None:
        async with slots:
            accepted.extend(await load.post_batch([Kind.NOTICE] * BATCH_SIZE))

    started = time.monotonic()
    await asyncio.gather(*(post() for _ in range(batches)))
    seconds = time.monotonic() - started
    figures = {
        "messages": batches * BATCH_SIZE,
        "accepted": len(accepted),
        "seconds": round(seconds, 2),
        "accepted_per_s": round(len(accepted) / seconds, 1),
    }
    return figures, accepted


async def topic_accept(
    stack: BenchStack, load: Load, count: int
) -> tuple[dict[str, Any], list[Accepted]]:
    """Produce ``count`` records as fast as the producer goes; the time until the intake has
    reported the last of them ``accepted``."""
    consumer = AIOKafkaConsumer(
        public_topic(EVENTS, stack.settings.topic_prefix),
        bootstrap_servers=stack.settings.kafka_bootstrap,
        enable_auto_commit=False,
        group_id=None,
        auto_offset_reset="latest",
        fetch_max_wait_ms=100,
    )
    await consumer.start()
    try:
        partitions = list(consumer.assignment())
        for partition in partitions:  # fix the start before the first record is produced
            await consumer.position(partition)
        started = time.monotonic()
        records = [await load.produce(Kind.NOTICE) for _ in range(count)]
        produced = await asyncio.gather(*records)
        acked_at = time.monotonic() - started
        seen = await _accepted_events(consumer, load.tenant.id, count)
        seconds = time.monotonic() - started
    finally:
        await consumer.stop()
    accepted = [item for item in produced if item is not None]
    figures = {
        "messages": count,
        "acknowledged_by_broker_s": round(acked_at, 2),
        "accepted": seen,
        "seconds": round(seconds, 2),
        "accepted_per_s": round(seen / seconds, 1),
    }
    return figures, accepted


async def _accepted_events(consumer: AIOKafkaConsumer, tenant_id: str, count: int) -> int:
    """Read ``accepted`` events of the tenant until ``count`` arrived or none came for a while."""
    seen = 0
    last = time.monotonic()
    while seen < count and time.monotonic() - last < EVENT_WAIT_SECONDS:
        batches = await consumer.getmany(timeout_ms=500, max_records=5000)
        for records in batches.values():
            for record in records:
                headers = list(record.headers)
                if (
                    header(headers, TYPE_HEADER) == ACCEPTED_TYPE
                    and header(headers, TENANT_HEADER) == tenant_id
                ):
                    seen += 1
                    last = time.monotonic()
    return seen


async def single_latency(
    load: Load, rate: float, seconds: float
) -> tuple[dict[str, Any], list[Accepted]]:
    """``POST /v1/messages`` of one notice each, ``rate`` a second for ``seconds`` (open loop:
    a slow answer never delays the next request); the time to each answer."""
    latencies_ms: list[float] = []
    accepted: list[Accepted] = []

    async def one() -> None:
        began = time.perf_counter()
        if (answer := await load.post_one(Kind.NOTICE)) is not None:
            latencies_ms.append((time.perf_counter() - began) * 1000)
            accepted.append(answer)

    started = time.monotonic()
    total = int(rate * seconds)
    async with asyncio.TaskGroup() as group:
        for index in range(total):
            if (ahead := started + index / rate - time.monotonic()) > 0:
                await asyncio.sleep(ahead)
            group.create_task(one())
    figures = {
        "offered_per_s": rate,
        "requests": total,
        "answered_202": len(latencies_ms),
        "latency": latency_summary(latencies_ms),
    }
    return figures, accepted


SEED_MESSAGES = """
INSERT INTO messages (id, tenant_id, trace_id, status, lane, stream, category, sender, recipient,
                      subject, template, tags, metadata, accepted_at, updated_at)
SELECT gen_random_uuid(), $1, md5(i::text),
       (ARRAY['delivered','delivered','delivered','bounced','deferred','accepted'])[1 + i % 6],
       'bulk', (ARRAY['transactional','broadcast'])[1 + i % 2],
       (ARRAY['notification','billing','otp'])[1 + i % 3],
       'notices@example.test', 'user' || (i % 250000) || '@mail.example.com', 'Your update',
       'bench-notice', ARRAY['tag' || (i % 40)], jsonb_build_object('order', (i % 200000)::text),
       now() - make_interval(secs => i), now() - make_interval(secs => i)
FROM generate_series(1, $2) AS i
"""
"""Messages as the recorder leaves them: a recipient has 4 of them, a tag 1 in 40, an order
id 5; one a second, going back in time."""

SEARCHES: dict[str, dict[str, Any]] = {
    "newest page": {},
    "recipient": {"recipient": "user4242@mail.example.com"},
    "status bounced": {"status": "bounced"},
    "tag": {"tag": "tag7"},
    "category + stream": {"category": "billing", "stream": "broadcast"},
    "one hour, a day ago": {"since": -90000, "until": -86400},
}
"""The queries timed: parameters of ``GET /v1/messages`` (times in seconds from now)."""


async def search_latency(stack: BenchStack, load_for: type[Load], rows: int) -> dict[str, Any]:
    """Fill a fresh tenant's log with ``rows`` messages, then time each search and the second
    page of the newest; the rows are removed afterwards."""
    tenant = await stack.add_tenant()
    load = load_for(stack, tenant)
    began = time.monotonic()
    await stack.pool.execute(SEED_MESSAGES, uuid.UUID(tenant.id), rows, timeout=1800)
    await stack.pool.execute("ANALYZE messages", timeout=600)
    figures: dict[str, Any] = {"rows": rows, "seed_s": round(time.monotonic() - began, 1)}
    try:
        queries: dict[str, Any] = {}
        for name, params in SEARCHES.items():
            queries[name] = await _timed_search(load, absolute_times(params))
        first = await load.get("/v1/messages", {"limit": 50}) or {}
        if cursor := first.get("next_cursor"):
            queries["second page"] = await _timed_search(load, {"cursor": cursor, "limit": 50})
        figures["queries"] = queries
    finally:
        await load.close()
        await stack.pool.execute(
            "DELETE FROM messages WHERE tenant_id = $1", uuid.UUID(tenant.id), timeout=1800
        )
        # now, not by autovacuum in the middle of the next scenario's measurements
        await stack.pool.execute("VACUUM (ANALYZE) messages", timeout=1800)
    return figures


def absolute_times(params: dict[str, Any]) -> dict[str, Any]:
    """Query parameters with times (seconds from now) as RFC 3339 instants."""
    now = time.time()
    return {
        name: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + value))
        if name in ("since", "until")
        else value
        for name, value in params.items()
    }


async def _timed_search(load: Load, params: dict[str, Any]) -> dict[str, Any]:
    """Ask one search ``SEARCH_ROUNDS`` times: latency percentiles and how many it found."""
    latencies_ms: list[float] = []
    found = 0
    for _ in range(SEARCH_ROUNDS):
        began = time.perf_counter()
        answer = await load.get("/v1/messages", params)
        latencies_ms.append((time.perf_counter() - began) * 1000)
        found = len(answer.get("messages", [])) if answer else -1
    return {"found_on_page": found, "latency": latency_summary(latencies_ms)}


DKIM_MESSAGES = 500
"""Messages signed to time DKIM alone."""


def dkim_cost(count: int = DKIM_MESSAGES, size: int = 2048) -> dict[str, Any]:
    """CPU per message of the sender's DKIM signing (RSA 2048, relaxed/relaxed) of a message
    of ``size`` bytes, timed in this process: the share of the sender's CPU it takes."""
    key = new_dkim_key(datetime.now(UTC))
    messages = [raw_message(f"dkim-{n}", size) for n in range(count)]
    began = time.process_time()
    for message in messages:
        sign_message(message, "example.test", key)
    return {
        "messages": count,
        "bytes": size,
        "cpu_ms_per_message": round((time.process_time() - began) * 1000 / count, 3),
    }


async def edge(
    stack: BenchStack,
    load: Load,
    batches: int,
    topic_records: int,
    single_rate: float,
    search_rows: int,
) -> dict[str, Any]:
    """Every edge figure: each door's accept rate, single-send latency, search latency."""
    results: dict[str, Any] = {"dkim": dkim_cost()}
    results["batch"], accepted = await batch_accept(load, batches)
    await wait_delivered(stack, accepted, "edge: batch delivered")
    results["topic"], accepted = await topic_accept(stack, load, topic_records)
    await wait_delivered(stack, accepted, "edge: topic delivered")
    results["single"], accepted = await single_latency(load, single_rate, 20.0)
    await wait_delivered(stack, accepted, "edge: singles delivered")
    if search_rows:
        results["search"] = await search_latency(stack, Load, search_rows)
    return results
