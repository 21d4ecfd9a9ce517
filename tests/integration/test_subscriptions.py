"""The consumer runtime on the real broker: batches, the poison policy, pipelined publishing."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from libs.batch import Consumed, Outbox
from libs.broker import Broker, make_broker, topic_configs
from libs.metrics import serve_metrics
from libs.poison import HANDLER_FAILED, RECORD_TOO_LARGE, UNDECODABLE
from libs.settings import Settings
from libs.subscriptions import Subscription, Tuning, subscribe
from libs.topics import MAX_RECORD_BYTES, Topic
from schemas.pipeline import ParkedRecord
from tests.support import TopicTap, eventually

pytestmark = pytest.mark.integration


@dataclass
class Numbered:
    n: int


def decode(value: bytes) -> Numbered:
    return Numbered(int(json.loads(value)["n"]))


@dataclass
class Behaviour:
    """What the handler under test does, set by each test."""

    poison: set[int] = field(default_factory=set)
    oversized: set[int] = field(default_factory=set)
    outages: int = 0
    calls: int = 0


@dataclass
class Rig:
    broker: Broker
    source: str
    out: str
    dead_letters: str
    behaviour: Behaviour
    role: str

    async def produce(self, *values: bytes) -> None:
        for value in values:  # one partition: each record queues behind the one before it
            await self.broker.publish(value, self.source, partition=0)


@pytest.fixture
async def rig(settings: Settings) -> AsyncIterator[Rig]:
    run = uuid.uuid4().hex[:8]
    names = [f"{settings.topic_prefix}runtime.{run}.{kind}" for kind in ("in", "out", "dlq")]
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(
                    name,
                    1,
                    1,
                    topic_configs=topic_configs(
                        Topic(name, 1, 3_600_000, "test", Numbered, parked=name.endswith("dlq"))  # type: ignore[arg-type]
                    ),
                )
                for name in names
            ]
        )
    finally:
        await admin.close()
    source, out, dead_letters = names
    behaviour = Behaviour()
    broker = make_broker("runtime-test", settings)

    async def handle(batch: list[Consumed[Numbered]]) -> Outbox:
        behaviour.calls += 1
        if behaviour.outages:
            behaviour.outages -= 1
            raise KafkaConnectionError("the broker is away")
        if any(item.value.n in behaviour.poison for item in batch):
            raise ValueError("this record is poison")
        outbox = Outbox(settings.topic_prefix)
        for item in batch:
            size = MAX_RECORD_BYTES + 1 if item.value.n in behaviour.oversized else 10
            outbox.add(item, out, json.dumps({"n": item.value.n}).ljust(size).encode(), None)
        return outbox

    subscribe(
        broker,
        settings,
        Subscription(
            service="runtime-test",
            role=run,
            topic=source,
            decode=decode,
            handle=handle,
            dead_letters=dead_letters,
            tuning=Tuning(max_records=50, fetch_max_wait_ms=10),
        ),
    )
    await broker.start()
    try:
        yield Rig(broker, source, out, dead_letters, behaviour, run)
    finally:
        await broker.stop()


def parked_count(rig: Rig) -> float:
    labels = {"service": "runtime-test", "role": rig.role, "reason": HANDLER_FAILED}
    return REGISTRY.get_sample_value("sendarix_parked_records_total", labels) or 0.0


def numbers(tap: TopicTap, topic: str) -> list[int]:
    return sorted(json.loads(r.value)["n"] for r in tap.records if r.topic == topic and r.value)


def parked(tap: TopicTap, topic: str) -> list[tuple[bytes, ParkedRecord]]:
    return [
        (r.value or b"", ParkedRecord.from_headers(list(r.headers)))
        for r in tap.records
        if r.topic == topic
    ]


async def test_a_failing_record_is_isolated_and_parked_and_the_rest_go_on(
    rig: Rig, settings: Settings
) -> None:
    rig.behaviour.poison = {3}
    before = parked_count(rig)
    async with TopicTap(settings, rig.out, rig.dead_letters) as tap:
        await rig.produce(*(json.dumps({"n": n}).encode() for n in range(10)))
        await eventually(lambda: _at_least(tap, 10), timeout=30)
        assert numbers(tap, rig.out) == [0, 1, 2, 4, 5, 6, 7, 8, 9]
        [(value, why)] = parked(tap, rig.dead_letters)
    assert json.loads(value) == {"n": 3}
    assert (why.reason, why.exception, why.topic) == (HANDLER_FAILED, "ValueError", rig.source)
    assert "this record is poison" in why.detail
    assert parked_count(rig) == before + 1


async def test_an_undecodable_record_is_parked_with_its_bytes(rig: Rig, settings: Settings) -> None:
    async with TopicTap(settings, rig.out, rig.dead_letters) as tap:
        await rig.produce(b"\xff\xfe not json", json.dumps({"n": 7}).encode())
        await eventually(lambda: _at_least(tap, 2), timeout=30)
        assert numbers(tap, rig.out) == [7]
        [(value, why)] = parked(tap, rig.dead_letters)
    assert value == b"\xff\xfe not json"
    assert why.reason == UNDECODABLE


async def test_a_dependency_that_is_down_is_waited_out_and_nothing_is_skipped(
    rig: Rig, settings: Settings
) -> None:
    rig.behaviour.outages = 2
    async with TopicTap(settings, rig.out, rig.dead_letters) as tap:
        await rig.produce(*(json.dumps({"n": n}).encode() for n in range(5)))
        await eventually(lambda: _at_least(tap, 5), timeout=30)
        assert numbers(tap, rig.out) == [0, 1, 2, 3, 4]
        assert parked(tap, rig.dead_letters) == []
    assert rig.behaviour.calls >= 3


async def test_a_record_whose_output_is_too_large_is_parked(rig: Rig, settings: Settings) -> None:
    rig.behaviour.oversized = {1}
    async with TopicTap(settings, rig.out, rig.dead_letters) as tap:
        await rig.produce(*(json.dumps({"n": n}).encode() for n in range(3)))
        await eventually(lambda: _at_least(tap, 3), timeout=30)
        assert numbers(tap, rig.out) == [0, 2]
        [(value, why)] = parked(tap, rig.dead_letters)
    assert json.loads(value) == {"n": 1}
    assert why.reason == RECORD_TOO_LARGE


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scraped(port: int, role: str) -> Samples:
    """The rig's samples as a scrape of ``port`` shows them: (name, labels) -> value."""
    async with httpx.AsyncClient(timeout=5) as client:
        answer = await client.get(f"http://127.0.0.1:{port}/metrics")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
        if sample.labels.get("role") == role
    }


