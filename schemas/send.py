"""What applications send: the HTTP body of ``POST /v1/messages`` and ``sendarix.send.requests``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from schemas.common import Category, Lane, Record, Stream, Tag

MAX_RECIPIENTS = 50

STRUCTURAL_HEADERS = frozenset(
    {
        "bcc",
        "cc",
        "content-disposition",
        "content-id",
        "content-transfer-encoding",
        "content-type",
        "date",
        "dkim-signature",
        "from",
        "message-id",
        "mime-version",
        "received",
        "reply-to",
        "return-path",
        "sender",
        "subject",
        "to",
        "x-sendarix-message-id",
    }
)
"""Headers Sendarix writes itself (lower-case); a request may not set them in ``headers``."""


CONTENT_ID = r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.@-]{1,250}$"
"""A Content-ID without its angle brackets: msg-id characters, nothing that could end it."""


class Attachment(Record):
    """A file attached to the message; ``content`` is base64.

    With ``content_id`` it is an inline part instead (an image the html shows as
    ``<img src="cid:CONTENT_ID">``), sent beside the bodies in ``multipart/related``.
    """

    filename: Annotated[str, Field(min_length=1, max_length=255)]
    content: Annotated[str, Field(min_length=1)]
    content_type: str = "application/octet-stream"
    content_id: Annotated[str, Field(pattern=CONTENT_ID)] | None = None


class SendRequest(Record):
    """One send request from an application (the HTTP body)."""

    sender: Annotated[str, Field(alias="from", min_length=3, max_length=320)]
    to: Annotated[list[str], Field(min_length=1, max_length=MAX_RECIPIENTS)]
    reply_to: str | None = None
    subject: Annotated[str, Field(max_length=998)] | None = None
    html: str | None = None
    text: str | None = None
    template: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,127}$")] | None = None
    template_version: Annotated[int, Field(ge=1, le=2**31 - 1)] | None = None
    """Pin a version of ``template`` (default: the active one, or an experiment's variant)."""
    data: dict[str, Any] = Field(default_factory=dict)
    locale: Annotated[str, Field(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")] | None = None
    stream: Stream = Stream.TRANSACTIONAL
    category: Category | None = None
    priority: Lane | None = None
    tags: Annotated[list[Tag], Field(max_length=10)] = Field(default_factory=list)
    metadata: dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=512)]] = (
        Field(default_factory=dict, max_length=20)
    )
    headers: dict[str, str] = Field(default_factory=dict, max_length=20)
    attachments: list[Attachment] = Field(default_factory=list, max_length=10)
    send_at: datetime | None = None

    @field_validator("to", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value


class TopicSendRequest(SendRequest):
    """A send request produced directly onto ``sendarix.send.requests``."""

    schema_version: Literal[1] = 1
    tenant_id: str
    idempotency_key: Annotated[str, Field(min_length=1, max_length=256)] | None = None


class AcceptedRecipient(Record):
    """The message id given to one recipient of a request."""

    id: str
    to: str


class AcceptedResponse(Record):
    """The 202 answer: the first message's id, its trace, and one id per recipient."""

    id: str
    status: Literal["accepted"] = "accepted"
    trace_id: str
    messages: list[AcceptedRecipient]
