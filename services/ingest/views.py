"""What ``GET /v1/messages`` and ``GET /v1/messages/{id}`` answer: messages (with their
timeline, for one), built from the log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
from pydantic import BaseModel, ConfigDict, Field

from schemas.common import AppliedRule, Problem
from schemas.events import EVENT_TYPE_PREFIX, Bounce, DeliveryEvent
from schemas.pipeline import Route, SmtpReply


class TimelineEntry(BaseModel):
    """One event of a message: what happened, when, where, and the SMTP reply if any."""

    type: str
    time: datetime
    service: str
    attempt: int | None = None
    route: Route | None = None
    """The route and pool address of the attempt (on ``routed`` and the sender's events)."""
    smtp: SmtpReply | None = None
    bounce: Bounce | None = None
    """How a bounce or deferral was classified (``async``: reported later by a DSN)."""
    feedback_type: str | None = None
    """A complaint's ARF feedback type."""
    problem: Problem | None = None
    rule: AppliedRule | None = None
    """The customer rule that held, blocked, allowed or re-routed the message."""
    next_attempt_at: datetime | None = None

    @classmethod
    def of(cls, event: DeliveryEvent) -> TimelineEntry:
        data = event.data
        return cls(
            type=event.type.removeprefix(EVENT_TYPE_PREFIX),
            time=event.time,
            service=data.service,
            attempt=data.attempt,
            route=data.route,
            smtp=data.smtp,
            bounce=data.bounce,
            feedback_type=data.feedback_type,
            problem=data.problem,
            rule=data.rule,
            next_attempt_at=data.next_attempt_at,
        )


class MessageSummary(BaseModel):
    """A message as a search lists it: where it is, without its timeline."""

    model_config = ConfigDict(populate_by_name=True)

    id: str
    tenant_id: str
    """Whose message it is (an operator's key sees every tenant's)."""
    status: str
    lane: str | None
    stream: str | None
    category: str | None
    sender: str | None = Field(alias="from")
    to: str | None
    subject: str | None
    template: str | None
    tags: list[str]
    metadata: dict[str, str]
    trace_id: str
    key_id: str | None = None
    """The API key that sent it (None: it came through the topic)."""
    accepted_at: datetime
    updated_at: datetime

    @staticmethod
    def columns(row: asyncpg.Record) -> dict[str, Any]:
        """The fields of a summary, read from a ``messages`` row."""
        return {
            "id": str(row["id"]),
            "tenant_id": str(row["tenant_id"]),
            "status": row["status"],
            "lane": row["lane"],
            "stream": row["stream"],
            "category": row["category"],
            "sender": row["sender"],
            "to": row["recipient"],
            "subject": row["subject"],
            "template": row["template"],
            "tags": list(row["tags"]),
            "metadata": row["metadata"],
            "trace_id": row["trace_id"],
            "key_id": str(row["key_id"]) if row["key_id"] else None,
            "accepted_at": row["accepted_at"],
            "updated_at": row["updated_at"],
        }

    @classmethod
    def of_row(cls, row: asyncpg.Record) -> MessageSummary:
        return cls(**cls.columns(row))


class MessageView(MessageSummary):
    """A message as its sender sees it: where it is and everything that happened to it."""

    route: Route | None
    template_version: int | None = Field(
        description="The version of the template rendered: chosen once, at acceptance."
    )
    layout_version: int | None = Field(
        default=None, description="The version of the layout that template version pins."
    )
    locale: str | None = Field(
        default=None,
        description="The template locale rendered, after the fallback chain"
        " (pt-BR asked for, pt rendered when the template has no pt-BR).",
    )
    events: list[TimelineEntry]

    @classmethod
    def of(cls, row: asyncpg.Record, events: list[DeliveryEvent]) -> MessageView:
        return cls(
            **cls.columns(row),
            route=Route.model_validate(row["route"]) if row["route"] else None,
            template_version=row["template_version"],
            layout_version=row["layout_version"],
            locale=row["locale"],
            events=[TimelineEntry.of(event) for event in events],
        )
