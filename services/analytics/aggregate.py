"""A batch of delivery events, added up in memory: the rows one upsert per table adds.

Every event counts once in its minute, its hour and its day; a ``delivered`` event whose
acceptance time is known also counts in the latency histogram of the same buckets.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from libs.analytics import Granularity, bucket_start, latency_bin
from schemas.events import DeliveryEvent, MessageState

Dimensions = tuple[str, str, str, str, str, str]
"""(stream, lane, category, template, variant, recipient_domain), '' where not known."""
CountKey = tuple[str, str, datetime, str, str, str, str, str, str, str, str]
"""(tenant, granularity, bucket, *dimensions, event type, reason)."""
LatencyKey = tuple[str, str, datetime, str, str, str, str, str, str, int]
"""(tenant, granularity, bucket, *dimensions, bin)."""


def dimensions(event: DeliveryEvent) -> Dimensions:
    """What the event is counted per."""
    data = event.data
    domain = data.recipient.rpartition("@")[2].lower() if data.recipient else ""
    return (
        data.stream.value if data.stream else "",
        data.lane.value if data.lane else "",
        data.category or "",
        data.template or "",
        str(data.template_version) if data.template_version is not None else "",
        domain,
    )


def reason(event: DeliveryEvent) -> str:
    """Why a message bounced or was deferred (its bounce category), '' for other events."""
    bounce = event.data.bounce
    return bounce.category.value if bounce is not None else ""


@dataclass
class Tally:
    """The counts and latency bins of a batch, by key."""

    counts: Counter[CountKey] = field(default_factory=Counter)
    latency: Counter[LatencyKey] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    """Events added, per type (for the metrics)."""

    def add(self, event: DeliveryEvent, latency_ms: float | None = None) -> None:
        """Count ``event`` (and, for a delivered one, its accept->delivered latency)."""
        tenant = event.data.tenant_id
        dims = dimensions(event)
        state = event.type.rpartition(".")[2]
        why = reason(event)
        self.events[state] += 1
        for granularity in Granularity:
            bucket = bucket_start(event.time, granularity)
            self.counts[(tenant, granularity.value, bucket, *dims, state, why)] += 1
            if latency_ms is not None:
                self.latency[
                    (tenant, granularity.value, bucket, *dims, latency_bin(latency_ms))
                ] += 1


def accept_to_delivery_ms(event: DeliveryEvent, accepted_at: datetime | None) -> float | None:
    """How long a delivered message took from its acceptance, in ms (None: not a delivery, or
    its acceptance time is not known)."""
    if accepted_at is None or event.type != MessageState.DELIVERED.event_type:
        return None
    return max(0.0, (event.time - accepted_at).total_seconds() * 1000)


class RecentAcceptances:
    """When recently accepted messages were accepted, from their ``accepted`` events.

    A message's events share its partition, so the process that sees its ``delivered`` event
    has usually just seen its ``accepted`` one; the message log is asked only for the others
    (after a restart, or a message older than the ``capacity`` last ones).
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._times: dict[str, datetime] = {}

    def remember(self, message_id: str, accepted_at: datetime) -> None:
        self._times[message_id] = accepted_at
        if len(self._times) > self.capacity:
            del self._times[next(iter(self._times))]

    def get(self, message_id: str) -> datetime | None:
        return self._times.get(message_id)
