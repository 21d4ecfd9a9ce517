"""A batch as a handler sees it: the records it consumed, and the outbox it fills.

A handler never publishes by itself: it returns an ``Outbox`` of what its batch produced, and
the runtime (``libs.subscriptions``) publishes all of it, pipelined, stamping each record with
the trace of the message it belongs to, before the batch's offsets commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from aiokafka import ConsumerRecord
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span

from libs.events import event_headers, new_event
from libs.topics import EVENTS, Stage, public_topic
from libs.tracing import record_span, traceparent
from schemas.common import Lane
from schemas.events import DeliveryEvent, EventData, MessageState
from schemas.pipeline import PipelineRecord

T = TypeVar("T")
RecordT = TypeVar("RecordT", bound=PipelineRecord)

Headers = list[tuple[str, bytes]]


@dataclass(eq=False)
class Consumed(Generic[T]):
    """One record of a batch, decoded, with where it came from and the span it is handled in
    (for a reader of the event stream, the span of the record's producer, read when needed)."""

    value: T
    raw: ConsumerRecord[bytes, bytes]
    message_id: str | None
    recorded: Span | None
    """This service's span of the message, when the subscription records one."""
    _traceparent: Headers | None = field(default=None, init=False, repr=False)

    @property
    def span(self) -> Span:
        """The span this message's work here hangs off."""
        if self.recorded is None:
            self.recorded = record_span(self.raw.headers)
        return self.recorded

    @property
    def context(self) -> Context:
        """The trace context of this message in this service: the parent of any span of it."""
        return trace.set_span_in_context(self.span)

    @property
    def traceparent(self) -> Headers:
        """The W3C headers that continue this message's trace (worked out once per record)."""
        if self._traceparent is None:
            self._traceparent = traceparent(self.context)
        return self._traceparent

    @property
    def where(self) -> str:
        """``topic/partition@offset``, for logs."""
        return f"{self.raw.topic}/{self.raw.partition}@{self.raw.offset}"


URGENT_LANES = frozenset({Lane.CRITICAL, Lane.HIGH})
"""Lanes whose records travel through a producer of their own (``libs.broker``)."""


@dataclass(frozen=True)
class Publication:
    """One record to publish, and the consumed record it came from (None: none in particular).

    ``urgent`` records (of the critical and high lanes, and their events) never queue behind
    the produce requests of bulk work in the same process.
    """

    source: Consumed[Any] | None
    topic: str
    value: bytes
    key: bytes | None
    headers: Headers
    urgent: bool = False


@dataclass
class Outbox:
    """What handling a batch produced: records for the next stages and events, in order."""

    prefix: str
    publications: list[Publication] = field(default_factory=list)

    def forward(self, source: Consumed[Any], stage: Stage[RecordT], record: RecordT) -> None:
        """Send ``record`` on to the lane of ``stage`` its message travels in."""
        spec = record.spec
        self.forward_value(
            source, stage, spec.lane, spec.message_id, record.model_dump_json().encode()
        )

    def forward_value(
        self,
        source: Consumed[Any] | None,
        stage: Stage[Any],
        lane: Lane,
        message_id: str,
        value: bytes,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        """Send an already encoded record of ``stage`` on, as it is (no decode, no re-encode);
        ``headers`` carry a trace when there is no consumed record to continue it from."""
        topic = stage.topic(lane, self.prefix)
        self.add(source, topic, value, message_id.encode(), list(headers), lane in URGENT_LANES)

    def emit(
        self,
        source: Consumed[Any] | None,
        state: MessageState,
        data: EventData,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> DeliveryEvent:
        """Report ``state`` of a message on ``sendarix.events`` (keyed by its id)."""
        event = new_event(state, data)
        self.add(
            source,
            public_topic(EVENTS, self.prefix),
            event.model_dump_json().encode(),
            event.subject.encode(),
            [*event_headers(event), *headers],
            urgent=data.lane in URGENT_LANES,
        )
        return event

    def add(
        self,
        source: Consumed[Any] | None,
        topic: str,
        value: bytes,
        key: bytes | None,
        headers: Headers | None = None,
        urgent: bool = False,
    ) -> None:
        """Publish ``value`` to ``topic`` as it is."""
        self.publications.append(Publication(source, topic, value, key, headers or [], urgent))

    def extend(self, other: Outbox) -> None:
        """Take over what another outbox of the same batch holds."""
        self.publications.extend(other.publications)
