"""The consumer runtime: a handler takes a batch of decoded records and returns what to publish.

Everything around the decision is here, once, for every service: fetching batches (per lane:
small and immediate for critical, larger and a little patient for bulk), decoding, the priority
gate, one span per message, publishing the outbox pipelined, the poison policy, and committing
the batch's offsets only after every record it produced was acknowledged.

Poison policy (``libs.poison``): a dependency that is down is waited out and never skips a
record. Any other failure is the record's: an undecodable record is parked at once; a handler
that raises something unexpected has its batch split until the record that makes it fail is
alone, which is tried a few times more and then parked — the rest of the batch goes on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Generic, TypeAlias, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.errors import IllegalStateError
from faststream import AckPolicy
from faststream.message import StreamMessage
from opentelemetry.trace import Status, StatusCode
from pydantic import ValidationError

from libs.batch import Consumed, Outbox, Publication
from libs.broker import PARKING_ROOM_BYTES, Broker, Sending, group_id
from libs.metrics import ConsumerMetrics
from libs.poison import (
    HANDLER_FAILED,
    RECORD_FAULTS,
    RECORD_TOO_LARGE,
    UNDECODABLE,
    is_transient,
    park,
    parking_note,
    report_failed,
    spec_in,
)
from libs.priority import FEEDBACK_RANK, LANE_RANK, gate
from libs.settings import Settings
from libs.topics import EVENTS, EVENTS_DLQ, MAX_RECORD_BYTES, NOTICES, Stage, public_topic
from libs.tracing import message_span
from schemas.common import Lane
from schemas.events import DeliveryEvent
from schemas.notices import Notice
from schemas.pipeline import MessageSpec, PipelineRecord

log = logging.getLogger(__name__)

T = TypeVar("T")
RecordT = TypeVar("RecordT", bound=PipelineRecord)

RawRecord: TypeAlias = ConsumerRecord[bytes, bytes]
Handler = Callable[[list[Consumed[T]]], Awaitable[Outbox]]


@dataclass(frozen=True)
class Tuning:
    """How a consumer gathers its batches.

    Under load, aiokafka fetches ahead while a batch is handled, so the next batch holds
    whatever arrived meanwhile. Under light load, a batch of one record would pay the whole
    cost of a batch (a fetch, a produce request, a commit, a transaction) for one message, so
    the patient lanes ask the broker to hold a fetch until ``fetch_min_bytes`` are there or
    ``fetch_max_wait_ms`` has passed. ``max_records`` bounds how long one batch holds the
    process (no pre-emption: an OTP waits at most for the batch in flight).

    aiokafka keeps one fetch in flight per broker: a partition whose records were just handled
    waits for the poll of the others to come back before it is fetched again. The urgent lanes
    have one partition each (``libs.topics.LANE_PARTITIONS``), so they are never behind another
    partition's poll, take every record the moment it arrives, and long-poll when idle.
    """

    max_records: int
    fetch_min_bytes: int = 1
    fetch_max_wait_ms: int = 500
    chunk: int | None = None
    """Records handled between two chances for more urgent work to go first (None: the whole
    batch at once)."""


LANE_TUNING: dict[Lane, Tuning] = {
    Lane.CRITICAL: Tuning(max_records=50),
    Lane.HIGH: Tuning(max_records=100, chunk=50),
    Lane.NORMAL: Tuning(max_records=200, fetch_min_bytes=16 * 1024, fetch_max_wait_ms=50, chunk=25),
    Lane.BULK: Tuning(max_records=250, fetch_min_bytes=64 * 1024, fetch_max_wait_ms=100, chunk=25),
}

EVENT_STREAM_TUNING = Tuning(max_records=2000, fetch_min_bytes=256 * 1024, fetch_max_wait_ms=1000)
"""Readers of ``sendarix.events`` see every message several times: the message log and the
suppression feedback may lag a second for the sake of fuller batches: fewer transactions and
commits, on the same two cores as the pipeline (webhooks read with a tuning of their own)."""

POLL_TIMEOUT_MS = 500
"""How long an idle consumer waits for records before asking again (not a delay: a batch is
handed over as soon as the fetch returns)."""

ATTEMPTS_BEFORE_PARKING = 3
"""Times a record that alone makes its handler fail is tried before it is parked."""

TRANSIENT_PAUSE_SECONDS = (0.2, 0.5, 1.0, 2.0, 5.0)
"""Pauses while a dependency is down: growing, then every 5 s, for as long as it lasts."""


def subscriber_options(tuning: Tuning) -> dict[str, Any]:
    """FastStream options of a batch subscriber: commit after the side effect, start from the
    beginning, take records up to the platform's size limit."""
    return {
        "batch": True,
        "max_records": tuning.max_records,
        "batch_timeout_ms": POLL_TIMEOUT_MS,
        "fetch_min_bytes": tuning.fetch_min_bytes,
        "fetch_max_wait_ms": tuning.fetch_max_wait_ms,
        "max_partition_fetch_bytes": MAX_RECORD_BYTES + PARKING_ROOM_BYTES,
        "ack_policy": AckPolicy.NACK_ON_ERROR,
        "auto_offset_reset": "earliest",
        "max_poll_interval_ms": 300_000,
        "decoder": raw_records,
    }


