"""Finding a tenant's messages: filters, keyset pages newest first, and their opaque cursors.

A page is ``ORDER BY accepted_at DESC, id DESC`` after the cursor's ``(accepted_at, id)``, so
each filter is a range scan of one index of migration 0007 that stops after ``limit`` rows: a
page costs the same on the millionth message as on the first, with no gap or repeat between
pages while messages keep arriving. An operator's search of every tenant at once has no tenant
to lead those indexes with: it is a support tool's occasional query, not the tenants' API path.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar

import asyncpg

from libs.database import Connection
from libs.sendable import ONE_LINE
from schemas.common import Stream
from schemas.events import MessageState
from services.ingest.validate import Violation

DEFAULT_LIMIT = 50
MAX_LIMIT = 100
MAX_VALUE_LENGTH = 998
"""The longest filter value taken (a header line's limit): longer cannot match anything."""
METADATA_SEPARATOR = ":"
INVALID_PARAMETER = "invalid_parameter"

E = TypeVar("E", bound=StrEnum)


@dataclass(frozen=True)
class Cursor:
    """Where a page ends: the last message's acceptance time and id."""

    accepted_at: datetime
    message_id: uuid.UUID

    def encode(self) -> str:
        """The opaque text a client passes back as ``cursor``."""
        text = f"{self.accepted_at.isoformat()}|{self.message_id}"
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """The cursor ``encode`` wrote; ValueError for anything else."""
        try:
            decoded = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise ValueError("not a cursor") from None
        moment, _, message_id = decoded.partition("|")
        accepted_at = datetime.fromisoformat(moment)
        if accepted_at.tzinfo is None:
            raise ValueError("not a cursor")
        return cls(accepted_at, uuid.UUID(message_id))


@dataclass(frozen=True)
class MessageQuery:
    """What to find: every filter given must match (tags and metadata pairs: all of them).
    ``tenant_id`` is the tenant the caller asked for; whose messages it may search is the
    gateway's decision, passed to ``search_messages`` on its own."""

    tenant_id: str | None = None
    recipient: str | None = None
    status: MessageState | None = None
    stream: Stream | None = None
    category: str | None = None
    template: str | None = None
    tags: tuple[str, ...] = ()
    metadata: tuple[tuple[str, str], ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    after: Cursor | None = None
    limit: int = DEFAULT_LIMIT


SINGLE = ("tenant_id", "recipient", "status", "stream", "category", "template", "since", "until")
REPEATABLE = ("tag", "metadata")
PARAMETERS = frozenset((*SINGLE, *REPEATABLE, "cursor", "limit"))


def bad_parameter(name: str, detail: str) -> Violation:
    """The problem with query parameter ``name``."""
    return Violation(INVALID_PARAMETER, name, f"parameter {name!r}: {detail}")


def parse_moment(name: str, text: str) -> datetime | Violation:
    """An RFC 3339 date-time parameter, with its offset."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return bad_parameter(name, "not an RFC 3339 date-time (e.g. 2026-01-31T12:00:00Z)")
    if moment.tzinfo is None:
        return bad_parameter(name, "give the offset (Z or ±hh:mm)")
    return moment


def _pair(text: str) -> tuple[str, str] | Violation:
    key, separator, value = text.partition(METADATA_SEPARATOR)
    if not separator or not key:
        return bad_parameter("metadata", "give key:value (e.g. order_id:123)")
    return key, value


def parse_limit(text: str, maximum: int = MAX_LIMIT) -> int | Violation:
    """The ``limit`` parameter: 1 to ``maximum``."""
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= maximum:
        return bad_parameter("limit", f"an integer from 1 to {maximum}")
    return int(text)


def parse_tenant_id(text: str) -> str | Violation:
    """A ``tenant_id`` parameter: a UUID (an operator's choice of tenant)."""
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return bad_parameter("tenant_id", "a tenant id (a UUID)")


def _cursor(text: str) -> Cursor | Violation:
    try:
        return Cursor.decode(text)
    except ValueError:
        return bad_parameter("cursor", "not a cursor this API gave (pass next_cursor as it is)")


def grouped_parameters(
    params: Sequence[tuple[str, str]], known: frozenset[str], repeatable: Sequence[str] = ()
) -> dict[str, list[str]] | list[Violation]:
    """The query parameters by name, or what is wrong with them: unknown ones, repeats of a
    single-valued one, values too long to match anything."""
    given: dict[str, list[str]] = {}
    for name, value in params:
        given.setdefault(name, []).append(value)
    violations = [bad_parameter(name, "unknown parameter") for name in given if name not in known]
    violations += [
        bad_parameter(name, "give it once")
        for name, values in given.items()
        if name in known - set(repeatable) and len(values) > 1
    ]
    violations += [
        bad_parameter(name, f"at most {MAX_VALUE_LENGTH} characters")
        for name, values in given.items()
        if any(len(value) > MAX_VALUE_LENGTH for value in values)
    ]
    return violations or given


def unstorable(given: Mapping[str, Sequence[str]]) -> list[Violation]:
    """A violation for each parameter with a value no stored text contains (a control
    character, a line break, a lone surrogate): it could match nothing, and the database would
    refuse a NUL outright."""
    faults = {
        name: fault
        for name, values in given.items()
        for value in values
        if (fault := ONE_LINE.fault(value))
    }
    return [bad_parameter(name, fault) for name, fault in faults.items()]


def parse_query(params: Sequence[tuple[str, str]]) -> MessageQuery | list[Violation]:
    """The search the query parameters ask for, or everything wrong with them (each names its
    parameter): unknown parameters, repeats of a single-valued one, values of the wrong form."""
    given = grouped_parameters(params, PARAMETERS, REPEATABLE)
    if isinstance(given, list):
        return given
    single = {name: values[0] for name, values in given.items()}
    fields: dict[str, Any] = {
        name: single[name] for name in ("category", "template") if name in single
    }
    checks: dict[str, Any] = {}
    if "tenant_id" in single:
        checks["tenant_id"] = parse_tenant_id(single["tenant_id"])
    if "recipient" in single:
        fields["recipient"] = single["recipient"].strip().lower()
    if "status" in single:
        checks["status"] = parse_choice("status", single["status"], MessageState)
    if "stream" in single:
        checks["stream"] = parse_choice("stream", single["stream"], Stream)
    for name in ("since", "until"):
        if name in single:
            checks[name] = parse_moment(name, single[name])
    if "cursor" in single:
        checks["after"] = _cursor(single["cursor"])
    if "limit" in single:
        checks["limit"] = parse_limit(single["limit"])
    pairs = [_pair(text) for text in given.get("metadata", [])]
    violations = [v for v in (*checks.values(), *pairs) if isinstance(v, Violation)]
    violations += unstorable(given)
    if violations:
        return violations
    return MessageQuery(
        **fields,
        **checks,
        tags=tuple(given.get("tag", [])),
        metadata=tuple(pair for pair in pairs if isinstance(pair, tuple)),
    )


def parse_choice(name: str, text: str, kind: type[E]) -> E | Violation:
    """A parameter naming one member of ``kind``."""
    try:
        return kind(text)
    except ValueError:
        return bad_parameter(name, f"one of {', '.join(member.value for member in kind)}")


def search_sql(query: MessageQuery, tenant_id: uuid.UUID | None) -> tuple[str, list[Any]]:
    """The statement and its arguments that fetch one page and one more row (to tell whether a
    next page exists): of one tenant's messages (``tenant_id`` is ``$1``), or, for None, of
    every tenant's."""
    conditions: list[str] = []
    arguments: list[Any] = []

    def where(condition: str, *values: Any) -> None:
        numbers = range(len(arguments) + 1, len(arguments) + 1 + len(values))
        conditions.append(condition.format(*(f"${n}" for n in numbers)))
        arguments.extend(values)

    columns: Mapping[str, Any] = {
        "status": query.status.value if query.status else None,
        "stream": query.stream.value if query.stream else None,
        "category": query.category,
        "template": query.template,
    }
    if tenant_id is not None:
        where("tenant_id = {}", tenant_id)
    if query.recipient is not None:
        where("lower(recipient) = {}", query.recipient)
    for column, value in columns.items():
        if value is not None:
            where(f"{column} = {{}}", value)
    if query.tags and tenant_id is not None:
        where("tenant_tags(tenant_id, tags) @> tenant_tags($1, {}::text[])", list(query.tags))
    elif query.tags:
        where("tags @> {}::text[]", list(query.tags))
    if query.metadata:
        where("metadata @> {}::jsonb", dict(query.metadata))
    if query.since is not None:
        where("accepted_at >= {}", query.since)
    if query.until is not None:
        where("accepted_at < {}", query.until)
    if query.after is not None:
        where("(accepted_at, id) < ({}, {})", query.after.accepted_at, query.after.message_id)
    arguments.append(query.limit + 1)
    matching = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    sql = (
        f"SELECT * FROM messages{matching}"
        f" ORDER BY accepted_at DESC, id DESC LIMIT ${len(arguments)}"
    )
    return sql, arguments


@dataclass(frozen=True)
class Page:
    """One page of messages, newest first, and the cursor of the next (None: the last page)."""

    rows: list[asyncpg.Record]
    next_cursor: Cursor | None


async def search_messages(
    connection: Connection, tenant_id: str | None, query: MessageQuery
) -> Page:
    """One page of the tenant's messages matching ``query`` (``tenant_id`` None: of every
    tenant, for an operator).

    Planned for its values each time: a generic plan, which PostgreSQL adopts for a prepared
    statement after a few runs, cannot tell a tag on 1 message in 1,000 from one on every
    other message, and picks one walk for both (300 ms instead of 1 for the wrong one).
    """
    sql, arguments = search_sql(query, uuid.UUID(tenant_id) if tenant_id is not None else None)
    async with connection.transaction(readonly=True):
        await connection.execute("SET LOCAL plan_cache_mode = force_custom_plan")
        rows = await connection.fetch(sql, *arguments)
    if len(rows) <= query.limit:
        return Page(list(rows), None)
    last = rows[query.limit - 1]
    return Page(list(rows[: query.limit]), Cursor(last["accepted_at"], last["id"]))
