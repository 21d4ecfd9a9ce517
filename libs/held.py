"""Held messages: what a ``hold`` rule keeps back, until it is released, cancelled or expires.

policy-check stores the record it would have forwarded (``hold``); the ``/v1/held`` routes and
``sendarix held`` release or cancel them, one by one or by a filter; ingest's sweep expires
those past their time. Each settlement moves rows out of ``held`` in one statement (rows locked
by another settlement are skipped, so a message is released or cancelled once), then publishes
what it means — the record to ``route.<lane>``, a ``cancelled`` event, or a ``failed`` one with
problem ``hold_expired`` (nobody decided in time: the message was not sent) — and deletes the
rows once the broker confirmed. A crash in between leaves settled rows behind: the sweep
publishes them again after ``REPUBLISH_AFTER``. So a release is published at least once; a copy
is harmless, as the router's events and the sender's attempts are keyed by message id.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Self

import asyncpg
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from libs.batch import Outbox, Publication
from libs.cancellation import CANCELLED_STATE
from libs.events import event_data
from libs.rules import SUBDOMAINS, RuleAction, domain_pattern
from libs.sendable import domain_of
from libs.suppressions import active_suppressions, normalise_address, verdict
from libs.topics import ROUTE
from schemas.common import AppliedRule, Lane, Problem
from schemas.events import MessageState
from schemas.pipeline import RenderedMessage

SETTLE_CHUNK = 500
"""Rows one statement settles (and one publication round sends)."""
MAX_SELECTED_IDS = 1000
REPUBLISH_AFTER = timedelta(minutes=1)
"""How long a settled row may wait for its publication before the sweep publishes it again."""
HOLD_EXPIRED = "hold_expired"
DEFAULT_PAGE = 50
MAX_PAGE = 100

Send = Callable[[Sequence[Publication]], Awaitable[Any]]
"""Publishes records and waits for the broker to confirm them all (``Broker.send_confirmed``)."""


class HeldState(StrEnum):
    """Where a held message is: still held, or how it left (until its publication is done)."""

    HELD = "held"
    RELEASED = "released"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


@dataclass(frozen=True)
class HeldMessage:
    """A message a rule holds, as policy-check stores it."""

    record: RenderedMessage
    raw: bytes
    """The record's bytes as read: released as they are."""
    rule_id: str
    expires_at: datetime
    traceparent: str | None


async def hold(pool: asyncpg.Pool, held: Sequence[HeldMessage]) -> set[str]:
    """Store messages held by rules in one statement (a message stored before stays as it is:
    a batch read again after a crash holds nothing twice; one cancelled through the API before
    policy-check reached it is not held: its ``cancelled`` event is already out). Returns the
    ids of those cancelled ones."""
    if not held:
        return set()
    specs = [h.record.message for h in held]
    cancelled = await pool.fetch(
        "WITH cancelled AS (SELECT message_id FROM delivery_attempts"
        " WHERE message_id = ANY($1::uuid[]) AND state = $10),"
        " stored AS (INSERT INTO held_messages (message_id, tenant_id, rule_id, lane, recipient,"
        " recipient_domain, record, traceparent, expires_at)"
        " SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[],"
        " $6::text[], $7::bytea[], $8::text[], $9::timestamptz[])"
        " AS h (message_id, tenant_id, rule_id, lane, recipient, recipient_domain, record,"
        " traceparent, expires_at)"
        " WHERE h.message_id NOT IN (SELECT message_id FROM cancelled)"
        " ON CONFLICT (message_id) DO NOTHING)"
        " SELECT message_id FROM cancelled",
        [uuid.UUID(s.message_id) for s in specs],
        [uuid.UUID(s.tenant_id) for s in specs],
        [uuid.UUID(h.rule_id) for h in held],
        [s.lane.value for s in specs],
        [s.recipient.address for s in specs],
        [domain_of(s.recipient.address) for s in specs],
        [h.raw for h in held],
        [h.traceparent for h in held],
        [h.expires_at for h in held],
        CANCELLED_STATE,
    )
    return {str(row["message_id"]) for row in cancelled}


def _uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an id (a UUID)") from None