async def raw_records(message: StreamMessage[Any]) -> tuple[RawRecord, ...]:
    """The batch's records as aiokafka read them: the runtime decodes them itself, so that a
    record that cannot be decoded is parked rather than retried forever."""
    records: tuple[RawRecord, ...] = message.raw_message
    return records


@dataclass
class Subscription(Generic[T]):
    """One consumer group of a service: what it reads, how it decodes, who handles it."""

    service: str
    role: str
    topic: str
    decode: Callable[[bytes], T]
    handle: Handler[T]
    dead_letters: str
    rank: int | None = FEEDBACK_RANK
    """Priority-gate rank of a batch (None: the handler takes its turns itself)."""
    message_id: Callable[[T], str | None] = lambda _: None
    spec: Callable[[T], MessageSpec | None] = lambda _: None
    """The message a record carries, to report ``failed`` when its record is parked."""
    wanted: Callable[[RawRecord], bool] | None = None
    """A cheap look at the headers: records it turns down are skipped without decoding."""
    tuning: Tuning = EVENT_STREAM_TUNING
    traced: bool = True
    """One span per message per service (the pipeline's hops); readers of the event stream see
    each message several times and add no span of their own (their work hangs off the event's
    producer span where it matters, e.g. a webhook post)."""
    lane: Lane | None = None
    """The lane of the topic it reads (None: a topic of every lane, e.g. the event stream)."""
    _pauses: int = field(default=0, init=False)
    _skipped: int = field(default=0, init=False)
    _parked: int = field(default=0, init=False)
    """Records of the batch in hand turned down by ``wanted`` and parked, for its metrics."""
    metrics: ConsumerMetrics = field(init=False)

    def __post_init__(self) -> None:
        lane = self.lane.value if self.lane is not None else ""
        self.metrics = ConsumerMetrics(self.service, self.role, self.topic, lane)

    async def on_batch(
        self, broker: Broker, settings: Settings, records: Sequence[RawRecord]
    ) -> None:
        """Handle one fetched batch; return only once all it produced is acknowledged.

        A batch is handled a chunk at a time, what each chunk produced handed to the producer
        at once; between chunks the event loop takes in what arrived meanwhile, and a more
        urgent lane's batch goes first (the gate) — an OTP never waits for a whole bulk batch.
        """
        started = time.time_ns()
        self._skipped = self._parked = 0
        items: list[Consumed[T]] = []
        sending: list[Sending] = []
        size = self.tuning.chunk or len(records) or 1
        for first in range(0, len(records), size):
            if first:
                await asyncio.sleep(0)
            outbox = Outbox(settings.topic_prefix)
            chunk = self._decoded(records[first : first + size], started, outbox)
            items += chunk
            if self.rank is None:
                outbox.extend(await self._isolating(chunk, settings))
            else:
                async with gate.turn(self.rank):
                    outbox.extend(await self._isolating(chunk, settings))
            sending += await broker.enqueue(outbox.publications)
        await self._settle(broker, settings, sending)
        for item in items:
            if item.recorded is not None:
                item.span.end()
        seconds = (time.time_ns() - started) / 1e9
        self.metrics.batch(len(records), self._skipped, self._parked, seconds)

    def _decoded(
        self, records: Sequence[RawRecord], started: int, outbox: Outbox
    ) -> list[Consumed[T]]:
        items: list[Consumed[T]] = []
        for raw in records:
            if self.wanted is not None and not self.wanted(raw):
                self._skipped += 1
                continue
            try:
                value = self.decode(raw.value or b"")
            except (ValueError, RecursionError) as error:  # pydantic's ValidationError too
                self._park(
                    outbox, raw, UNDECODABLE, _why_undecodable(error), error, spec_in(raw.value)
                )
                continue
            message_id = self.message_id(value)
            span = (
                message_span(self.service, raw.headers, started, _attributes(raw, message_id))
                if self.traced
                else None
            )
            items.append(Consumed(value, raw, message_id, span))
        return items

    async def _isolating(self, items: list[Consumed[T]], settings: Settings) -> Outbox:
        """The handler's outbox for ``items``; a failing record is isolated and parked."""
        outbox = Outbox(settings.topic_prefix)
        if not items:
            return outbox
        attempts = 0
        while True:
            try:
                outbox.extend(await self.handle(items))
                self._pauses = 0
                return outbox
            except Exception as error:
                if is_transient(error):
                    await self._wait_out(error)
                    continue
                if len(items) > 1:
                    half = len(items) // 2
                    outbox.extend(await self._isolating(items[:half], settings))
                    outbox.extend(await self._isolating(items[half:], settings))
                    return outbox
                attempts += 1
                if attempts < ATTEMPTS_BEFORE_PARKING:
                    await asyncio.sleep(0.05 * attempts)
                    continue
                [item] = items
                log.exception(
                    "%s/%s cannot handle %s; parking it",
                    self.service,
                    self.role,
                    item.where,
                    extra={"message_id": item.message_id},
                )
                item.span.set_status(Status(StatusCode.ERROR, repr(error)))
                self._park(
                    outbox,
                    item.raw,
                    HANDLER_FAILED,
                    f"{type(error).__name__}: {error}",
                    error,
                    self.spec(item.value),
                    item.message_id,
                )
                return outbox

    async def _settle(self, broker: Broker, settings: Settings, sending: Sequence[Sending]) -> None:
        """Wait until the broker took everything the batch produced.

        A record the broker refuses for its size parks the record it came from (its other
        records may have gone out: every consumer is idempotent); a broker that is down is
        waited out and what it did not take sent again (duplicates are dropped downstream by
        their ids).
        """
        pending = [sent.publication for sent in sending]
        outcomes = await broker.settle(sending)
        while pending:
            failed = [
                (p, o)
                for p, o in zip(pending, outcomes, strict=True)
                if isinstance(o, BaseException)
            ]
            if not failed:
                self._pauses = 0
                return
            retry: list[Publication] = []
            refusals = Outbox(settings.topic_prefix)
            for publication, error in failed:
                if isinstance(error, RECORD_FAULTS) and publication.source is not None:
                    source = publication.source
                    source.span.set_status(Status(StatusCode.ERROR, RECORD_TOO_LARGE))
                    self._park(
                        refusals,
                        source.raw,
                        RECORD_TOO_LARGE,
                        f"a record it produced for {publication.topic} is larger than the "
                        f"broker takes ({len(publication.value)} bytes): {error}",
                        error,
                        self.spec(source.value),
                        source.message_id,
                    )
                elif isinstance(error, RECORD_FAULTS):
                    log.error(
                        "dropping a record too large even to park on %s: %r",
                        publication.topic,
                        error,
                    )
                else:
                    retry.append(publication)
            if retry:
                await self._wait_out(retry_error(failed))
            pending = retry + refusals.publications
            outcomes = await broker.send_all(pending)

    def _park(
        self,
        outbox: Outbox,
        raw: RawRecord,
        reason: str,
        detail: str,
        error: BaseException | None,
        spec: MessageSpec | None,
        message_id: str | None = None,
    ) -> None:
        """Park ``raw`` on the dead-letter topic and report its message, if known, failed."""
        note = parking_note(
            raw,
            self.service,
            self.role,
            reason,
            detail,
            exception=error,
            message_id=message_id or (spec.message_id if spec else None),
        )
        park(outbox, raw, self.dead_letters, note)
        self._parked += 1
        if spec is not None:
            report_failed(outbox, spec, self.service, reason, detail)

    async def _wait_out(self, error: BaseException) -> None:
        pause = TRANSIENT_PAUSE_SECONDS[min(self._pauses, len(TRANSIENT_PAUSE_SECONDS) - 1)]
        self._pauses += 1
        log.warning(
            "%s/%s: a dependency is down (%r); trying the batch again in %.1f s",
            self.service,
            self.role,
            error,
            pause,
        )
        await asyncio.sleep(pause)


