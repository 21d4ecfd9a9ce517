"""The FastStream Kafka broker every service uses, and the topic set-up from the catalogue.

Producers are idempotent with ``acks=all``; subscribers commit an offset only after their
handler returned (the side effect is done). A handler that raises is sought back and retried,
so only a record that can never succeed may be skipped, and only by the handler itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiokafka import AIOKafkaProducer, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    OutOfOrderSequenceNumber,
    TopicAlreadyExistsError,
    UnknownProducerId,
)
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from faststream.kafka.publisher.producer import AioKafkaFastProducerImpl
from faststream.kafka.publisher.state import RealProducer
from faststream.message import StreamMessage
from pydantic import BaseModel, ValidationError

from libs.priority import FEEDBACK_RANK, LANE_RANK, gate
from libs.settings import Settings
from libs.topics import catalogue, lane_topic
from libs.tracing import setup_tracing
from schemas.common import Lane

log = logging.getLogger(__name__)

RecordT = TypeVar("RecordT", bound=BaseModel)
T = TypeVar("T")

Handler = Callable[[KafkaMessage], Awaitable[None]]


def raw_body(message: StreamMessage[Any]) -> bytes:
    """The record's bytes as they are, for the handler to decode.

    FastStream's own decoder raises on a record labelled JSON that is not, which would retry
    that record forever and block its partition; ``parse_record`` skips it instead.
    """
    return message.body


SUBSCRIBER_OPTIONS: dict[str, Any] = {
    "ack_policy": AckPolicy.NACK_ON_ERROR,
    "auto_offset_reset": "earliest",
    "max_poll_interval_ms": 120_000,
    "decoder": raw_body,
}
"""Options of every subscriber: commit after the side effect, start from the beginning."""


PRODUCER_WEDGED = (OutOfOrderSequenceNumber, UnknownProducerId)
"""What an idempotent producer answers, for good, once its sequence numbers and the broker's
disagree (e.g. batches that timed out while the broker restarted)."""


class Broker(KafkaBroker):
    """FastStream's Kafka broker, with a producer that is renewed when it can no longer publish.

    aiokafka's idempotent producer cannot recover from a sequence gap (the Java client bumps
    its epoch; aiokafka does not), so after a broker restart every publish would fail until the
    process restarts. The failing publish still raises — the record is redelivered or the HTTP
    client retries — and the next one goes through a fresh producer (a new producer id).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._renewing = asyncio.Lock()
        self._generation = 0

    async def publish(self, *args: Any, **kwargs: Any) -> Any:
        generation = self._generation
        try:
            return await super().publish(*args, **kwargs)
        except PRODUCER_WEDGED:
            await self._renew_producer(generation)
            raise

    async def _renew_producer(self, broken: int) -> None:
        async with self._renewing:
            if self._generation != broken:  # another publish renewed it already
                return
            log.warning("the Kafka producer lost its sequence; starting a new one")
            holder = self.config.broker_config.producer
            assert isinstance(holder, AioKafkaFastProducerImpl), "the broker is connected"
            fresh = AIOKafkaProducer(**self._connection_kwargs)
            await fresh.start()
            # Swapped in place, so that no concurrent publish ever finds no producer at all.
            stale, holder._producer = holder._producer, RealProducer(fresh)
            self._generation += 1
        await stale.stop()


def make_broker(service: str, settings: Settings) -> KafkaBroker:
    """A broker for ``service``: idempotent producer, acks=all, traced through Kafka headers."""
    provider = setup_tracing(service, settings)
    return Broker(
        settings.kafka_bootstrap,
        client_id=f"sendarix-{service}",
        acks="all",
        enable_idempotence=True,
        linger_ms=1,
        allow_auto_create_topics=False,
        middlewares=[KafkaTelemetryMiddleware(tracer_provider=provider)],
        graceful_timeout=10.0,
        log_level=logging.DEBUG,
    )


def group_id(service: str, role: str, settings: Settings) -> str:
    """The consumer group of one subscriber of a service, shared by every instance of it.

    The topic prefix keeps test runs that share a broker out of each other's groups.
    """
    return f"{settings.topic_prefix}sendarix-{service}-{role}"


