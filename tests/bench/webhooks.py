"""The webhooks scenario: events produced to ``sendarix.events`` → the webhook service → a
healthy endpoint, while another tenant's endpoint is black-holed and a third's answers 500.

Two phases, both beside the failing and the black-holed endpoint: a steady flow well below
capacity (``STEADY_RATE`` events/s) measures each event's latency from its production to its
arrival at the receiver (one clock: both ends run on this machine); then a burst of ``events``
produced at once measures deliveries per second end to end (from the first event produced to
the last one received). A burst's own latencies would only measure its queue.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

from libs.events import event_headers
from libs.settings import REPO_ROOT
from libs.tenants import create_tenant
from libs.topics import EVENTS, public_topic
from libs.webhook_endpoints import EndpointFields, create_endpoint, delete_endpoint
from libs.webhook_targets import TargetGuard
from schemas.events import DeliveryEvent, EventData, MessageState, delivery_event
from tests.bench.measure import latency_summary
from tests.bench.stack import BenchStack
from tests.support import black_hole, eventually

RECEIVER_PORT = 18480
RATE_GOAL_PER_S = 1000
P99_GOAL_MS = 1000.0
NOISY_EVENTS = 500
"""Events for the failing and the black-holed endpoint each (their retries go on meanwhile)."""
STEADY_RATE = 200
STEADY_SECONDS = 15


def _event(tenant_id: str) -> DeliveryEvent:
    data = EventData(
        message_id=str(uuid.uuid4()),
        tenant_id=tenant_id,
        recipient="user@example.org",
        trace_id=uuid.uuid4().hex,
        service="sender",
    )
    return delivery_event(MessageState.DELIVERED, data, datetime.now(UTC))


async def _stats(http: httpx.AsyncClient) -> dict[str, Any]:
    answer: dict[str, Any] = (await http.get("/stats")).json()
    return answer


async def webhooks(stack: BenchStack, events: int, timeout: float = 180.0) -> dict[str, Any]:
    """Produce ``events`` for the healthy endpoint (and noise for the others); the figures."""
    stack.supervisor.start(
        "webhook-receiver",
        [sys.executable, "-m", "tests.bench.webhook_receiver", str(RECEIVER_PORT)],
        cwd=REPO_ROOT,
    )
    await stack.supervisor.wait_ready("webhook-receiver", port=RECEIVER_PORT)
    guard = TargetGuard(stack.settings)
    base = f"http://127.0.0.1:{RECEIVER_PORT}"
    tenants = [
        (await create_tenant(stack.pool, f"hooks-{i}", [], dev_mode=True))[0].id for i in range(3)
    ]
    producer = AIOKafkaProducer(bootstrap_servers=stack.settings.kafka_bootstrap, linger_ms=5)
    await producer.start()
    topic = public_topic(EVENTS, stack.settings.topic_prefix)

    async def produce(tenant_id: str, count: int, sent: dict[str, float] | None = None) -> None:
        """Produce ``count`` events of the tenant, noting when each was sent in ``sent``."""
        for _ in range(count):
            event = _event(tenant_id)
            if sent is not None:
                sent[event.id] = time.time()
            await producer.send(
                topic,
                event.model_dump_json().encode(),
                key=event.subject.encode(),
                headers=event_headers(event),
            )

    endpoints = []
    try:
        async with black_hole() as hole, httpx.AsyncClient(base_url=base) as http:
            healthy, failing, holed = tenants
            for tenant_id, url in (
                (healthy, f"{base}/ok"),
                (failing, f"{base}/fail"),
                (holed, hole),
            ):
                fields = EndpointFields(url=url)
                endpoints.append(await create_endpoint(stack.pool, guard, tenant_id, fields))
            await asyncio.sleep(6)  # the service's endpoint cache forgets "no endpoint" in 5 s
            await produce(healthy, 1)
            await producer.flush()

            async def warm() -> bool | None:
                return True if (await _stats(http))["arrived"] else None

            await eventually(warm, timeout=60)
            await produce(failing, NOISY_EVENTS)
            await produce(holed, NOISY_EVENTS)
            steady: dict[str, float] = {}
            before = (await _stats(http))["arrived"]
            for _ in range(STEADY_SECONDS * 10):
                await produce(healthy, STEADY_RATE // 10, steady)
                await asyncio.sleep(0.1)
            await producer.flush()
            steady_arrived = await _arrivals(http, steady, before, timeout)
            burst: dict[str, float] = {}
            before = (await _stats(http))["arrived"]
            first = time.time()
            await produce(healthy, events, burst)
            await producer.flush()
            arrived = await _arrivals(http, burst, before, timeout)
            failing_posts = (await _stats(http))["posts"]["fail"]
    finally:
        await producer.stop()
        for endpoint in endpoints:
            await delete_endpoint(stack.pool, endpoint.tenant_id, endpoint.id)
        stack.supervisor.stop("webhook-receiver")
    last = max(arrived.values(), default=first)
    return {
        "events": events,
        "received": len(arrived),
        "failing_posts": failing_posts,
        "deliveries_per_s": round(len(arrived) / max(last - first, 1e-9)),
        "steady": {
            "rate_per_s": STEADY_RATE,
            "events": len(steady),
            "received": len(steady_arrived),
            "latency": latency_summary(
                [1000 * (steady_arrived[k] - steady[k]) for k in steady_arrived]
            ),
        },
    }


async def _arrivals(
    http: httpx.AsyncClient, sent: dict[str, float], before: int, timeout: float
) -> dict[str, float]:
    """When each event of ``sent`` arrived at the healthy endpoint, once all did (or ``timeout``
    passed): the receiver's count (``before`` when the first was sent) is polled, its notes read
    once."""
    deadline = time.monotonic() + timeout
    while True:
        if (await _stats(http))["arrived"] - before >= len(sent) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    arrivals: dict[str, float] = (await http.get("/arrivals")).json()
    return {k: v for k, v in arrivals.items() if k in sent}


def webhooks_goals(figures: dict[str, Any] | None) -> list[tuple[bool, str]]:
    """The issue's goals for the webhooks scenario."""
    if not figures:
        return []
    steady = figures["steady"]
    rate, p99 = figures["deliveries_per_s"], steady["latency"].get("p99_ms")
    return [
        (
            figures["received"] == figures["events"] and steady["received"] == steady["events"],
            f"every webhook delivered: {figures['received'] + steady['received']}"
            f"/{figures['events'] + steady['events']}",
        ),
        (rate >= RATE_GOAL_PER_S, f"webhook deliveries >= {RATE_GOAL_PER_S}/s: {rate}/s"),
        (
            p99 is not None and p99 <= P99_GOAL_MS,
            f"event → webhook p99 <= {P99_GOAL_MS:g} ms at {steady['rate_per_s']}/s beside a"
            f" failing and a black-holed endpoint: {p99} ms",
        ),
    ]


def webhooks_report(figures: dict[str, Any]) -> str:
    """The webhooks scenario's figures, for the terminal and docs/benchmarks.md."""
    steady = figures["steady"]
    latency = steady["latency"]
    return (
        f"webhooks: a burst of {figures['received']:,}/{figures['events']:,} events delivered at"
        f" {figures['deliveries_per_s']}/s; at a steady {steady['rate_per_s']}/s event → webhook"
        f" p50/95/99 {latency.get('p50_ms')}/{latency.get('p95_ms')}/{latency.get('p99_ms')} ms;"
        f" beside an endpoint answering 500 ({figures['failing_posts']} posts) and a black-holed"
        " one"
    )