def _attributes(raw: RawRecord, message_id: str | None) -> dict[str, str | int]:
    """What a message's span in a service says about where it was read (few attributes: each
    one is encoded and exported for every message)."""
    attributes: dict[str, str | int] = {"messaging.destination.name": raw.topic}
    if message_id is not None:
        attributes["sendarix.message_id"] = message_id
    return attributes


def retry_error(failed: list[tuple[Publication, BaseException]]) -> BaseException:
    """The first failure that was not the record's fault."""
    return next(error for _, error in failed if not isinstance(error, RECORD_FAULTS))


def _why_undecodable(error: BaseException) -> str:
    if isinstance(error, ValidationError):
        issues = error.errors(include_url=False, include_input=False)[:3]
        return "; ".join(f"{'/'.join(map(str, i['loc']))}: {i['msg']}" for i in issues)
    if isinstance(error, RecursionError):
        return "the record is nested too deeply to decode"
    return f"{type(error).__name__}: {error}"


async def _nothing_known() -> bool:
    return False


_records_waiting: ContextVar[Callable[[], Awaitable[bool]]] = ContextVar(
    "records_waiting", default=_nothing_known
)


def records_waiting() -> Awaitable[bool]:
    """Whether records wait behind the batch being handled, in any partition of its consumer.

    A handler that holds its batch for one slow record (the sender's stragglers) lets it go
    sooner when the lane is waiting on it. False when not known (no consumer, or not yet
    fetched).
    """
    return _records_waiting.get()()


