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
    CONSENT_REASONS,
    SoftBounce,
    Suppression,
    SuppressionReason,
    normalise_address,
)
from schemas.common import Lane, Problem, Stream
from schemas.events import BounceCategory, DeliveryEvent, MessageState
from schemas.pipeline import MessageSpec

SEVERITY = (
    SuppressionReason.HARD_BOUNCE,
    SuppressionReason.COMPLAINT,
    SuppressionReason.MANUAL,
    SuppressionReason.REPEATED_SOFT_BOUNCE,
    SuppressionReason.UNSUBSCRIBE,
)
"""When several suppressions stop a message, the one it is reported as (first wins)."""

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


def stops(suppression: Suppression, spec: MessageSpec, now: datetime) -> bool:
    """Whether ``suppression`` (of the message's tenant and address) stops ``spec``."""
    if not suppression.active(now) or suppression.stream is not spec.stream:
        return False
    return not (spec.lane is Lane.CRITICAL and suppression.reason in CONSENT_REASONS)


def verdict(
    spec: MessageSpec, suppressions: Sequence[Suppression], now: datetime
) -> Problem | None:
    """The problem that stops ``spec`` at its recipient's suppressions, or None: it may go."""
    if not suppressions:
        return None
    stopping = {s.reason: s for s in suppressions if stops(s, spec, now)}
    for reason in SEVERITY:
        if (found := stopping.get(reason)) is not None:
            until = f" until {found.expires_at.isoformat()}" if found.expires_at else ""
            return Problem(
                code=f"suppressed_{reason.value}",
                detail=f"{found.address} is suppressed in the {found.stream.value} stream"
                f" ({reason.value}){until}",
            )
    return None


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
