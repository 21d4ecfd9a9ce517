"""What this machine can do without Sendarix, measured in the same run: the pipeline's ceilings.

- SMTP: aiosmtplib hands messages of a pipeline message's size straight to the sink, over a few
  reused connections, as fast as the sink answers.
- Kafka, awaited: one aiokafka producer (acks=all, idempotent, linger 1 ms) shared by 32
  publishers that each await every record's ack before sending the next (as a handler that
  publishes one record at a time does), and one consumer in a group, committing each batch, move
  records of a send request's size through a 4-partition topic. Kafka's own perf tools, which
  pipeline, are in ``kafka_tools``.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import aiosmtplib
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from tqdm import tqdm

from tests.bench.measure import latency_summary
from tests.bench.sink import Sink

SMTP_CONNECTIONS = 4
"""As many as the sender keeps busy at once: one per lane."""
AWAITING_PUBLISHERS = 32
"""About as many as the stack's consumers, each publishing one record at a time. (A task per
record, all at once, stalls aiokafka: every waiter wakes whenever a batch drains.)"""


def megabytes_per_s(per_s: float, size: int) -> float:
    """MB/s (2**20 bytes, as Kafka's tools count) of ``per_s`` items of ``size`` bytes."""
    return round(per_s * size / 2**20, 2)


async def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    """A topic of this run's own for a baseline."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()


def raw_message(message_id: str, size: int) -> bytes:
    """A plain message of about ``size`` bytes, with the Message-ID the sink records."""
    head = (
        f"From: Acme Updates <updates@example.test>\r\nTo: someone@mail.example.com\r\n"
        f"Subject: Acme Cloud: 3 updates\r\nMessage-ID: <{message_id}@example.test>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
    )
    line = "Here is what changed in Acme Cloud since your last visit, line by line.\r\n"
    return (head + line * max(1, (size - len(head)) // len(line))).encode()


async def smtp_blast(sink: Sink, count: int, size: int) -> dict[str, Any]:
    """Hand ``count`` messages straight to the sink; messages/s from first MAIL to last 250."""
    run = uuid.uuid4().hex[:8]
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(count):
        queue.put_nowait(index)
    with tqdm(total=count, desc="baseline: raw SMTP", unit="msg", leave=False) as bar:

        async def connection() -> None:
            client = aiosmtplib.SMTP(hostname="127.0.0.1", port=sink.smtp_port, timeout=30)
            await client.connect()
            while not queue.empty():
                index = queue.get_nowait()
                await client.sendmail(
                    f"bounces+raw-{run}-{index}@example.test",
                    [f"user{index}@mail.example.com"],
                    raw_message(f"raw-{run}-{index}", size),
                )
                bar.update()
            await client.quit()

        started = time.perf_counter()
        await asyncio.gather(*(connection() for _ in range(SMTP_CONNECTIONS)))
        seconds = time.perf_counter() - started
    await sink.poll()
    arrived = sum(1 for index in range(count) if f"raw-{run}-{index}" in sink.received)
    return {
        "messages": count,
        "arrived": arrived,
        "message_bytes": size,
        "connections": SMTP_CONNECTIONS,
        "seconds": round(seconds, 2),
        "per_s": round(count / seconds, 1),
        "mb_per_s": megabytes_per_s(count / seconds, size),
    }


async def kafka_awaited(bootstrap: str, prefix: str, count: int, size: int) -> dict[str, Any]:
    """Produce ``count`` records from publishers that each await every record's ack before the
    next, and consume them back; records/s and produce-to-consume latency."""
    topic = f"{prefix}bench.baseline"
    await create_topic(bootstrap, topic, 4)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=1
    )
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"{prefix}bench-baseline",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await producer.start()
    await consumer.start()
    while not consumer.assignment():  # the group's join is not part of the figure
        await consumer.getmany(timeout_ms=200)
    padding = "x" * max(0, size - 40)
    latencies: list[float] = []
    try:
        with tqdm(total=count, desc="baseline: Kafka, awaited", unit="rec", leave=False) as bar:

            async def consume() -> None:
                while len(latencies) < count:
                    batches = await consumer.getmany(timeout_ms=500)
                    now = time.time_ns()
                    for records in batches.values():
                        for record in records:
                            assert record.value is not None
                            sent = json.loads(record.value)["t"]
                            latencies.append((now - sent) / 1e6)
                    if batches:
                        await consumer.commit()
                        bar.update(sum(len(records) for records in batches.values()))

            numbers = iter(range(count))

            async def publisher() -> None:
                for index in numbers:
                    value = json.dumps({"t": time.time_ns(), "n": index, "pad": padding}).encode()
                    await (await producer.send(topic, value, key=str(index).encode()))

            started = time.perf_counter()
            reading = asyncio.create_task(consume())
            await asyncio.gather(*(publisher() for _ in range(AWAITING_PUBLISHERS)))
            await asyncio.wait_for(reading, timeout=120)
            seconds = time.perf_counter() - started
    finally:
        await consumer.stop()
        await producer.stop()
    return {
        "records": count,
        "record_bytes": size,
        "publishers": AWAITING_PUBLISHERS,
        "seconds": round(seconds, 2),
        "per_s": round(count / seconds, 1),
        "mb_per_s": megabytes_per_s(count / seconds, size),
        "latency": latency_summary(latencies),
    }
