"""The topic catalogue: every Kafka topic of the platform, its lanes, partitions and limits.

Pipeline stages read one topic per lane (``sendarix.<stage>.<lane>``) so that a bulk backlog
never sits in front of an OTP. A stage is a name plus the record type its topics carry, so a
wrong record on a topic is a type error, not a surprise downstream. Records a consumer can never
handle are parked on a dead-letter topic of their stage (``sendarix.<stage>.dlq``). The public
topics keep the names fixed by the contract.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from pydantic import BaseModel

from schemas.common import Lane
from schemas.events import DeliveryEvent
from schemas.notices import Notice
from schemas.pipeline import (
    AcceptedMessage,
    DeliveryJob,
    ParkedRecord,
    PipelineRecord,
    RenderedMessage,
    RetryRequest,
)
from schemas.send import TopicSendRequest

DAY_MS = 24 * 3600 * 1000

MAX_RECORD_BYTES = 32 * 1024 * 1024
"""The largest record any topic, producer and consumer of the platform carries.

One limit everywhere: the biggest message the edge accepts (``libs.sendable``) still fits once
rendered (its spec, its content and a derived text part travel together), and a record parked on
a dead-letter topic keeps its original bytes plus a few headers."""

LANE_PARTITIONS: dict[Lane, int] = {
    Lane.CRITICAL: 1,
    Lane.HIGH: 1,
    Lane.NORMAL: 4,
    Lane.BULK: 4,
}
"""One partition for the urgent lanes: aiokafka keeps one fetch in flight per broker, so a
consumer of several partitions fetches a partition it just emptied only once the long poll of
the others returns — a wait every urgent record would pay at every hop. One partition is never
behind another's poll, and one consumer per service handles far more than any tenant may send
in the critical lane. Bulk and normal mail spread over four partitions (more instances)."""

RecordT = TypeVar("RecordT", bound=PipelineRecord)


@dataclass(frozen=True)
class Stage(Generic[RecordT]):
    """One pipeline stage: its name and the record its lane topics carry."""

    name: str
    record: type[RecordT]
    description: str

    def topic(self, lane: Lane, prefix: str = "") -> str:
        """The topic of one lane of this stage, e.g. ``sendarix.deliver.critical``."""
        return f"{prefix}sendarix.{self.name}.{lane.value}"

    def dead_letters(self, prefix: str = "") -> str:
        """Where records of this stage that can never be handled are parked."""
        return f"{prefix}sendarix.{self.name}.dlq"


RENDER = Stage("render", AcceptedMessage, "accepted messages waiting for template merge")
POLICY = Stage(
    "policy", RenderedMessage, "rendered messages waiting for suppression and policy checks"
)
ROUTE = Stage("route", RenderedMessage, "cleared messages waiting for a route")
DELIVER = Stage("deliver", DeliveryJob, "delivery attempts waiting for the sender")
DELIVER_SLOW = Stage(
    "deliver-slow",
    DeliveryJob,
    "delivery attempts to a site that answers slowly, kept apart so it never holds the others",
)
RETRY = Stage("retry", RetryRequest, "deferred attempts waiting for their backoff to pass")
STAGES: dict[str, Stage[PipelineRecord]] = {
    stage.name: stage  # type: ignore[misc]
    for stage in (RENDER, POLICY, ROUTE, DELIVER, DELIVER_SLOW, RETRY)
}
"""Every pipeline stage, by name, in pipeline order."""


@dataclass(frozen=True)
class Topic:
    """One Kafka topic as the platform creates it."""

    name: str
    partitions: int
    retention_ms: int
    description: str
    record: type[BaseModel]
    parked: bool = False
    """A dead-letter topic: each record is a parked record's original bytes, and ``record``
    describes the headers that say why it was parked."""


SEND_REQUESTS = "sendarix.send.requests"
SEND_REQUESTS_DLQ = "sendarix.send.requests.dlq"
EVENTS = "sendarix.events"
EVENTS_DLQ = "sendarix.events.dlq"
NOTICES = "sendarix.notices"


def intake_topic(lane: Lane, prefix: str = "") -> str:
    """Where ingest's triage puts a send request of ``sendarix.send.requests`` for the intake of
    its lane (the record's bytes as produced, its origin in a header)."""
    return f"{prefix}sendarix.intake.{lane.value}"


def lane_topic(stage: str, lane: Lane, prefix: str = "") -> str:
    """The topic of one lane of the stage named ``stage``, e.g. ``sendarix.deliver.critical``."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}")
    return STAGES[stage].topic(lane, prefix)


def public_topic(name: str, prefix: str = "") -> str:
    """A public topic's name under the optional test prefix."""
    return f"{prefix}{name}"


def catalogue(prefix: str = "") -> list[Topic]:
    """Every topic the platform needs, as ``deploy`` creates them at start-up."""
    topics = [
        Topic(
            public_topic(SEND_REQUESTS, prefix),
            4,
            7 * DAY_MS,
            "send requests produced by applications",
            TopicSendRequest,
        ),
        Topic(
            public_topic(SEND_REQUESTS_DLQ, prefix),
            1,
            30 * DAY_MS,
            "send requests that could not be accepted: the original record, and why",
            ParkedRecord,
            parked=True,
        ),
        Topic(
            public_topic(EVENTS, prefix),
            4,
            7 * DAY_MS,
            "delivery events for applications (CloudEvents 1.0, key = message id)",
            DeliveryEvent,
        ),
        Topic(
            public_topic(EVENTS_DLQ, prefix),
            1,
            30 * DAY_MS,
            "delivery events a reader of the event stream could not handle, and why",
            ParkedRecord,
            parked=True,
        ),
        Topic(
            public_topic(NOTICES, prefix),
            1,
            30 * DAY_MS,
            "notices about a tenant: alerts opened and resolved, webhook endpoints disabled"
            " (CloudEvents 1.0, key = tenant id)",
            Notice,
        ),
    ]
    for lane in Lane:
        topics.append(
            Topic(
                intake_topic(lane, prefix),
                LANE_PARTITIONS[lane],
                3 * DAY_MS,
                f"send requests from the topic, sorted by urgency for the intake ({lane.value})",
                TopicSendRequest,
            )
        )
    for stage in STAGES.values():
        for lane in Lane:
            topics.append(
                Topic(
                    stage.topic(lane, prefix),
                    LANE_PARTITIONS[lane],
                    3 * DAY_MS,
                    f"{stage.description} ({lane.value} lane)",
                    stage.record,
                )
            )
        topics.append(
            Topic(
                stage.dead_letters(prefix),
                1,
                30 * DAY_MS,
                f"{stage.name} records that could not be handled: the original record, and why",
                ParkedRecord,
                parked=True,
            )
        )
    return topics