def subscribe(
    broker: KafkaBroker,
    settings: Settings,
    service: str,
    role: str,
    topic: str,
    handler: Handler,
    rank: int | None = FEEDBACK_RANK,
) -> None:
    """Feed ``topic`` to ``handler`` in the service's group for ``role``.

    Each record waits for its turn at the process's priority gate at ``rank`` (None: the
    handler takes its turn itself, once it knows the record's lane).
    """
    group = group_id(service, role, settings)
    gated = handler if rank is None else _in_turn(handler, rank)
    broker.subscriber(topic, group_id=group, **SUBSCRIBER_OPTIONS)(gated)


BATCH_MAX_RECORDS = 500
BATCH_WAIT_MS = 50
"""A batch subscriber takes what has arrived, up to this many records or this long a wait."""

BatchHandler = Callable[[list[ConsumerRecord[bytes, bytes]]], Awaitable[None]]


def subscribe_batch(
    broker: KafkaBroker,
    settings: Settings,
    service: str,
    role: str,
    topic: str,
    handler: BatchHandler,
) -> None:
    """Feed ``topic`` to ``handler`` a batch of records at a time, at the feedback rank.

    For readers of the event stream, which see every message several times: one offset commit
    and one database transaction per batch instead of per record. The batch is retried whole
    when the handler raises, so the handler must be idempotent per record (it is: event ids).
    """
    group = group_id(service, role, settings)

    async def handle_batch(message: KafkaMessage) -> None:
        async with gate.turn(FEEDBACK_RANK):
            await handler(list(message.raw_message))

    broker.subscriber(
        topic,
        group_id=group,
        batch=True,
        max_records=BATCH_MAX_RECORDS,
        batch_timeout_ms=BATCH_WAIT_MS,
        **SUBSCRIBER_OPTIONS,
    )(handle_batch)


def _in_turn(handler: Handler, rank: int) -> Handler:
    async def handle_in_turn(message: KafkaMessage) -> None:
        async with gate.turn(rank):
            await handler(message)

    return handle_in_turn


def subscribe_lanes(
    broker: KafkaBroker, settings: Settings, service: str, stage: str, handler: Handler
) -> None:
    """Feed every lane of ``stage`` to ``handler``, each lane with a consumer of its own.

    Separate consumers (and groups) per lane keep a bulk backlog or a bulk rebalance from
    ever standing in front of a critical message; the priority gate keeps their records
    from taking turns with critical ones on the service's event loop.
    """
    for lane in Lane:
        topic = lane_topic(stage, lane, settings.topic_prefix)
        subscribe(broker, settings, service, lane.value, topic, handler, LANE_RANK[lane])


async def publish_record(broker: KafkaBroker, topic: str, record: BaseModel, key: str) -> None:
    """Publish a record as JSON, keyed by its message id, and wait for the broker's ack."""
    await broker.publish(record.model_dump_json().encode(), topic, key=key.encode())


def parse_record(model: type[RecordT], message: KafkaMessage) -> RecordT | None:
    """Decode a record of ``model``, or log and return None for one that can never be decoded.

    Returning None lets the caller skip a poison record (its offset is committed) instead of
    blocking the partition behind it.
    """
    return parse_value(model, message.body, message.raw_message)


def parse_value(model: type[RecordT], value: bytes | None, raw: object) -> RecordT | None:
    """Decode ``value`` as ``parse_record`` does; ``raw`` is the record it came in, for the log."""
    try:
        return model.model_validate_json(value or b"")
    except ValidationError as error:
        log.error(
            "skipping undecodable %s record at %s/%s@%s: %s",
            model.__name__,
            getattr(raw, "topic", "?"),
            getattr(raw, "partition", "?"),
            getattr(raw, "offset", "?"),
            error.errors(include_url=False)[:3],
        )
        return None


async def ensure_topics(settings: Settings) -> list[str]:
    """Create every catalogue topic that does not exist yet; return the names created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in catalogue(settings.topic_prefix) if t.name not in existing]
        for topic in missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [
                        NewTopic(
                            topic.name,
                            topic.partitions,
                            1,
                            topic_configs={"retention.ms": str(topic.retention_ms)},
                        )
                    ]
                )
        return [t.name for t in missing]
    finally:
        await admin.close()


async def retry_forever(what: str, attempt: Callable[[], Awaitable[T]], pause: float = 1.0) -> T:
    """Run ``attempt`` until it succeeds, pausing between failures (for start-up dependencies)."""
    while True:
        try:
            return await attempt()
        except Exception as error:
            log.warning("%s not ready yet (%s); retrying", what, error)
            await asyncio.sleep(pause)