async def _behind(consumer: AIOKafkaConsumer | None) -> bool:
    """Records past the consumer's position in any of its partitions, as its last fetch of each
    saw them (the fetcher keeps fetching while a batch is handled; no request is made here)."""
    if consumer is None:
        return False
    for partition in consumer.assignment():
        highwater = consumer.highwater(partition)
        if highwater is None:  # not fetched yet, so its position may not be known either
            continue
        try:
            position = await consumer.position(partition)
        except IllegalStateError:  # revoked meanwhile
            continue
        if highwater > position:
            return True
    return False


def subscribe(broker: Broker, settings: Settings, subscription: Subscription[Any]) -> None:
    """Feed ``subscription.topic`` to its handler, a batch at a time, in its consumer group."""

    subscriber = broker.subscriber(
        subscription.topic,
        group_id=group_id(subscription.service, subscription.role, settings),
        **subscriber_options(subscription.tuning),
    )

    async def on_batch(records: tuple[RawRecord, ...]) -> None:
        probe = _records_waiting.set(partial(_behind, subscriber.consumer))
        try:
            await subscription.on_batch(broker, settings, records)
        finally:
            _records_waiting.reset(probe)
        subscription.metrics.lag(subscriber.consumer, records)

    subscriber(on_batch)


def subscribe_stage(
    broker: Broker,
    settings: Settings,
    service: str,
    stage: Stage[RecordT],
    handle: Handler[RecordT],
    gated: bool = True,
    role_prefix: str = "",
) -> None:
    """Feed each lane of ``stage`` this process serves (``settings.lanes``) to ``handle``, each
    lane with a consumer group of its own
    (role ``<role_prefix><lane>``: a service reading two stages keeps their groups apart).

    Separate consumers per lane keep a bulk backlog or a bulk rebalance from ever standing in
    front of a critical message; the priority gate keeps bulk chunks from starting while
    critical batches wait. A handler that mostly waits on the network (``gated=False``) takes
    its turns itself, at each of its awaits, and gets its batches whole.
    """
    prefix = settings.topic_prefix
    for lane in settings.served_lanes:
        subscription: Subscription[RecordT] = Subscription(
            service=service,
            role=f"{role_prefix}{lane.value}",
            topic=stage.topic(lane, prefix),
            decode=stage.record.model_validate_json,
            handle=handle,
            dead_letters=stage.dead_letters(prefix),
            rank=LANE_RANK[lane] if gated else None,
            message_id=_message_id,
            spec=_spec,
            tuning=LANE_TUNING[lane] if gated else replace(LANE_TUNING[lane], chunk=None),
            lane=lane,
        )
        subscribe(broker, settings, subscription)


