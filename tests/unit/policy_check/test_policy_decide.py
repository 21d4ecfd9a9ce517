"""Suppression verdicts per stream and lane, and what delivery events teach about an address."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from libs.suppressions import (
    SoftBounce,
    Suppression,
    SuppressionReason,
    normalise_address,
    stops,
    verdict,
)
from schemas.common import Lane, Stream
from schemas.events import (
    Bounce,
    BounceCategory,
    DeliveryEvent,
    EventData,
    MessageState,
    delivery_event,
)
from schemas.pipeline import MessageSpec
from services.policy_check.decide import (
    SoftBouncePolicy,
    learned_suppressions,
    paused,
    soft_bounce,
)
from tests.records import message_spec

NOW = datetime(2026, 1, 1, tzinfo=UTC)
R = SuppressionReason


def spec(stream: Stream, lane: Lane = Lane.NORMAL) -> MessageSpec:
    return message_spec(recipient="User@Example.test", stream=stream, lane=lane)


def suppression(
    reason: SuppressionReason, stream: Stream, expires_at: datetime | None = None
) -> Suppression:
    return Suppression("t-1", "user@example.test", stream, reason, expires_at=expires_at)


@pytest.mark.parametrize("stream", list(Stream))
@pytest.mark.parametrize("reason", list(SuppressionReason))
def test_a_suppression_stops_its_own_stream_only(stream: Stream, reason: R) -> None:
    other = Stream.BROADCAST if stream is Stream.TRANSACTIONAL else Stream.TRANSACTIONAL
    problem = verdict(spec(stream), [suppression(reason, stream)], NOW)
    assert problem is not None
    assert problem.code == f"suppressed_{reason.value}"
    assert "user@example.test" in problem.detail
    assert verdict(spec(other), [suppression(reason, stream)], NOW) is None


@pytest.mark.parametrize("reason", [R.COMPLAINT, R.UNSUBSCRIBE])
def test_consent_reasons_never_stop_critical_account_mail(reason: R) -> None:
    found = [suppression(reason, Stream.TRANSACTIONAL)]
    assert verdict(spec(Stream.TRANSACTIONAL, Lane.CRITICAL), found, NOW) is None
    assert verdict(spec(Stream.TRANSACTIONAL, Lane.HIGH), found, NOW) is not None


@pytest.mark.parametrize("reason", [R.HARD_BOUNCE, R.MANUAL, R.REPEATED_SOFT_BOUNCE])
def test_dead_blocked_or_paused_addresses_stop_critical_mail_too(reason: R) -> None:
    found = [suppression(reason, Stream.TRANSACTIONAL)]
    assert verdict(spec(Stream.TRANSACTIONAL, Lane.CRITICAL), found, NOW) is not None


def test_an_expired_suppression_stops_nothing() -> None:
    expired = suppression(R.MANUAL, Stream.TRANSACTIONAL, expires_at=NOW)
    assert not stops(expired, spec(Stream.TRANSACTIONAL), NOW)
    later = suppression(R.MANUAL, Stream.TRANSACTIONAL, expires_at=NOW + timedelta(seconds=1))
    problem = verdict(spec(Stream.TRANSACTIONAL), [later], NOW)
    assert problem is not None and "until 2026-01-01T00:00:01" in problem.detail


def test_the_most_severe_reason_is_reported() -> None:
    found = [suppression(r, Stream.BROADCAST) for r in (R.UNSUBSCRIBE, R.HARD_BOUNCE, R.MANUAL)]
    problem = verdict(spec(Stream.BROADCAST), found, NOW)
    assert problem is not None and problem.code == "suppressed_hard_bounce"


@pytest.mark.parametrize("stream", list(Stream))
def test_no_suppression_clears(stream: Stream) -> None:
    assert verdict(spec(stream), [], NOW) is None


def test_addresses_are_stored_bare_and_lower_cased() -> None:
    assert normalise_address(" User@Example.TEST ") == "user@example.test"
    assert normalise_address("Zoë <Zoe@Example.test>") == "zoe@example.test"


def event(state: MessageState, **data: Any) -> DeliveryEvent:
    values: dict[str, Any] = {
        "message_id": "m-1",
        "tenant_id": "t-1",
        "recipient": "Bob@Example.test",
        "stream": Stream.TRANSACTIONAL,
        "trace_id": "0" * 32,
        "service": "sender",
    }
    return delivery_event(state, EventData(**(values | data)), NOW)


HARD = Bounce(category=BounceCategory.INVALID_RECIPIENT, hard=True)
FULL = Bounce(category=BounceCategory.MAILBOX_FULL, hard=False)


def taught(event: DeliveryEvent) -> set[tuple[Stream, SuppressionReason]]:
    learned = learned_suppressions(event)
    assert all(s.address == "bob@example.test" and s.source_message_id == "m-1" for s in learned)
    return {(s.stream, s.reason) for s in learned}


def test_a_hard_bounce_suppresses_in_its_stream() -> None:
    assert taught(event(MessageState.BOUNCED, bounce=HARD)) == {
        (Stream.TRANSACTIONAL, R.HARD_BOUNCE)
    }
    broadcast = event(MessageState.BOUNCED, bounce=HARD, stream=Stream.BROADCAST)
    assert taught(broadcast) == {(Stream.BROADCAST, R.HARD_BOUNCE)}
    unknown = event(MessageState.BOUNCED, bounce=HARD, stream=None)
    assert taught(unknown) == {(s, R.HARD_BOUNCE) for s in Stream}


def test_soft_or_unclassified_bounces_teach_nothing_at_once() -> None:
    assert taught(event(MessageState.BOUNCED, bounce=FULL)) == set()
    assert taught(event(MessageState.BOUNCED)) == set()


def test_a_complaint_suppresses_every_stream() -> None:
    assert taught(event(MessageState.COMPLAINED)) == {(s, R.COMPLAINT) for s in Stream}


def test_an_unsubscribe_suppresses_its_stream_only() -> None:
    assert taught(event(MessageState.UNSUBSCRIBED)) == {(Stream.TRANSACTIONAL, R.UNSUBSCRIBE)}
    unknown = event(MessageState.UNSUBSCRIBED, stream=None)
    assert taught(unknown) == {(Stream.BROADCAST, R.UNSUBSCRIBE)}


@pytest.mark.parametrize("state", [MessageState.DELIVERED, MessageState.FAILED])
def test_other_events_teach_nothing(state: MessageState) -> None:
    assert taught(event(state, bounce=HARD)) == set()
    assert soft_bounce(event(state, bounce=FULL)) is None


def test_events_without_recipient_or_of_unknown_type_teach_nothing() -> None:
    assert taught(event(MessageState.COMPLAINED, recipient=None)) == set()
    unknown = event(MessageState.COMPLAINED).model_copy(update={"type": "sendarix.message.opened"})
    assert taught(unknown) == set()
    assert soft_bounce(unknown) is None


@pytest.mark.parametrize("state", [MessageState.BOUNCED, MessageState.DEFERRED])
def test_soft_bounces_of_the_recipients_mailbox_count(state: MessageState) -> None:
    counted = soft_bounce(event(state, bounce=FULL))
    assert counted == SoftBounce("t-1", "bob@example.test", Stream.TRANSACTIONAL, "m-1")


@pytest.mark.parametrize(
    "category",
    [
        BounceCategory.THROTTLING,
        BounceCategory.POLICY,
        BounceCategory.SPAM_BLOCK,
        BounceCategory.AUTH_FAILURE,
        BounceCategory.OTHER,
    ],
)
def test_soft_bounces_that_blame_the_sender_do_not_count(category: BounceCategory) -> None:
    bounce = Bounce(category=category, hard=False)
    assert soft_bounce(event(MessageState.DEFERRED, bounce=bounce)) is None
    assert soft_bounce(event(MessageState.BOUNCED, bounce=HARD)) is None


def test_enough_soft_bounces_within_the_window_pause_the_address() -> None:
    policy = SoftBouncePolicy(count=3, pause=timedelta(days=3))
    bounce = SoftBounce("t-1", "bob@example.test", Stream.BROADCAST, "m-9")
    assert paused([(bounce, 2)], policy, NOW) == []
    [pause] = paused([(bounce, 3)], policy, NOW)
    assert pause == Suppression(
        "t-1",
        "bob@example.test",
        Stream.BROADCAST,
        R.REPEATED_SOFT_BOUNCE,
        source_message_id="m-9",
        expires_at=NOW + timedelta(days=3),
    )
