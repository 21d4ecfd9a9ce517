"""The recorder's pure steps: text PostgreSQL cannot store, and how a batch folds into rows."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from libs.events import event_data
from schemas.events import DeliveryEvent, MessageState, delivery_event
from schemas.pipeline import Route
from services.ingest.recorder import _fold, _moves, storable
from tests.records import message_spec

START = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def event(state: MessageState, seconds: int = 0, **details: object) -> DeliveryEvent:
    spec = message_spec(message_id="0c6f3b0e-93a4-4d58-8a61-2f6d1c5e7b90")
    data = event_data(spec, "test", **details)
    return delivery_event(state, data, START + timedelta(seconds=seconds))


def test_an_event_without_escapes_is_stored_as_read() -> None:
    accepted = event(MessageState.ACCEPTED, subject="Olá")
    raw = accepted.model_dump_json().encode()
    assert storable(accepted, raw) == (accepted, raw.decode())


def test_nul_never_reaches_the_database() -> None:
    accepted = event(MessageState.ACCEPTED)
    value = json.loads(accepted.model_dump_json())
    value["data"]["subject"] = "a\u0000b"
    raw = json.dumps(value).encode()  # as a foreign producer might write it: escaped
    stored, text = storable(DeliveryEvent.model_validate_json(raw), raw)
    assert stored.data.subject == "ab"
    assert "\\u0000" not in text


def test_an_event_with_a_lone_surrogate_cannot_be_decoded_so_it_is_parked_before() -> None:
    value = json.loads(event(MessageState.ACCEPTED).model_dump_json())
    value["data"]["subject"] = "a\ud800b"
    with pytest.raises(ValidationError):
        DeliveryEvent.model_validate_json(json.dumps(value).encode())


def test_a_batch_folds_into_one_row_per_message_in_event_order() -> None:
    route = Route(name="relay", host="127.0.0.1", port=25, pool="p")
    events = [
        event(MessageState.ACCEPTED, 0, subject="{{ raw }}"),
        event(MessageState.ROUTED, 2, route=route),
        event(
            MessageState.RENDERED,
            1,
            subject="Rendered",
            template_version=3,
            layout_version=2,
            locale="pt",
        ),
        event(MessageState.DELIVERED, 3),
    ]
    [(message_id, move)] = _moves(events).items()
    assert message_id == events[0].subject
    assert move.states == [
        MessageState.ACCEPTED,
        MessageState.ROUTED,
        MessageState.RENDERED,
        MessageState.DELIVERED,
    ]
    assert _fold(None, move.states) == "delivered"
    assert _fold("delivered", [MessageState.ROUTED]) == "delivered"  # never moves back
    assert move.fields["subject"] == "Rendered"  # the latest known subject wins
    assert (move.fields["template_version"], move.fields["layout_version"]) == (3, 2)
    assert move.fields["locale"] == "pt"
    assert json.loads(move.fields["route"])["name"] == "relay"
    assert move.fields["updated_at"] == START + timedelta(seconds=3)