def subscribe_events(
    broker: Broker,
    settings: Settings,
    service: str,
    role: str,
    handle: Handler[DeliveryEvent],
    wanted: Callable[[RawRecord], bool] | None = None,
    tuning: Tuning = EVENT_STREAM_TUNING,
) -> None:
    """Feed ``sendarix.events`` to ``handle`` in batches, at the feedback rank of the gate.

    ``wanted`` looks at a record's headers only; what it turns down is never decoded.
    """
    decode = DeliveryEvent.model_validate_json
    reader = _public_reader(
        settings,
        service,
        role,
        EVENTS,
        decode,
        handle,
        message_id=_event_message_id,
        wanted=wanted,
        tuning=tuning,
    )
    subscribe(broker, settings, reader)


def subscribe_notices(
    broker: Broker, settings: Settings, service: str, role: str, handle: Handler[Notice]
) -> None:
    """Feed ``sendarix.notices`` to ``handle`` in batches, at the feedback rank of the gate."""
    reader = _public_reader(settings, service, role, NOTICES, Notice.model_validate_json, handle)
    subscribe(broker, settings, reader)


def _public_reader(
    settings: Settings,
    service: str,
    role: str,
    topic: str,
    decode: Callable[[bytes], T],
    handle: Handler[T],
    **options: Any,
) -> Subscription[T]:
    """A reader of a public CloudEvents topic (an undecodable record is parked with the event
    stream's); it adds no span of its own."""
    prefix = settings.topic_prefix
    return Subscription(
        service=service,
        role=role,
        topic=public_topic(topic, prefix),
        decode=decode,
        handle=handle,
        dead_letters=public_topic(EVENTS_DLQ, prefix),
        traced=False,
        **options,
    )


def _message_id(record: PipelineRecord) -> str:
    return record.spec.message_id


def _spec(record: PipelineRecord) -> MessageSpec:
    return record.spec


def _event_message_id(event: DeliveryEvent) -> str:
    return event.subject
