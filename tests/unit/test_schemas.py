"""The record contracts: lanes, request parsing, event ids and CloudEvents conformance."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from cloudevents.core.bindings.kafka import KafkaMessage, from_structured_event
from pydantic import ValidationError

from schemas.common import Lane, Stream, lane_for
from schemas.events import EventData, MessageState, delivery_event, event_id
from schemas.send import SendRequest, TopicSendRequest


@pytest.mark.parametrize(
    ("category", "stream", "priority", "ceiling", "lane"),
    [
        ("otp", Stream.TRANSACTIONAL, None, Lane.HIGH, Lane.CRITICAL),
        ("password_reset", Stream.TRANSACTIONAL, None, Lane.HIGH, Lane.CRITICAL),
        ("billing", Stream.TRANSACTIONAL, None, Lane.HIGH, Lane.HIGH),
        ("notification", Stream.TRANSACTIONAL, None, Lane.HIGH, Lane.NORMAL),
        (None, Stream.TRANSACTIONAL, None, Lane.HIGH, Lane.NORMAL),
        ("weekly_digest", Stream.BROADCAST, None, Lane.HIGH, Lane.BULK),
        ("otp", Stream.BROADCAST, None, Lane.HIGH, Lane.BULK),
        # lowering is always allowed
        ("otp", Stream.TRANSACTIONAL, Lane.NORMAL, Lane.HIGH, Lane.NORMAL),
        ("notification", Stream.TRANSACTIONAL, Lane.BULK, Lane.HIGH, Lane.BULK),
        # raising: up to the ceiling, never into critical, never for broadcast mail
        ("notification", Stream.TRANSACTIONAL, Lane.HIGH, Lane.HIGH, Lane.HIGH),
        ("notification", Stream.TRANSACTIONAL, Lane.CRITICAL, Lane.HIGH, Lane.HIGH),
        ("notification", Stream.TRANSACTIONAL, Lane.CRITICAL, Lane.CRITICAL, Lane.HIGH),
        ("notification", Stream.TRANSACTIONAL, Lane.HIGH, Lane.NORMAL, Lane.NORMAL),
        (None, Stream.BROADCAST, Lane.CRITICAL, Lane.HIGH, Lane.BULK),
        (None, Stream.BROADCAST, Lane.HIGH, Lane.CRITICAL, Lane.BULK),
    ],
)
def test_lane_follows_the_category_table_and_priority_only_within_the_ceiling(
    category: str | None, stream: Stream, priority: Lane | None, ceiling: Lane, lane: Lane
) -> None:
    assert lane_for(category, stream, priority, ceiling) is lane


def test_send_request_reads_contract_field_names() -> None:
    request = SendRequest.model_validate(
        {"from": "Acme <login@acme.test>", "to": "a@b.test", "subject": "Hi", "text": "x"}
    )
    assert request.sender == "Acme <login@acme.test>"
    assert request.to == ["a@b.test"]
    assert request.stream is Stream.TRANSACTIONAL
    assert request.model_dump(by_alias=True)["from"] == "Acme <login@acme.test>"


@pytest.mark.parametrize(
    "body",
    [
        {"to": "a@b.test"},
        {"from": "x@y.test", "to": []},
        {"from": "x@y.test", "to": "a@b.test", "priority": "urgent"},
        {"from": "x@y.test", "to": "a@b.test", "surprise": 1},
        {"from": "x@y.test", "to": "a@b.test", "tags": ["t"] * 11},
    ],
)
def test_send_request_refuses_bad_bodies(body: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        SendRequest.model_validate(body)


def test_topic_request_needs_a_tenant() -> None:
    with pytest.raises(ValidationError):
        TopicSendRequest.model_validate({"from": "x@y.test", "to": "a@b.test"})


def test_event_ids_are_deterministic_per_state_and_attempt() -> None:
    first = event_id("m-1", MessageState.DEFERRED, 1)
    assert first == event_id("m-1", MessageState.DEFERRED, 1)
    assert first != event_id("m-1", MessageState.DEFERRED, 2)
    assert first != event_id("m-1", MessageState.DELIVERED, 1)
    assert first != event_id("m-2", MessageState.DEFERRED, 1)


def test_terminal_states() -> None:
    assert MessageState.DELIVERED.terminal
    assert MessageState.SUPPRESSED.terminal
    assert not MessageState.DEFERRED.terminal
    assert not MessageState.ACCEPTED.terminal


def test_delivery_event_is_a_structured_cloudevent() -> None:
    data = EventData(
        message_id="3f0c2f9e-4e7e-4a53-9b0a-1f1f1f1f1f1f",
        tenant_id="t-1",
        recipient="success@simulator.sendarix.test",
        lane=Lane.CRITICAL,
        category="otp",
        attempt=1,
        trace_id="0af7651916cd43dd8448eb211c80319c",
        service="sender",
    )
    event = delivery_event(MessageState.DELIVERED, data, datetime(2026, 1, 2, tzinfo=UTC))
    body = event.model_dump_json().encode()

    parsed = from_structured_event(
        KafkaMessage(
            headers={"content-type": b"application/cloudevents+json"},
            key=data.message_id.encode(),
            value=body,
        )
    )

    assert parsed.get_type() == "sendarix.message.delivered"
    assert parsed.get_subject() == data.message_id
    assert parsed.get_id() == event.id
    assert parsed.get_source() == "/sendarix/sender"
    payload = parsed.get_data()
    assert isinstance(payload, dict)
    assert payload["trace_id"] == data.trace_id
    assert event.state is MessageState.DELIVERED
