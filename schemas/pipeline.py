"""Records that travel between the pipeline stages, one stream per lane at every stage.

A message grows as it moves: ``AcceptedMessage`` (ingest → render) gains its content in
``RenderedMessage`` (render → policy-check → router), its route in ``DeliveryJob`` (router →
sender, retry-scheduler → sender) and its last SMTP reply in ``RetryRequest`` (sender →
retry-scheduler).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import Field

from schemas.common import Lane, Record, Stream
from schemas.send import Attachment


class MessageSpec(Record):
    """What was asked for one recipient, fixed at acceptance and carried unchanged."""

    message_id: str
    tenant_id: str
    trace_id: str
    accepted_at: datetime
    sender: str
    recipient: str
    reply_to: str | None = None
    subject: str | None = None
    html: str | None = None
    text: str | None = None
    template: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    locale: str | None = None
    stream: Stream = Stream.TRANSACTIONAL
    category: str | None = None
    lane: Lane
    tags: list[str] = Field(default_factory=list)
    metadata: dict[str, str] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    attachments: list[Attachment] = Field(default_factory=list)
    send_at: datetime | None = None


class AcceptedMessage(Record):
    """A validated message waiting to be rendered (``sendarix.render.<lane>``)."""

    schema_version: Literal[1] = 1
    message: MessageSpec


class RenderedContent(Record):
    """The subject and bodies after template merge."""

    subject: str
    html: str | None = None
    text: str | None = None
    template_version: int | None = None


class RenderedMessage(Record):
    """A rendered message on its way through policy-check to the router.

    Carried on ``sendarix.policy.<lane>`` (to be checked) and ``sendarix.route.<lane>`` (cleared).
    """

    schema_version: Literal[1] = 1
    message: MessageSpec
    content: RenderedContent


class TlsMode(StrEnum):
    """How the sender secures its SMTP connection to a route."""

    NONE = "none"
    STARTTLS = "starttls"
    IMPLICIT = "implicit"


class Route(Record):
    """Where and how a message is handed over: the SMTP destination and the IP pool."""

    name: str
    host: str
    port: int
    pool: str
    tls: TlsMode = TlsMode.NONE
    timeout_seconds: float = 30.0


class DeliveryJob(Record):
    """One delivery attempt to make (``sendarix.deliver.<lane>``)."""

    schema_version: Literal[1] = 1
    message: MessageSpec
    content: RenderedContent
    route: Route
    attempt: int = Field(ge=1)
    retry_until: datetime


class SmtpReply(Record):
    """An SMTP server's answer (or the sender's own, for network errors: code 0)."""

    code: int
    enhanced_status: str | None = None
    text: str


class RetryRequest(Record):
    """A deferred attempt to repeat at ``due_at`` (``sendarix.retry.<lane>``)."""

    schema_version: Literal[1] = 1
    job: DeliveryJob
    due_at: datetime
    reply: SmtpReply


class DeadLetter(Record):
    """A record from ``sendarix.send.requests`` that could not be accepted, kept on its DLQ."""

    schema_version: Literal[1] = 1
    topic: str
    partition: int
    offset: int
    received_at: datetime
    reason: str
    detail: str
    pointers: tuple[str, ...] = ()
    key: str | None = None
    value: str
