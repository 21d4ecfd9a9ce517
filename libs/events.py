"""Delivery events on ``sendarix.events``: how every stage describes a message, and the headers.

Besides the CloudEvent itself (structured mode: the whole event is the record's JSON value),
each record carries its event type and tenant as Kafka headers, so that a reader interested in
a few types or tenants (policy-check's feedback, the webhook) skips the rest without decoding.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from schemas.events import DeliveryEvent, EventData, MessageState, delivery_event
from schemas.pipeline import MessageSpec

CONTENT_TYPE = "application/cloudevents+json"
TYPE_HEADER = "sendarix-event-type"
TENANT_HEADER = "sendarix-tenant-id"


def event_data(spec: MessageSpec, service: str, **details: Any) -> EventData:
    """The event data of a message as its spec describes it, plus stage-specific details
    (which win: render names the version it really merged)."""
    described: dict[str, Any] = {
        "message_id": spec.message_id,
        "tenant_id": spec.tenant_id,
        "recipient": spec.recipient.address,
        "sender": spec.sender.address,
        "stream": spec.stream,
        "lane": spec.lane,
        "category": spec.category,
        "tags": spec.tags,
        "metadata": spec.metadata,
        "template": spec.template,
        "template_version": spec.template_version,
        "trace_id": spec.trace_id,
        "service": service,
        "key_id": spec.key_id,
    }
    return EventData(**(described | details))


def new_event(state: MessageState, data: EventData) -> DeliveryEvent:
    """The event reporting ``state`` now."""
    return delivery_event(state, data, datetime.now(UTC))


def event_headers(event: DeliveryEvent) -> list[tuple[str, bytes]]:
    """The Kafka headers of an event's record."""
    return [
        ("content-type", CONTENT_TYPE.encode()),
        (TYPE_HEADER, event.type.encode()),
        (TENANT_HEADER, event.data.tenant_id.encode()),
    ]


def header(
    headers: list[tuple[str, bytes]] | tuple[tuple[str, bytes], ...], name: str
) -> str | None:
    """The first value of a Kafka header, decoded (None when absent or not UTF-8)."""
    for key, value in headers:
        if key == name:
            try:
                return value.decode()
            except UnicodeDecodeError:
                return None
    return None