def values(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: value for (named, labels), value in samples.items() if named == name}


async def test_the_scrape_endpoint_counts_each_record_once_and_the_lag_drains_to_zero(
    rig: Rig, settings: Settings
) -> None:
    rig.behaviour.poison = {13}
    server = serve_metrics("127.0.0.1", 0)
    try:
        async with TopicTap(settings, rig.out, rig.dead_letters) as tap:
            await rig.produce(*(json.dumps({"n": n}).encode() for n in range(120)))
            await eventually(lambda: _at_least(tap, 120), timeout=30)

        async def drained() -> Samples | None:
            samples = await scraped(server.port, rig.role)
            lags = values(samples, "sendarix_consumer_lag")
            return samples if lags and set(lags.values()) == {0} else None

        samples = await eventually(drained, timeout=10)
    finally:
        server.stop()

    by_outcome = {
        dict(labels)["outcome"]: value
        for labels, value in values(samples, "sendarix_records_total").items()
    }
    assert by_outcome == {"handled": 119, "parked": 1, "skipped": 0}
    [lagged] = values(samples, "sendarix_consumer_lag")
    assert dict(lagged) == {
        "service": "runtime-test",
        "role": rig.role,
        "topic": rig.source,
        "partition": "0",
    }
    [size] = values(samples, "sendarix_batch_records_sum").values()
    [batches] = values(samples, "sendarix_batch_records_count").values()
    assert size == 120
    assert 3 <= batches <= 120  # at most 50 records a batch


async def _at_least(tap: TopicTap, count: int) -> bool | None:
    return True if len(tap.records) >= count else None
