"""Whether a message may go to its recipient, and what a delivery event teaches about an address.

Dead or hostile addresses (hard bounces, complaints, manual blocks) are never mailed again on
any stream; an unsubscribe only withdraws consent to broadcast mail, so transactional mail such
as a password reset still reaches that person.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import parseaddr
from enum import StrEnum

from schemas.common import Problem, Stream
from schemas.events import DeliveryEvent, MessageState
from schemas.pipeline import MessageSpec


class SuppressionReason(StrEnum):
    """Why an address is on a tenant's suppression list."""

    HARD_BOUNCE = "hard_bounce"
    COMPLAINT = "complaint"
    UNSUBSCRIBE = "unsubscribe"
    MANUAL = "manual"


@dataclass(frozen=True)
class Suppression:
    """One address a tenant must not send to (some or all streams, depending on the reason)."""

    tenant_id: str
    address: str
    reason: SuppressionReason


def address_key(recipient: str) -> str:
    """How suppressions store an address: the bare address, lower-cased."""
    return (parseaddr(recipient)[1] or recipient).strip().lower()


def verdict(spec: MessageSpec, suppression: Suppression | None) -> Problem | None:
    """The problem that stops ``spec`` at its recipient's suppression, or None: it may go."""
    if suppression is None:
        return None
    if suppression.reason is SuppressionReason.UNSUBSCRIBE and spec.stream is not Stream.BROADCAST:
        return None
    return Problem(
        code=f"suppressed_{suppression.reason.value}",
        detail=f"{suppression.address} is suppressed for this tenant ({suppression.reason.value})",
    )


LEARNED_FROM = frozenset(
    state.event_type
    for state in (MessageState.BOUNCED, MessageState.COMPLAINED, MessageState.UNSUBSCRIBED)
)
"""The event types that can suppress an address; the feedback reader skips every other one."""


def learned_suppression(event: DeliveryEvent) -> Suppression | None:
    """The suppression a delivery event calls for: dead addresses and complaints, never retried."""
    recipient = event.data.recipient
    if recipient is None:
        return None
    try:
        state = event.state
    except ValueError:  # an event type newer than this service: nothing to learn from it
        return None
    if state is MessageState.COMPLAINED:
        reason = SuppressionReason.COMPLAINT
    elif state is MessageState.UNSUBSCRIBED:
        reason = SuppressionReason.UNSUBSCRIBE
    elif state is MessageState.BOUNCED and event.data.bounce and event.data.bounce.hard:
        reason = SuppressionReason.HARD_BOUNCE
    else:
        return None
    return Suppression(event.data.tenant_id, address_key(recipient), reason)
