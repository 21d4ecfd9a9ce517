"""The delivery scenario (issue 11): what one sender process delivers, and whether a destination
that answers slowly holds up anyone else's mail in the same lane.

Delivery jobs are produced straight to ``deliver.<lane>`` (the stages before the sender are
measured by the other scenarios), routed to the fast sink; the sender signs, claims and hands
over each one as it would any message, with the whole stack beside it.

- **throughput**: ``jobs`` jobs in the bulk lane at once; deliveries per second from the first
  produce to the last arrival at the sink, and the sender's CPU per delivery;
- **head of line**: jobs at a steady ``rate`` in the normal lane for ``seconds``, each one's
  latency from its production to its arrival (one clock: both ends run here); then the same
  flow again beside jobs in the same lane for a second sink that answers ``RCPT TO`` only after
  30 s, one a second. The fast jobs' p99 beside the slow destination, against the p99 alone.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaProducer

from deploy.stack.profiles import BENCH
from libs.topics import DELIVER
from schemas.common import Lane, Mailbox
from schemas.pipeline import DeliveryJob, MessageSpec, RenderedContent, Route, RouteKind
from tests.bench.measure import ProcessSampler, latency_summary
from tests.bench.sink import Sink
from tests.bench.stack import SENDER_DOMAIN, BenchStack

SLOW_SMTP_PORT = BENCH.mailpit_smtp_port + 3
SLOW_HTTP_PORT = BENCH.mailpit_smtp_port + 4
SLOW_ANSWER_SECONDS = 30.0
SLOW_PER_SECOND = 1
RATE_GOAL_PER_S = 1500
P99_TOLERANCE = 1.10
"""Issue 11: other destinations' p99 beside a slow one stays within 10 % of their p99 alone."""
CONTENT = RenderedContent(
    subject="Your receipt for order 1042",
    html="<p>Thanks for your order.</p><p>Total: <b>$42.00</b></p>" * 8,
    text="Thanks for your order. Total: $42.00\n" * 8,
)


def _job(tenant_id: str, lane: Lane, port: int, number: int) -> DeliveryJob:
    now = datetime.now(UTC)
    spec = MessageSpec(
        message_id=str(uuid.uuid4()),
        tenant_id=tenant_id,
        trace_id=uuid.uuid4().hex,
        accepted_at=now,
        sender=Mailbox(address=f"receipts@{SENDER_DOMAIN}", name="Example Shop"),
        recipient=Mailbox(address=f"customer{number}@port{port}.example.org"),
        category="receipt",
        lane=lane,
    )
    route = Route(
        name="default-relay", kind=RouteKind.RELAY, host="127.0.0.1", port=port, pool="bulk"
    )
    return DeliveryJob(
        message=spec, content=CONTENT, route=route, attempt=1, retry_until=now + timedelta(days=2)
    )


class Feeder:
    """Produces delivery jobs to the sender's topics, noting when each one was produced."""

    def __init__(self, stack: BenchStack) -> None:
        self.stack = stack
        self.producer = AIOKafkaProducer(
            bootstrap_servers=stack.settings.kafka_bootstrap, linger_ms=5, acks="all"
        )
        self.sent: dict[str, int] = {}
        """Message id -> when it was produced (ns since the epoch)."""
        self._number = 0

    async def feed(self, lane: Lane, port: int, count: int) -> list[str]:
        """Produce ``count`` jobs for the sink on ``port`` (without waiting for each); their ids."""
        topic = DELIVER.topic(lane, self.stack.settings.topic_prefix)
        ids = []
        pending = []
        for _ in range(count):
            self._number += 1
            job = _job(self.stack.tenant.id, lane, port, self._number)
            message_id = job.message.message_id
            self.sent[message_id] = time.time_ns()
            pending.append(
                await self.producer.send(
                    topic, job.model_dump_json().encode(), key=message_id.encode()
                )
            )
            ids.append(message_id)
        await asyncio.gather(*pending)
        return ids


async def _arrived(sink: Sink, ids: list[str], timeout: float) -> dict[str, int]:
    """When each of ``ids`` arrived at ``sink``, once all did or ``timeout`` passed."""
    deadline = time.monotonic() + timeout
    while True:
        await sink.poll()
        if all(i in sink.received for i in ids) or time.monotonic() > deadline:
            return {i: sink.received[i] for i in ids if i in sink.received}
        await asyncio.sleep(0.2)


def _latencies_ms(feeder: Feeder, arrived: dict[str, int]) -> list[float]:
    return [(ns - feeder.sent[i]) / 1e6 for i, ns in arrived.items()]


