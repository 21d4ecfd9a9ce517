"""Suppression verdicts per stream, and what delivery events teach about an address."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from schemas.common import Stream
from schemas.events import Bounce, BounceCategory, EventData, MessageState, delivery_event
from schemas.pipeline import MessageSpec, SmtpReply
from services.policy_check.decide import (
    Suppression,
    SuppressionReason,
    address_key,
    learned_suppression,
    verdict,
)
from tests.records import message_spec

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def spec(stream: Stream) -> MessageSpec:
    return message_spec(recipient="User@Example.test", stream=stream)


def suppression(reason: SuppressionReason) -> Suppression:
    return Suppression("t-1", "user@example.test", reason)


@pytest.mark.parametrize("stream", list(Stream))
@pytest.mark.parametrize(
    "reason", [SuppressionReason.HARD_BOUNCE, SuppressionReason.COMPLAINT, SuppressionReason.MANUAL]
)
def test_dead_or_hostile_addresses_are_blocked_on_every_stream(
    stream: Stream, reason: SuppressionReason
) -> None:
    problem = verdict(spec(stream), suppression(reason))
    assert problem is not None
    assert problem.code == f"suppressed_{reason.value}"
    assert "user@example.test" in problem.detail


def test_unsubscribe_blocks_broadcast_only() -> None:
    unsubscribed = suppression(SuppressionReason.UNSUBSCRIBE)
    problem = verdict(spec(Stream.BROADCAST), unsubscribed)
    assert problem is not None and problem.code == "suppressed_unsubscribe"
    assert verdict(spec(Stream.TRANSACTIONAL), unsubscribed) is None


@pytest.mark.parametrize("stream", list(Stream))
def test_no_suppression_clears(stream: Stream) -> None:
    assert verdict(spec(stream), None) is None


def test_address_key_is_the_bare_lower_cased_address() -> None:
    assert address_key(" User@Example.TEST ") == "user@example.test"
    assert address_key("Zoë <Zoe@Example.test>") == "zoe@example.test"


def event(state: MessageState, **data: Any) -> Any:
    values: dict[str, Any] = {
        "message_id": "m-1",
        "tenant_id": "t-1",
        "recipient": "Bob@Example.test",
        "trace_id": "0" * 32,
        "service": "sender",
    }
    return delivery_event(state, EventData(**(values | data)), NOW)


DEAD = SmtpReply(code=550, enhanced_status="5.1.1", text="user unknown")
HARD = Bounce(category=BounceCategory.INVALID_RECIPIENT, hard=True)


def test_hard_bounce_suppresses_the_address() -> None:
    learned = learned_suppression(event(MessageState.BOUNCED, smtp=DEAD, bounce=HARD))
    assert learned == Suppression("t-1", "bob@example.test", SuppressionReason.HARD_BOUNCE)


def test_the_classification_decides_not_the_reply_text() -> None:
    spam = Bounce(category=BounceCategory.SPAM_BLOCK, hard=False)
    assert learned_suppression(event(MessageState.BOUNCED, smtp=DEAD, bounce=spam)) is None
    assert learned_suppression(event(MessageState.BOUNCED, smtp=DEAD)) is None
    assert learned_suppression(event(MessageState.BOUNCED)) is None


def test_every_complaint_suppresses() -> None:
    learned = learned_suppression(event(MessageState.COMPLAINED))
    assert learned is not None and learned.reason is SuppressionReason.COMPLAINT


def test_unsubscribe_event_suppresses_broadcast() -> None:
    learned = learned_suppression(event(MessageState.UNSUBSCRIBED))
    assert learned is not None and learned.reason is SuppressionReason.UNSUBSCRIBE


@pytest.mark.parametrize(
    "state", [MessageState.DELIVERED, MessageState.DEFERRED, MessageState.FAILED]
)
def test_other_events_teach_nothing(state: MessageState) -> None:
    assert learned_suppression(event(state, smtp=DEAD, bounce=HARD)) is None


def test_events_without_recipient_or_of_unknown_type_teach_nothing() -> None:
    assert learned_suppression(event(MessageState.COMPLAINED, recipient=None)) is None
    unknown = event(MessageState.COMPLAINED).model_copy(update={"type": "sendarix.message.opened"})
    assert learned_suppression(unknown) is None
