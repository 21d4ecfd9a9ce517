"""Publishing delivery events on ``sendarix.events``: one helper every stage uses."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from faststream.kafka import KafkaBroker

from libs.settings import Settings
from libs.topics import EVENTS, public_topic
from schemas.events import DeliveryEvent, EventData, MessageState, delivery_event
from schemas.pipeline import MessageSpec


def event_data(spec: MessageSpec, service: str, **details: Any) -> EventData:
    """The event data of a message as its spec describes it, plus stage-specific details."""
    return EventData(
        message_id=spec.message_id,
        tenant_id=spec.tenant_id,
        recipient=spec.recipient,
        sender=spec.sender,
        stream=spec.stream,
        lane=spec.lane,
        category=spec.category,
        tags=spec.tags,
        metadata=spec.metadata,
        template=spec.template,
        trace_id=spec.trace_id,
        service=service,
        **details,
    )


async def emit(
    broker: KafkaBroker, settings: Settings, state: MessageState, data: EventData
) -> DeliveryEvent:
    """Publish the event reporting ``state`` (keyed by message id) and wait for the broker's ack."""
    event = delivery_event(state, data, datetime.now(UTC))
    await broker.publish(
        event.model_dump_json().encode(),
        public_topic(EVENTS, settings.topic_prefix),
        key=event.subject.encode(),
        headers={"content-type": "application/cloudevents+json"},
    )
    return event
