"""Whether a message may go to its recipient, and what a delivery event teaches about an address.

Suppressions are per stream. A hard bounce suppresses the address in the stream it bounced in;
an unsubscribe withdraws consent to its stream only; a complaint withdraws consent to every
stream of the tenant. Consent is not what critical account mail (one-time codes, password
resets, login verification, security alerts: the ``critical`` lane) rests on, so complaints and
unsubscribes never stop it — a dead address (hard bounce), a manual block or a pause for
repeated soft bounces does. Bounces are read from the classification the event carries
(``EventData.bounce``); no reply text is parsed here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from libs.suppressions import (
    SoftBounce,
    Suppression,
    SuppressionReason,
    normalise_address,
)
from schemas.common import Stream
from schemas.events import BounceCategory, DeliveryEvent, MessageState

RECIPIENT_CAUSES = frozenset(
    {BounceCategory.MAILBOX_FULL, BounceCategory.INVALID_RECIPIENT, BounceCategory.BAD_DOMAIN}
)
"""Soft-bounce categories that lie with the recipient's mailbox and count towards a pause.
Throttling, policy, spam blocks and auth failures blame the sender (suppressing the recipient
would lose mail they want); ``other`` blames no one in particular (a timeout, say)."""


@dataclass(frozen=True)
class SoftBouncePolicy:
    """``count`` soft-bounced messages to an address within ``window`` pause it for ``pause``."""

    count: int = 3
    window: timedelta = timedelta(days=7)
    pause: timedelta = timedelta(days=3)


LEARNED_FROM = frozenset(
    state.event_type
    for state in (
        MessageState.BOUNCED,
        MessageState.DEFERRED,
        MessageState.COMPLAINED,
        MessageState.UNSUBSCRIBED,
    )
)
"""The event types that can suppress an address; the feedback reader skips every other one."""


def _state(event: DeliveryEvent) -> MessageState | None:
    try:
        return event.state
    except ValueError:  # an event type newer than this service: nothing to learn from it
        return None


def learned_suppressions(event: DeliveryEvent) -> list[Suppression]:
    """The suppressions an event calls for at once: a hard bounce in its stream (every stream
    when the event does not say which), a complaint in every stream, an unsubscribe in its
    stream (broadcast when it does not say)."""
    data, state = event.data, _state(event)
    if data.recipient is None or state is None:
        return []
    if state is MessageState.COMPLAINED:
        reason, streams = SuppressionReason.COMPLAINT, tuple(Stream)
    elif state is MessageState.UNSUBSCRIBED:
        reason, streams = SuppressionReason.UNSUBSCRIBE, (data.stream or Stream.BROADCAST,)
    elif state is MessageState.BOUNCED and data.bounce is not None and data.bounce.hard:
        reason = SuppressionReason.HARD_BOUNCE
        streams = (data.stream,) if data.stream else tuple(Stream)
    else:
        return []
    address = normalise_address(data.recipient)
    return [
        Suppression(data.tenant_id, address, stream, reason, source_message_id=data.message_id)
        for stream in streams
    ]


def soft_bounce(event: DeliveryEvent) -> SoftBounce | None:
    """The soft bounce an event reports, when its cause lies with the recipient's mailbox."""
    data, state = event.data, _state(event)
    if state not in (MessageState.BOUNCED, MessageState.DEFERRED) or data.recipient is None:
        return None
    if data.bounce is None or data.bounce.hard or data.bounce.category not in RECIPIENT_CAUSES:
        return None
    address = normalise_address(data.recipient)
    stream = data.stream or Stream.TRANSACTIONAL
    return SoftBounce(data.tenant_id, address, stream, data.message_id)


def paused(
    counted: Sequence[tuple[SoftBounce, int]], policy: SoftBouncePolicy, now: datetime
) -> list[Suppression]:
    """The pauses that soft-bounce counts (messages within the window) call for."""
    return [
        Suppression(
            bounce.tenant_id,
            bounce.address,
            bounce.stream,
            SuppressionReason.REPEATED_SOFT_BOUNCE,
            source_message_id=bounce.message_id,
            expires_at=now + policy.pause,
        )
        for bounce, count in counted
        if count >= policy.count
    ]
