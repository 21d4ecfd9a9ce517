"""The FastStream Kafka broker every service uses, and the topic set-up from the catalogue.

Producers are idempotent with ``acks=all``; what a batch produced is sent pipelined (every
record handed to the producer first, every acknowledgement awaited after), so the producer
batches records per partition instead of one request per record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeAlias, TypeVar

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import (
    OutOfOrderSequenceNumber,
    TopicAlreadyExistsError,
    UnknownProducerId,
)
from aiokafka.partitioner import murmur2
from aiokafka.structs import RecordMetadata
from faststream.kafka import KafkaBroker
from faststream.kafka.publisher.producer import AioKafkaFastProducerImpl
from faststream.kafka.publisher.state import RealProducer

from libs.batch import Publication
from libs.metrics import PRODUCE_FAILURES
from libs.settings import Settings
from libs.topics import MAX_RECORD_BYTES, Topic, catalogue
from libs.tracing import setup_tracing, trace_headers

log = logging.getLogger(__name__)

T = TypeVar("T")

PRODUCER_WEDGED = (OutOfOrderSequenceNumber, UnknownProducerId)
"""What an idempotent producer answers, for good, once its sequence numbers and the broker's
disagree (e.g. batches that timed out while the broker restarted)."""

PARKING_ROOM_BYTES = 1024 * 1024
"""Headroom above ``MAX_RECORD_BYTES`` on dead-letter topics and in the producer: a parked
record is its original bytes plus the headers that say why."""

PRODUCER_BATCH_BYTES = 256 * 1024
"""Bytes the producer gathers per partition and request: a batch's records travel together."""

SendOutcome: TypeAlias = RecordMetadata | BaseException


@dataclass(frozen=True)
class Sending:
    """A publication handed to the producer: its acknowledgement to come, or why it was refused
    at once, and the producer generation it went through."""

    publication: Publication
    acked: asyncio.Future[RecordMetadata] | BaseException
    generation: int