class HeldFilter(BaseModel):
    """Which held messages: every criterion set must fit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rule_id: str | None = None
    recipient_domain: str | None = Field(None, max_length=260)
    since: datetime | None = None
    """Held at or after (an RFC 3339 date-time with an offset)."""
    until: datetime | None = None
    """Held before."""

    @field_validator("rule_id")
    @classmethod
    def _rule_id(cls, value: str | None) -> str | None:
        return str(_uuid(value)) if value is not None else None

    @field_validator("recipient_domain")
    @classmethod
    def _domain(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if value.strip().startswith(SUBDOMAINS):
            raise ValueError("a held message's recipient domain is one domain (no *.)")
        return domain_pattern(value)

    @field_validator("since", "until")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.utcoffset() is None:
            raise ValueError("give the time with its offset (e.g. 2026-01-31T12:00:00Z)")
        return value


class HeldSelection(HeldFilter):
    """What to release or cancel: ``message_ids``, or a filter (at least one criterion)."""

    message_ids: list[str] | None = Field(None, min_length=1, max_length=MAX_SELECTED_IDS)

    @field_validator("message_ids")
    @classmethod
    def _ids(cls, value: list[str] | None) -> list[str] | None:
        return [str(_uuid(item)) for item in value] if value is not None else None

    @model_validator(mode="after")
    def _something(self) -> Self:
        criteria = (self.rule_id, self.recipient_domain, self.since, self.until)
        given = [c for c in criteria if c is not None]
        if self.message_ids is not None and given:
            raise ValueError("select by message_ids or by a filter, not both")
        if self.message_ids is None and not given:
            raise ValueError(
                "give message_ids or at least one of rule_id, recipient_domain, since, until"
            )
        return self


class HeldSummary(BaseModel):
    """A held message as a listing shows it."""

    message_id: str
    rule_id: str
    lane: Lane
    recipient: str
    held_at: datetime
    expires_at: datetime


def _summary(row: asyncpg.Record) -> HeldSummary:
    return HeldSummary(
        message_id=str(row["message_id"]),
        rule_id=str(row["rule_id"]),
        lane=Lane(row["lane"]),
        recipient=row["recipient"],
        held_at=row["held_at"],
        expires_at=row["expires_at"],
    )


class InvalidCursor(ValueError):
    """A cursor that no listing gave."""


def encode_cursor(row: HeldSummary) -> str:
    """The cursor of the page after ``row``."""
    text = f"{row.held_at.isoformat()}|{row.message_id}"
    return base64.urlsafe_b64encode(text.encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """Where a page starts after, from its cursor."""
    try:
        held_at, _, message_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        return datetime.fromisoformat(held_at), uuid.UUID(message_id)
    except (binascii.Error, UnicodeError, ValueError):
        raise InvalidCursor(f"{cursor!r} is not a cursor of this listing") from None


FILTER_SQL = (
    " AND ($2::uuid IS NULL OR rule_id = $2) AND ($3::text IS NULL OR recipient_domain = $3)"
    " AND ($4::timestamptz IS NULL OR held_at >= $4) AND ($5::timestamptz IS NULL OR held_at < $5)"
)
"""The criteria of a ``HeldFilter`` as parameters $2 to $5 ($1: the tenant)."""


def _filter_args(tenant_id: str, wanted: HeldFilter) -> list[Any]:
    return [
        uuid.UUID(tenant_id),
        uuid.UUID(wanted.rule_id) if wanted.rule_id else None,
        wanted.recipient_domain,
        wanted.since,
        wanted.until,
    ]


async def list_held(
    pool: asyncpg.Pool,
    tenant_id: str,
    wanted: HeldFilter,
    cursor: str | None = None,
    limit: int = DEFAULT_PAGE,
) -> tuple[list[HeldSummary], str | None]:
    """A page of the tenant's held messages, longest held first, and the next page's cursor."""
    after = decode_cursor(cursor) if cursor else (None, None)
    rows = await pool.fetch(
        "SELECT message_id, rule_id, lane, recipient, held_at, expires_at FROM held_messages"
        " WHERE tenant_id = $1 AND state = 'held'" + FILTER_SQL + " AND ($6::timestamptz IS NULL"
        " OR (held_at, message_id) > ($6, $7)) ORDER BY held_at, message_id LIMIT $8",
        *_filter_args(tenant_id, wanted),
        *after,
        limit + 1,
    )
    page = [_summary(row) for row in rows[:limit]]
    return page, encode_cursor(page[-1]) if len(rows) > limit else None


SETTLED = "message_id, tenant_id, rule_id, state, lane, record, traceparent, expires_at"


@dataclass(frozen=True)
class Settled:
    """A row that left ``held``, with what its publication needs."""

    message_id: str
    state: HeldState
    lane: Lane
    record: bytes
    rule_id: str
    expires_at: datetime
    traceparent: str | None

    @classmethod
    def of(cls, row: asyncpg.Record) -> Settled:
        return cls(
            str(row["message_id"]),
            HeldState(row["state"]),
            Lane(row["lane"]),
            row["record"],
            str(row["rule_id"]),
            row["expires_at"],
            row["traceparent"],
        )


def publications(
    settled: Sequence[Settled],
    prefix: str,
    service: str,
    suppressed: Mapping[str, Problem] | None = None,
) -> list[Publication]:
    """What settling each row means for the pipeline: its record on ``route.<lane>``, or the
    event that ends its journey — ``suppressed`` for a release whose recipient was suppressed
    while it was held (``suppressed``: message id → the suppression's problem)."""
    outbox = Outbox(prefix)
    stopped = suppressed or {}
    for row in settled:
        trace = [("traceparent", row.traceparent.encode())] if row.traceparent else []
        if row.state is HeldState.RELEASED and row.message_id not in stopped:
            outbox.forward_value(None, ROUTE, row.lane, row.message_id, row.record, trace)
            continue
        spec = RenderedMessage.model_validate_json(row.record).message
        if row.state is HeldState.RELEASED:
            data = event_data(spec, service, problem=stopped[row.message_id])
            outbox.emit(None, MessageState.SUPPRESSED, data, trace)
            continue
        if row.state is HeldState.CANCELLED:
            outbox.emit(None, MessageState.CANCELLED, event_data(spec, service), trace)
            continue
        rule = AppliedRule(id=row.rule_id, action=RuleAction.HOLD.value)
        problem = Problem(
            code=HOLD_EXPIRED,
            detail=f"held by rule {row.rule_id} until {row.expires_at.isoformat()},"
            " and neither released nor cancelled by then",
        )
        data = event_data(spec, service, problem=problem, rule=rule)
        outbox.emit(None, MessageState.FAILED, data, trace)
    return outbox.publications


async def _suppressed_releases(
    pool: asyncpg.Pool, settled: Sequence[Settled]
) -> dict[str, Problem]:
    """The released messages whose recipient was suppressed while they were held (a hold can
    last days: a bounce, complaint or unsubscribe meanwhile must still stop them), in one query."""
    specs = [
        RenderedMessage.model_validate_json(row.record).message
        for row in settled
        if row.state is HeldState.RELEASED
    ]
    keys = [(spec.tenant_id, normalise_address(spec.recipient.address)) for spec in specs]
    found = await active_suppressions(pool, keys)
    now = datetime.now(UTC)
    problems = {
        spec.message_id: verdict(spec, found.get(key, []), now)
        for spec, key in zip(specs, keys, strict=True)
    }
    return {message_id: p for message_id, p in problems.items() if p is not None}


async def _published(
    pool: asyncpg.Pool, send: Send, settled: list[Settled], prefix: str, service: str
) -> int:
    """Publish what ``settled`` means, then forget the rows; how many there were."""
    if settled:
        suppressed = await _suppressed_releases(pool, settled)
        await send(publications(settled, prefix, service, suppressed))
        await pool.execute(
            "DELETE FROM held_messages WHERE message_id = ANY($1::uuid[]) AND state <> 'held'",
            [uuid.UUID(row.message_id) for row in settled],
        )
    return len(settled)


async def settle(
    pool: asyncpg.Pool,
    send: Send,
    prefix: str,
    service: str,
    tenant_id: str,
    selection: HeldSelection,
    to: HeldState,
) -> int:
    """Release or cancel the tenant's held messages ``selection`` picks; how many."""
    ids = [uuid.UUID(i) for i in selection.message_ids] if selection.message_ids else None
    total = 0
    while True:
        rows = await pool.fetch(
            "UPDATE held_messages SET state = $8, settled_at = now() WHERE message_id IN ("
            " SELECT message_id FROM held_messages WHERE tenant_id = $1 AND state = 'held'"
            + FILTER_SQL
            + " AND ($6::uuid[] IS NULL OR message_id = ANY($6))"
            " ORDER BY held_at, message_id LIMIT $7 FOR UPDATE SKIP LOCKED)"
            f" AND state = 'held' RETURNING {SETTLED}",
            *_filter_args(tenant_id, selection),
            ids,
            SETTLE_CHUNK,
            to.value,
        )
        total += await _published(pool, send, [Settled.of(row) for row in rows], prefix, service)
        if len(rows) < SETTLE_CHUNK:
            return total


async def sweep(pool: asyncpg.Pool, send: Send, prefix: str, service: str) -> int:
    """Expire the held messages past their time and publish again the settlements a crash
    interrupted; how many rows it handled."""
    total = 0
    while True:
        rows = await pool.fetch(
            "UPDATE held_messages SET state = $1, settled_at = now() WHERE message_id IN ("
            " SELECT message_id FROM held_messages WHERE state = 'held' AND expires_at <= now()"
            " ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)"
            f" AND state = 'held' RETURNING {SETTLED}",
            HeldState.EXPIRED.value,
            SETTLE_CHUNK,
        )
        rows += await pool.fetch(
            f"SELECT {SETTLED} FROM held_messages WHERE state <> 'held'"
            " AND settled_at < now() - $1::interval ORDER BY settled_at LIMIT $2",
            REPUBLISH_AFTER,
            SETTLE_CHUNK,
        )
        total += await _published(pool, send, [Settled.of(row) for row in rows], prefix, service)
        if len(rows) < SETTLE_CHUNK:
            return total
