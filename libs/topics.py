"""The topic catalogue: every Kafka topic of the platform, its lanes, partitions and retention.

Pipeline stages read one topic per lane (``sendarix.<stage>.<lane>``) so that a bulk backlog
never sits in front of an OTP. The public topics keep the names fixed by the contract.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from schemas.common import Lane
from schemas.events import DeliveryEvent
from schemas.pipeline import (
    AcceptedMessage,
    DeadLetter,
    DeliveryJob,
    RenderedMessage,
    RetryRequest,
)
from schemas.send import TopicSendRequest

DAY_MS = 24 * 3600 * 1000

LANE_PARTITIONS: dict[Lane, int] = {
    Lane.CRITICAL: 2,
    Lane.HIGH: 2,
    Lane.NORMAL: 4,
    Lane.BULK: 4,
}


@dataclass(frozen=True)
class Topic:
    """One Kafka topic as the platform creates it."""

    name: str
    partitions: int
    retention_ms: int
    description: str
    record: type[BaseModel]


SEND_REQUESTS = "sendarix.send.requests"
SEND_REQUESTS_DLQ = "sendarix.send.requests.dlq"
EVENTS = "sendarix.events"
STAGES: dict[str, tuple[str, type[BaseModel]]] = {
    "render": ("accepted messages waiting for template merge", AcceptedMessage),
    "policy": ("rendered messages waiting for suppression and policy checks", RenderedMessage),
    "route": ("cleared messages waiting for a route", RenderedMessage),
    "deliver": ("delivery attempts waiting for the sender", DeliveryJob),
    "retry": ("deferred attempts waiting for their backoff to pass", RetryRequest),
}
"""Each pipeline stage: what its lane topics hold, and the record type they carry."""


def lane_topic(stage: str, lane: Lane, prefix: str = "") -> str:
    """The topic of one lane of one stage, e.g. ``sendarix.deliver.critical``."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}")
    return f"{prefix}sendarix.{stage}.{lane.value}"


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
            "send requests that could not be accepted, with the reason",
            DeadLetter,
        ),
        Topic(
            public_topic(EVENTS, prefix),
            4,
            7 * DAY_MS,
            "delivery events for applications (CloudEvents 1.0, key = message id)",
            DeliveryEvent,
        ),
    ]
    for stage, (description, record) in STAGES.items():
        for lane in Lane:
            topics.append(
                Topic(
                    lane_topic(stage, lane, prefix),
                    LANE_PARTITIONS[lane],
                    3 * DAY_MS,
                    f"{description} ({lane.value} lane)",
                    record,
                )
            )
    return topics