async def _steady(
    feeder: Feeder, rate: int, seconds: int, slow: Sink | None
) -> tuple[list[str], list[str]]:
    """A steady flow to the fast sink in the normal lane, and to ``slow`` one job a second."""
    fast: list[str] = []
    slow_ids: list[str] = []
    tick = 0.1
    began = time.monotonic()
    for step in range(int(seconds / tick)):
        fast += await feeder.feed(Lane.NORMAL, feeder.stack.sink.smtp_port, int(rate * tick))
        if slow is not None and step % int(1 / (tick * SLOW_PER_SECOND)) == 0:
            slow_ids += await feeder.feed(Lane.NORMAL, slow.smtp_port, 1)
        await asyncio.sleep(max(0.0, began + (step + 1) * tick - time.monotonic()))
    return fast, slow_ids


async def delivery(
    stack: BenchStack, sampler: ProcessSampler, jobs: int, rate: int, seconds: int
) -> dict[str, Any]:
    """The throughput of the sender and the head-of-line figures; see the module's docstring."""
    feeder = Feeder(stack)
    slow = Sink(SLOW_SMTP_PORT, SLOW_HTTP_PORT, SLOW_ANSWER_SECONDS, name="smtpsink-slow")
    slow.start(stack.supervisor)
    await feeder.producer.start()
    try:
        await stack.supervisor.wait_ready("smtpsink-slow", port=SLOW_HTTP_PORT)
        warm = await feeder.feed(Lane.BULK, stack.sink.smtp_port, 20)
        await _arrived(stack.sink, warm, timeout=120)
        began = time.monotonic()
        first = time.time_ns()
        ids = await feeder.feed(Lane.BULK, stack.sink.smtp_port, jobs)
        arrived = await _arrived(stack.sink, ids, timeout=600)
        ended = time.monotonic()
        last = max(arrived.values(), default=first)
        cpu = sampler.window(began, ended).get("sender", {}).get("cpu_s")
        throughput = {
            "jobs": jobs,
            "delivered": len(arrived),
            "deliveries_per_s": round(len(arrived) / max((last - first) / 1e9, 1e-9), 1),
            "sender_cpu_ms_per_delivery": round(1000 * cpu / len(arrived), 3)
            if cpu and arrived
            else None,
        }
        alone, _ = await _steady(feeder, rate, seconds, None)
        alone_arrived = await _arrived(stack.sink, alone, timeout=120)
        beside, slow_ids = await _steady(feeder, rate, seconds, slow)
        beside_arrived = await _arrived(stack.sink, beside, timeout=120)
        slow_arrived = await _arrived(slow, slow_ids, timeout=4 * SLOW_ANSWER_SECONDS)
    finally:
        await feeder.producer.stop()
        await slow.close()
        stack.supervisor.stop("smtpsink-slow")
    return {
        "throughput": throughput,
        "head_of_line": {
            "rate_per_s": rate,
            "seconds": seconds,
            "slow_answer_seconds": SLOW_ANSWER_SECONDS,
            "alone": latency_summary(_latencies_ms(feeder, alone_arrived)),
            "beside_slow": latency_summary(_latencies_ms(feeder, beside_arrived)),
            "slow_jobs": len(slow_ids),
            "slow_delivered": len(slow_arrived),
        },
    }


def delivery_goals(figures: dict[str, Any] | None) -> list[tuple[bool, str]]:
    """Issue 11's goals for the delivery scenario."""
    if not figures:
        return []
    rate = figures["throughput"]["deliveries_per_s"]
    hol = figures["head_of_line"]
    alone, beside = hol["alone"].get("p99_ms"), hol["beside_slow"].get("p99_ms")
    within = alone is not None and beside is not None and beside <= P99_TOLERANCE * alone
    return [
        (
            rate >= RATE_GOAL_PER_S,
            f"deliveries/s of one sender to the fast sink >= {RATE_GOAL_PER_S}: {rate}",
        ),
        (
            within,
            f"p99 of other destinations beside one answering after {hol['slow_answer_seconds']:g}"
            f" s within 10 % of alone: {beside} ms vs {alone} ms",
        ),
    ]


def delivery_report(figures: dict[str, Any]) -> str:
    """The delivery scenario's figures, for the terminal and docs/benchmarks.md."""
    through, hol = figures["throughput"], figures["head_of_line"]
    alone, beside = hol["alone"], hol["beside_slow"]
    return (
        f"delivery: one sender delivered {through['delivered']:,}/{through['jobs']:,} bulk jobs at"
        f" {through['deliveries_per_s']}/s ({through['sender_cpu_ms_per_delivery']} ms of the"
        f" sender's CPU each); at {hol['rate_per_s']}/s in the normal lane, produce → sink"
        f" p50/p99 {alone.get('p50_ms')}/{alone.get('p99_ms')} ms alone and"
        f" {beside.get('p50_ms')}/{beside.get('p99_ms')} ms beside a destination answering after"
        f" {hol['slow_answer_seconds']:g} s ({hol['slow_delivered']}/{hol['slow_jobs']} of its"
        " jobs delivered)"
    )