class Broker(KafkaBroker):
    """FastStream's Kafka broker, with pipelined sends, a producer of its own for urgent
    records, and producers renewed when they wedge.

    aiokafka keeps one produce request in flight per broker and producer: a record waits for
    the request before it to be acknowledged. An OTP's records go through a second producer,
    so they never queue behind a bulk batch's requests of the same process.

    aiokafka's idempotent producer cannot recover from a sequence gap (the Java client bumps
    its epoch; aiokafka does not), so after a broker restart every send would fail until the
    process restarts. The failing send still fails — the batch is sent again, or the HTTP
    client retries — and the next one goes through a fresh producer (a new producer id).
    """

    def __init__(self, *args: Any, service: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.service = service
        self._renewing = asyncio.Lock()
        self._generation = 0
        self._urgent: AIOKafkaProducer | None = None

    async def start(self) -> None:
        await super().start()
        self._urgent = await self._new_producer()

    async def stop(self, *args: Any, **kwargs: Any) -> None:
        if self._urgent is not None:
            urgent, self._urgent = self._urgent, None
            await urgent.stop()
        await super().stop(*args, **kwargs)

    async def _new_producer(self) -> AIOKafkaProducer:
        producer = AIOKafkaProducer(**self._connection_kwargs)
        await producer.start()
        return producer

    @property
    def _holder(self) -> AioKafkaFastProducerImpl:
        holder = self.config.broker_config.producer
        assert isinstance(holder, AioKafkaFastProducerImpl), "the broker is connected"
        return holder

    def producer(self, urgent: bool = False) -> AIOKafkaProducer:
        """The connected producer for urgent records, or FastStream's for the others."""
        if urgent and self._urgent is not None:
            return self._urgent
        producer: AIOKafkaProducer = self._holder._producer.producer
        return producer

    async def send_all(self, publications: Sequence[Publication]) -> list[SendOutcome]:
        """Send every publication, then await every acknowledgement; one outcome each, in order.

        An outcome is the record's metadata, or the error that refused it (never raised here,
        so that the caller can tell a record at fault from a broker that is down).
        """
        return await self.settle(await self.enqueue(publications))

    async def enqueue(self, publications: Sequence[Publication]) -> list[Sending]:
        """Hand every publication to the producer without waiting for the broker; what each
        became (an acknowledgement to await, or the error that refused it at once).

        A publication that came from a consumed record carries that record's trace.
        """
        sending: list[Sending] = []
        for publication in publications:
            headers = publication.headers
            if publication.source is not None:
                headers = [*headers, *publication.source.traceparent]
            try:
                acked = await self.producer(publication.urgent).send(
                    publication.topic,
                    value=publication.value,
                    key=publication.key,
                    headers=headers,
                )
            except Exception as error:
                sending.append(Sending(publication, error, self._generation))
            else:
                sending.append(Sending(publication, acked, self._generation))
        return sending

    async def settle(self, sending: Sequence[Sending]) -> list[SendOutcome]:
        """Wait for the broker's answer to every enqueued publication; one outcome each."""
        outcomes: list[SendOutcome] = []
        for sent in sending:
            outcome = sent.acked
            if not isinstance(outcome, BaseException):
                try:
                    outcome = await outcome
                except Exception as error:
                    outcome = error
                    if isinstance(error, PRODUCER_WEDGED):
                        await self._renew_producers(sent.generation)
            if isinstance(outcome, BaseException):
                PRODUCE_FAILURES.labels(self.service, type(outcome).__name__).inc()
            outcomes.append(outcome)
        return outcomes

    async def send_confirmed(self, publications: Sequence[Publication]) -> list[RecordMetadata]:
        """Send every publication and wait for the broker's acks; raise the first failure."""
        outcomes = await self.send_all(publications)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return outcomes

    async def publish(self, *args: Any, **kwargs: Any) -> Any:
        """FastStream's publish (one record, awaited), carrying the current trace context."""
        kwargs["headers"] = {**trace_headers(), **(kwargs.get("headers") or {})}
        generation = self._generation
        try:
            return await super().publish(*args, **kwargs)
        except Exception as error:
            PRODUCE_FAILURES.labels(self.service, type(error).__name__).inc()
            if isinstance(error, PRODUCER_WEDGED):
                await self._renew_producers(generation)
            raise

    async def _renew_producers(self, broken: int) -> None:
        """Swap in fresh producers (both: a broker restart wedges every one of them)."""
        async with self._renewing:
            if self._generation != broken:  # another send renewed them already
                return
            log.warning("the Kafka producers lost their sequence; starting new ones")
            holder = self._holder
            fresh, fresh_urgent = await self._new_producer(), await self._new_producer()
            # Swapped in place, so that no concurrent send ever finds no producer at all.
            stale, holder._producer = holder._producer, RealProducer(fresh)
            stale_urgent, self._urgent = self._urgent, fresh_urgent
            self._generation += 1
        await stale.stop()
        if stale_urgent is not None:
            await stale_urgent.stop()


@lru_cache(maxsize=65536)
def _key_hash(key: bytes) -> int:
    hashed: int = murmur2(key)
    return hashed & 0x7FFFFFFF


def keyed_partition(key: bytes | None, partitions: list[int], available: list[int]) -> int:
    """The Java client's partition for ``key`` (murmur2), remembered per key: a message's
    records and events pass through the producers of its hops many times, and aiokafka's
    murmur2 is pure Python. Records without a key go to any available partition."""
    if key is None:
        return random.choice(available or partitions)
    return partitions[_key_hash(key) % len(partitions)]


def make_broker(service: str, settings: Settings) -> Broker:
    """A broker for ``service``: idempotent producer, acks=all, records up to the platform's
    limit; tracing is the runtime's (one span per message per service), not per publish."""
    setup_tracing(service, settings)
    return Broker(
        settings.kafka_bootstrap,
        service=service,
        client_id=f"sendarix-{service}",
        acks="all",
        enable_idempotence=True,
        linger_ms=1,
        max_batch_size=PRODUCER_BATCH_BYTES,
        max_request_size=MAX_RECORD_BYTES + PARKING_ROOM_BYTES,
        partitioner=keyed_partition,
        allow_auto_create_topics=False,
        apply_types=False,
        graceful_timeout=10.0,
        log_level=logging.DEBUG,
    )


def group_id(service: str, role: str, settings: Settings) -> str:
    """The consumer group of one subscriber of a service, shared by every instance of it.

    The topic prefix keeps test runs that share a broker out of each other's groups.
    """
    return f"{settings.topic_prefix}sendarix-{service}-{role}"


def topic_configs(topic: Topic) -> dict[str, str]:
    """The configuration the platform sets on ``topic``."""
    room = PARKING_ROOM_BYTES if topic.parked else 0
    return {
        "retention.ms": str(topic.retention_ms),
        "max.message.bytes": str(MAX_RECORD_BYTES + room),
    }


TOPICS_READY_SECONDS = 60.0
"""How long ``ensure_topics`` waits for the broker to show every topic it asked for."""


async def ensure_topics(settings: Settings) -> list[str]:
    """Create every catalogue topic that does not exist yet, and bring the configuration of
    those that do up to date (a stack keeps its topics between runs); return the names created.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        wanted = catalogue(settings.topic_prefix)
        existing = set(await admin.list_topics())
        present = [t for t in wanted if t.name in existing]
        if present:
            await admin.alter_configs(
                [
                    ConfigResource(ConfigResourceType.TOPIC, t.name, configs=topic_configs(t))
                    for t in present
                ]
            )
        created = [t.name for t in wanted if t.name not in existing]
        await _create_until_listed(
            admin,
            [NewTopic(t.name, t.partitions, 1, topic_configs=topic_configs(t)) for t in wanted],
            existing,
        )
        return created
    finally:
        await admin.close()


async def ensure_topic(bootstrap: str, topic: NewTopic) -> None:
    """Create one topic outside the catalogue (the stack's own) unless it exists already."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await _create_until_listed(admin, [topic], set(await admin.list_topics()))
    finally:
        await admin.close()


async def _create_until_listed(
    admin: AIOKafkaAdminClient, wanted: list[NewTopic], existing: set[str]
) -> None:
    """Create the topics of ``wanted`` not in ``existing``, until the broker lists them all.

    The broker answers a creation it could not do (a broker just started, a controller moving)
    with an error code rather than an exception, hence the listing again.
    """
    deadline = time.monotonic() + TOPICS_READY_SECONDS
    while missing := [t for t in wanted if t.name not in existing]:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the broker did not create {[t.name for t in missing]}")
        for topic in missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([topic])
        await asyncio.sleep(0.2)
        existing = set(await admin.list_topics())


async def retry_forever(what: str, attempt: Callable[[], Awaitable[T]], pause: float = 1.0) -> T:
    """Run ``attempt`` until it succeeds, pausing between failures (for start-up dependencies)."""
    while True:
        try:
            return await attempt()
        except Exception as error:
            log.warning("%s not ready yet (%s); retrying", what, error)
            await asyncio.sleep(pause)
