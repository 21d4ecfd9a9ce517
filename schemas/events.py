"""The public delivery-event stream ``sendarix.events``: CloudEvents 1.0, structured-mode JSON.

Kafka key = message id; ``type`` = ``sendarix.message.<state>``; ``subject`` = message id.
Event ids are derived from (message, state, attempt), so a stage that runs twice after a crash
emits the same event twice and every consumer can drop the copy.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import ConfigDict, Field

from schemas.common import AppliedRule, Lane, Problem, Record, Stream
from schemas.pipeline import Route, SmtpReply

EVENT_NAMESPACE = uuid.UUID("6f1f5d2a-3c1e-4f0b-9d1e-5e6e3a9b7c21")
EVENT_TYPE_PREFIX = "sendarix.message."


class MessageState(StrEnum):
    """Where a message is. The terminal ones end its journey through the pipeline."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"
    RENDERED = "rendered"
    SUPPRESSED = "suppressed"
    HELD = "held"
    """Kept by a customer rule (``hold``) until released, cancelled or expired."""
    BLOCKED = "blocked"
    """Stopped by a customer rule (``block``)."""
    ROUTED = "routed"
    DEFERRED = "deferred"
    DELAYED = "delayed"
    """The receiving side reported (a delay DSN) that it is still trying to deliver a message it
    took: nothing to do but wait; the sender's own retries are ``deferred``."""
    DELIVERED = "delivered"
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    UNSUBSCRIBED = "unsubscribed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    """Cancelled through the API before any attempt of it was handed to SMTP."""

    @property
    def terminal(self) -> bool:
        """True when no pipeline stage will act on the message again."""
        return self in TERMINAL_STATES

    @property
    def event_type(self) -> str:
        """The CloudEvents ``type`` of this state."""
        return EVENT_TYPE_PREFIX + self.value


TERMINAL_STATES = frozenset(
    {
        MessageState.REJECTED,
        MessageState.SUPPRESSED,
        MessageState.BLOCKED,
        MessageState.DELIVERED,
        MessageState.BOUNCED,
        MessageState.FAILED,
        MessageState.CANCELLED,
    }
)


class BounceCategory(StrEnum):
    """Why mail to a recipient bounced or was deferred, as one classifier (``libs.bounces``) reads
    a synchronous SMTP reply or a later delivery status notification."""

    INVALID_RECIPIENT = "invalid_recipient"
    BAD_DOMAIN = "bad_domain"
    MAILBOX_FULL = "mailbox_full"
    SPAM_BLOCK = "spam_block"
    POLICY = "policy"
    THROTTLING = "throttling"
    AUTH_FAILURE = "auth_failure"
    OTHER = "other"


class Bounce(Record):
    """The classification a ``bounced`` or ``deferred`` event carries, so no reader re-parses
    reply text: the category, whether the address itself is dead, and whether it came back
    asynchronously (a DSN after an earlier 250) rather than as the SMTP reply."""

    model_config = ConfigDict(serialize_by_alias=True)

    category: BounceCategory
    hard: bool
    is_async: bool = Field(default=False, alias="async")


class EventData(Record):
    """What every delivery event says about its message."""

    message_id: str
    tenant_id: str
    recipient: str | None = None
    sender: str | None = None
    stream: Stream | None = None
    lane: Lane | None = None
    lane_reason: str | None = None
    """Why the message travels in its lane (on ``accepted``)."""
    category: str | None = None
    tags: list[str] = Field(default_factory=list)
    metadata: dict[str, str] = Field(default_factory=dict)
    template: str | None = None
    template_version: int | None = None
    layout_version: int | None = None
    locale: str | None = None
    """The template locale rendered (``rendered``), after the fallback chain."""
    subject: str | None = None
    route: Route | None = None
    attempt: int | None = None
    smtp: SmtpReply | None = None
    bounce: Bounce | None = None
    """How the bounce or deferral was classified (``bounced`` and ``deferred`` only)."""
    feedback_type: str | None = None
    """The ARF ``Feedback-Type`` of a complaint report (``abuse``, ``opt-out``, …)."""
    problem: Problem | None = None
    rule: AppliedRule | None = None
    """The customer rule that held, blocked, allowed or re-routed the message."""
    next_attempt_at: datetime | None = None
    trace_id: str
    service: str
    key_id: str | None = None
    """The API key that sent the message (None: it came through the topic)."""


class DeliveryEvent(Record):
    """A CloudEvents 1.0 envelope around ``EventData``."""

    specversion: Literal["1.0"] = "1.0"
    id: str
    source: str
    type: str
    subject: str
    time: datetime
    datacontenttype: Literal["application/json"] = "application/json"
    dataschema: str = "https://sendarix.dev/schemas/events/v1"
    data: EventData

    @property
    def state(self) -> MessageState:
        """The message state this event reports."""
        return MessageState(self.type.removeprefix(EVENT_TYPE_PREFIX))


def event_id(message_id: str, state: MessageState, attempt: int | None = None) -> str:
    """The deterministic id of the event that reports ``state`` for one attempt of a message."""
    return str(uuid.uuid5(EVENT_NAMESPACE, f"{message_id}/{state.value}/{attempt or 0}"))


def delivery_event(state: MessageState, data: EventData, time: datetime) -> DeliveryEvent:
    """Wrap ``data`` in the CloudEvent that reports ``state``."""
    return DeliveryEvent(
        id=event_id(data.message_id, state, data.attempt),
        source=f"/sendarix/{data.service}",
        type=state.event_type,
        subject=data.message_id,
        time=time,
        data=data,
    )
