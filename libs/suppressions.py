"""The suppression list: what a tenant must not send to, per address, stream and reason.

The one copy of its SQL: policy-check stores what delivery events teach, loads its in-process
view and polls the changes here; the HTTP gateway and the CLI list, check, add, remove, export
and import through the same functions. Which suppression stops which message is policy-check's
and the held-message release's decision (``verdict``, a pure function); what an event teaches is
policy-check's (``services.policy_check.decide``).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parseaddr
from enum import StrEnum

import asyncpg

from libs.database import Connection
from schemas.common import Lane, Problem, Stream
from schemas.pipeline import MessageSpec

Executor = asyncpg.Pool | Connection
Key = tuple[str, str]
"""(tenant id, normalised address): what the in-process view and a look-up are keyed by."""

MAX_NOTE_CHARS = 1000
MAX_ADDRESS_CHARS = 254
_LABEL = r"[a-z0-9]([a-z0-9-]*[a-z0-9])?"
ADDRESS_SHAPE = rf"^[a-z0-9.!#$%&'*+/=?^_`{{|}}~-]+@{_LABEL}(\.{_LABEL})+$"
"""What an address must look like to be suppressed (after lower-casing): an ASCII addr-spec
with a dotted domain, as ingest sends to (an IDN in its ``xn--`` form)."""
MOMENT_SHAPE = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}(:?\d{2})?)?$"


class SuppressionReason(StrEnum):
    """Why an address is suppressed; each reason is a row of its own."""

    HARD_BOUNCE = "hard_bounce"
    COMPLAINT = "complaint"
    UNSUBSCRIBE = "unsubscribe"
    MANUAL = "manual"
    REPEATED_SOFT_BOUNCE = "repeated_soft_bounce"


CONSENT_REASONS = frozenset({SuppressionReason.COMPLAINT, SuppressionReason.UNSUBSCRIBE})
"""Reasons that withdraw consent: they never stop critical account mail (OTP, password reset,
login verification, security alerts — the ``critical`` lane), which no one consents to."""


def reason_of(stored: str) -> SuppressionReason:
    """A stored reason; one this code does not know (written by hand) blocks like ``manual``."""
    try:
        return SuppressionReason(stored)
    except ValueError:
        return SuppressionReason.MANUAL


@dataclass(frozen=True)
class Suppression:
    """One reason not to send to an address in one stream of a tenant, maybe until a time."""

    tenant_id: str
    address: str
    stream: Stream
    reason: SuppressionReason
    source_message_id: str | None = None
    note: str | None = None
    created_by: str | None = None
    expires_at: datetime | None = None
    created_at: datetime | None = None

    def active(self, now: datetime) -> bool:
        """An expired suppression stops nothing."""
        return self.expires_at is None or self.expires_at > now

    @property
    def key(self) -> Key:
        return (self.tenant_id, self.address)


@dataclass(frozen=True)
class SoftBounce:
    """A message to an address soft-bounced for a cause that lies with the recipient."""

    tenant_id: str
    address: str
    stream: Stream
    message_id: str


_BARE_ADDRESS = re.compile(r"[^\s<>\"(),;:@]+@[^\s<>\"(),;:@]+")
"""An addr-spec with nothing to parse (as every message's recipient is): 40 times faster to
take as it is than to run ``parseaddr`` on, and the same result."""


def normalise_address(recipient: str) -> str:
    """How suppressions store an address: the bare addr-spec, lower-cased."""
    text = recipient.strip()
    if _BARE_ADDRESS.fullmatch(text):
        return text.lower()
    return (parseaddr(text)[1] or text).strip().lower()


def tenant_uuid(tenant_id: str) -> uuid.UUID | None:
    """The tenant id as a UUID; None for anything else (nothing is stored for it)."""
    try:
        return uuid.UUID(tenant_id)
    except ValueError:
        return None


COLUMNS = ", ".join(
    f"s.{column}"
    for column in (
        "tenant_id",
        "address",
        "stream",
        "reason",
        "source_message_id",
        "note",
        "created_by",
        "created_at",
        "expires_at",
    )
)
"""Every column of a suppression, of the table aliased ``s``."""


def _suppression(row: asyncpg.Record) -> Suppression:
    return Suppression(
        tenant_id=str(row["tenant_id"]),
        address=row["address"],
        stream=Stream(row["stream"]),
        reason=reason_of(row["reason"]),
        source_message_id=row["source_message_id"],
        note=row["note"],
        created_by=row["created_by"],
        expires_at=row["expires_at"],
        created_at=row["created_at"],
    )


UPSERT = f"""
INSERT INTO suppressions AS s (tenant_id, address, stream, reason, source_message_id, note,
    created_by, expires_at)
SELECT * FROM {{source}}
ON CONFLICT (tenant_id, address, stream, reason) DO UPDATE SET
    source_message_id = EXCLUDED.source_message_id, note = EXCLUDED.note,
    created_by = EXCLUDED.created_by, expires_at = EXCLUDED.expires_at, created_at = now(),
    changed_xid = pg_current_xact_id()
WHERE s.expires_at IS NOT NULL
  AND (s.expires_at <= now() OR EXCLUDED.expires_at IS NULL OR EXCLUDED.expires_at > s.expires_at)
RETURNING {COLUMNS}
"""
"""Store suppressions; a stored one changes only when it had expired or the new one lasts
longer, so storing the same one twice (a replayed event) is harmless and writes nothing."""


SEVERITY = (
    SuppressionReason.HARD_BOUNCE,
    SuppressionReason.COMPLAINT,
    SuppressionReason.MANUAL,
    SuppressionReason.REPEATED_SOFT_BOUNCE,
    SuppressionReason.UNSUBSCRIBE,
)
"""When several suppressions stop a message, the one it is reported as (first wins)."""


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


async def add_suppressions(
    executor: Executor, suppressions: Sequence[Suppression]
) -> list[Suppression]:
    """Store ``suppressions`` in one statement; return the ones that are new or last longer."""
    wanted: dict[tuple[str, str, Stream, SuppressionReason], Suppression] = {}
    for suppression in suppressions:
        if tenant_uuid(suppression.tenant_id) is not None:
            wanted[(*suppression.key, suppression.stream, suppression.reason)] = suppression
    if not wanted:
        return []
    rows = wanted.values()
    source = (
        "unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],"
        " $7::text[], $8::timestamptz[])"
    )
    stored = await executor.fetch(
        UPSERT.format(source=source),
        [uuid.UUID(s.tenant_id) for s in rows],
        [s.address for s in rows],
        [s.stream.value for s in rows],
        [s.reason.value for s in rows],
        [s.source_message_id for s in rows],
        [s.note for s in rows],
        [s.created_by for s in rows],
        [s.expires_at for s in rows],
    )
    return [_suppression(row) for row in stored]


async def active_suppressions(
    executor: Executor, keys: Sequence[Key]
) -> dict[Key, list[Suppression]]:
    """The unexpired suppressions of ``keys`` (addresses normalised), in one query."""
    valid = {(uuid.UUID(t), a) for t, a in keys if tenant_uuid(t) is not None}
    if not valid:
        return {}
    rows = await executor.fetch(
        f"SELECT {COLUMNS} FROM suppressions s"
        " JOIN unnest($1::uuid[], $2::text[]) AS q (tenant_id, address)"
        " ON s.tenant_id = q.tenant_id AND s.address = q.address"
        " WHERE s.expires_at IS NULL OR s.expires_at > now()",
        [tenant for tenant, _ in valid],
        [address for _, address in valid],
    )
    found: dict[Key, list[Suppression]] = {}
    for row in rows:
        suppression = _suppression(row)
        found.setdefault(suppression.key, []).append(suppression)
    return found


async def record_soft_bounces(
    executor: Executor, bounces: Sequence[SoftBounce], window: timedelta
) -> list[tuple[SoftBounce, int]]:
    """Count each bounce once (per message) and answer, for each, how many messages to its
    address and stream soft-bounced within ``window``; every count older than that is
    forgotten meanwhile (by the ``bounced_at`` index: one-off bounces do not pile up)."""
    valid = [b for b in bounces if tenant_uuid(b.tenant_id) is not None]
    if not valid:
        return []
    places = (
        [uuid.UUID(b.tenant_id) for b in valid],
        [b.address for b in valid],
        [b.stream.value for b in valid],
    )
    await executor.execute(
        "INSERT INTO soft_bounces (tenant_id, address, stream, message_id)"
        " SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[])"
        " ON CONFLICT DO NOTHING",
        *places,
        [b.message_id for b in valid],
    )
    rows = await executor.fetch(
        "WITH q AS (SELECT DISTINCT * FROM unnest($1::uuid[], $2::text[], $3::text[])"
        "   AS q (tenant_id, address, stream)),"
        " old AS (DELETE FROM soft_bounces WHERE bounced_at < now() - $4::interval)"
        " SELECT q.tenant_id, q.address, q.stream, count(*) AS bounces"
        " FROM q JOIN soft_bounces b ON (b.tenant_id, b.address, b.stream)"
        "   = (q.tenant_id, q.address, q.stream)"
        " WHERE b.bounced_at >= now() - $4::interval GROUP BY 1, 2, 3",
        *places,
        window,
    )
    counts = {(str(r["tenant_id"]), r["address"], r["stream"]): r["bounces"] for r in rows}
    return [(b, counts.get((b.tenant_id, b.address, b.stream.value), 1)) for b in valid]


@dataclass(frozen=True)
class Removal:
    """What ``remove_suppressions`` did: the rows removed, or the complaints it would not."""

    removed: list[Suppression]
    refused_complaints: bool = False


async def remove_suppressions(
    connection: Connection,
    tenant_id: str,
    address: str,
    stream: Stream | None,
    reason: SuppressionReason | None,
    removed_by: str,
    note: str | None,
    may_remove_complaints: bool,
) -> Removal:
    """Remove the address's suppressions (of one stream and one reason, when given) and keep
    who removed them and why. Nothing is removed when a complaint is among them and the caller
    may not remove complaints."""
    tenant = tenant_uuid(tenant_id)
    if tenant is None:
        return Removal([])
    try:
        async with connection.transaction():
            rows = await connection.fetch(
                "DELETE FROM suppressions s WHERE tenant_id = $1 AND address = $2"
                " AND ($3::text IS NULL OR stream = $3) AND ($4::text IS NULL OR reason = $4)"
                f" RETURNING {COLUMNS}",
                tenant,
                normalise_address(address),
                stream.value if stream else None,
                reason.value if reason else None,
            )
            removed = [_suppression(row) for row in rows]
            if not may_remove_complaints and any(
                s.reason is SuppressionReason.COMPLAINT for s in removed
            ):
                raise _Refused
            await connection.execute(
                "INSERT INTO suppression_removals (tenant_id, address, stream, reason,"
                " created_at, removed_by, note) SELECT $1, r.address, r.stream, r.reason,"
                " r.created_at, $2, $3 FROM unnest($4::text[], $5::text[], $6::text[],"
                " $7::timestamptz[]) AS r (address, stream, reason, created_at)",
                tenant,
                removed_by,
                note,
                [s.address for s in removed],
                [s.stream.value for s in removed],
                [s.reason.value for s in removed],
                [s.created_at for s in removed],
            )
    except _Refused:
        return Removal([], refused_complaints=True)
    return Removal(removed)


class _Refused(Exception):
    """Rolls back a removal that would remove a complaint."""


@dataclass(frozen=True)
class Cursor:
    """Where a page of the list ends: its last row's key."""

    address: str
    stream: str
    reason: str

    def encode(self) -> str:
        """The opaque text a client passes back."""
        text = json.dumps([self.address, self.stream, self.reason])
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """The cursor ``encode`` wrote; ValueError for anything else."""
        try:
            values = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        except (binascii.Error, UnicodeDecodeError, json.JSONDecodeError):
            raise ValueError("not a cursor") from None
        if not (isinstance(values, list) and len(values) == 3):
            raise ValueError("not a cursor")
        if not all(isinstance(value, str) and value.isprintable() for value in values):
            raise ValueError("not a cursor")
        return cls(*values)


@dataclass(frozen=True)
class SuppressionQuery:
    """Which of a tenant's suppressions to list: every filter given must match."""

    address: str | None = None
    prefix: str | None = None
    stream: Stream | None = None
    reason: SuppressionReason | None = None
    since: datetime | None = None
    until: datetime | None = None
    after: Cursor | None = None
    limit: int | None = None


def _like_prefix(prefix: str) -> str:
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def list_sql(query: SuppressionQuery) -> tuple[str, list[object]]:
    """The statement listing ``query``'s suppressions (tenant id ``$1``) in key order, expired
    ones left out; with a limit, one row more, to tell whether a next page exists."""
    conditions = ["tenant_id = $1", "(expires_at IS NULL OR expires_at > now())"]
    arguments: list[object] = []

    def where(condition: str, value: object) -> None:
        arguments.append(value)
        conditions.append(condition.replace("?", f"${len(arguments) + 1}"))

    if query.address is not None:
        where("address = ?", normalise_address(query.address))
    if query.prefix is not None:
        where("address LIKE ?", _like_prefix(query.prefix.strip().lower()))
    if query.stream is not None:
        where("stream = ?", query.stream.value)
    if query.reason is not None:
        where("reason = ?", query.reason.value)
    if query.since is not None:
        where("created_at >= ?", query.since)
    if query.until is not None:
        where("created_at < ?", query.until)
    if query.after is not None:
        where('(address, stream, reason) > (?::text COLLATE "C"', query.after.address)
        conditions[-1] += f", ${len(arguments) + 2}, ${len(arguments) + 3})"
        arguments += [query.after.stream, query.after.reason]
    sql = f"SELECT {COLUMNS} FROM suppressions s WHERE {' AND '.join(conditions)}"
    sql += " ORDER BY address, stream, reason"
    if query.limit is not None:
        arguments.append(query.limit + 1)
        sql += f" LIMIT ${len(arguments) + 1}"
    return sql, arguments


@dataclass(frozen=True)
class Page:
    """One page of the list and the cursor of the next (None: the last page)."""

    suppressions: list[Suppression]
    next_cursor: Cursor | None


async def list_suppressions(executor: Executor, tenant_id: str, query: SuppressionQuery) -> Page:
    """One page (``query.limit`` rows) of the tenant's suppressions matching ``query``."""
    tenant = tenant_uuid(tenant_id)
    if tenant is None:
        return Page([], None)
    sql, arguments = list_sql(query)
    rows = [_suppression(row) for row in await executor.fetch(sql, tenant, *arguments)]
    if query.limit is None or len(rows) <= query.limit:
        return Page(rows, None)
    last = rows[query.limit - 1]
    return Page(rows[: query.limit], Cursor(last.address, last.stream.value, last.reason.value))


async def each_suppression(
    connection: Connection, tenant_id: str, query: SuppressionQuery, chunk: int = 5000
) -> AsyncIterator[list[Suppression]]:
    """Every suppression ``query`` matches, in chunks, read through one server-side cursor (an
    export of millions of rows never sits in memory)."""
    tenant = tenant_uuid(tenant_id)
    if tenant is None:
        return
    sql, arguments = list_sql(query)
    async with connection.transaction(readonly=True, isolation="repeatable_read"):
        cursor = await connection.cursor(sql, tenant, *arguments)
        while rows := await cursor.fetch(chunk):
            yield [_suppression(row) for row in rows]


IMPORT_COLUMNS = ("address", "stream", "expires_at", "note")
"""What an import or a bulk add gives per row: the address, a stream (empty: every stream),
an expiry (RFC 3339; empty: for good) and a note."""

IMPORT_FAULTS = f"""
SELECT line, field, detail FROM (
    SELECT line, 'address' AS field, 'not an email address' AS detail FROM suppression_import
    WHERE address IS NULL OR length(address) > {MAX_ADDRESS_CHARS}
       OR lower(btrim(address)) !~ $1
    UNION ALL
    SELECT line, 'stream', 'transactional, broadcast or empty (both)' FROM suppression_import
    WHERE coalesce(stream, '') NOT IN ('', 'transactional', 'broadcast')
    UNION ALL
    SELECT line, 'expires_at', 'an RFC 3339 date-time (or empty: for good)'
    FROM suppression_import WHERE coalesce(expires_at, '') <> '' AND expires_at !~ $2
    UNION ALL
    SELECT line, 'note', 'at most {MAX_NOTE_CHARS} characters' FROM suppression_import
    WHERE length(note) > {MAX_NOTE_CHARS}
) AS faults ORDER BY line LIMIT $3
"""

IMPORTED = """(
    SELECT DISTINCT ON (i.address, s.stream)
        $1::uuid, i.address, s.stream, 'manual', NULL::text, nullif(i.note, ''), $2::text,
        nullif(i.expires_at, '')::timestamptz
    FROM (SELECT line, lower(btrim(address)) AS address, nullif(stream, '') AS stream,
                 expires_at, note FROM suppression_import) AS i
    CROSS JOIN LATERAL unnest(CASE WHEN i.stream IS NULL
        THEN ARRAY['transactional', 'broadcast'] ELSE ARRAY[i.stream] END)
        AS s (stream)
    ORDER BY i.address, s.stream, i.line DESC
) AS imported"""
"""The staged rows as manual suppressions; an address given twice counts once (its last row)."""


@dataclass(frozen=True)
class ImportFault:
    """A row of an import that cannot be stored: its number (from 1) and the bad field."""

    line: int
    field: str
    detail: str


Stager = Callable[[Connection], Awaitable[None]]
"""Fills the temporary table ``suppression_import`` (columns ``IMPORT_COLUMNS``, rows numbered
in ``line`` in the order given) — from a CSV stream with COPY, or from a list."""


async def import_suppressions(
    connection: Connection, tenant_id: str, created_by: str, stage: Stager, max_faults: int = 100
) -> int | list[ImportFault]:
    """Add the staged rows as manual suppressions, all or none: the number of suppressions
    written, or the first ``max_faults`` faults (then nothing is written)."""
    try:
        async with connection.transaction():
            await connection.execute(
                "CREATE TEMPORARY TABLE suppression_import (line bigint GENERATED ALWAYS AS"
                " IDENTITY, address text, stream text, expires_at text, note text) ON COMMIT DROP"
            )
            await stage(connection)
            rows = await connection.fetch(IMPORT_FAULTS, ADDRESS_SHAPE, MOMENT_SHAPE, max_faults)
            if rows:
                raise _Faulty([ImportFault(r["line"], r["field"], r["detail"]) for r in rows])
            status = await connection.execute(
                UPSERT.format(source=IMPORTED).replace(f"RETURNING {COLUMNS}", ""),
                uuid.UUID(tenant_id),
                created_by,
            )
    except _Faulty as faulty:
        return faulty.faults
    return int(status.rsplit(" ", 1)[1])


class _Faulty(Exception):
    """Rolls back an import with faulty rows."""

    def __init__(self, faults: list[ImportFault]) -> None:
        super().__init__(f"{len(faults)} faulty rows")
        self.faults = faults


def stage_rows(rows: Sequence[tuple[str, str | None, str | None, str | None]]) -> Stager:
    """A stager of rows given in memory (a bulk add): (address, stream, expires_at, note)."""

    async def stage(connection: Connection) -> None:
        await connection.copy_records_to_table(
            "suppression_import", records=rows, columns=IMPORT_COLUMNS
        )

    return stage


def stage_csv(source: AsyncIterator[bytes], columns: Sequence[str]) -> Stager:
    """A stager of CSV bytes (no header line) whose columns are ``columns``, streamed into COPY;
    a column named but not imported (``reason``, ``created_at``… of an export) is dropped."""
    copied = [c if c in IMPORT_COLUMNS else _ignored(i) for i, c in enumerate(columns)]
    extra = [c for c in copied if c not in IMPORT_COLUMNS]

    async def stage(connection: Connection) -> None:
        if extra:
            added = ", ".join(f"ADD COLUMN {column} text" for column in extra)
            await connection.execute(f"ALTER TABLE suppression_import {added}")
        await connection.copy_to_table(
            "suppression_import", source=source, columns=copied, format="csv"
        )
        await connection.execute(UNGUARDED)

    return stage


FORMULA_START = "-=+@\t\r"
"""Characters a spreadsheet reads a cell beginning with as a formula: an exported cell that
begins with one is written with a ``'`` before it (``libs.suppression_csv``)."""

_GUARDED = "^''[" + FORMULA_START.replace("\t", "\\t").replace("\r", "\\r") + "]"
"""A cell that begins with ``'`` and a formula character (``-`` first: not a range)."""

UNGUARDED = f"""
UPDATE suppression_import SET
    address = CASE WHEN address ~ '{_GUARDED}' THEN substr(address, 2) ELSE address END,
    note = CASE WHEN note ~ '{_GUARDED}' THEN substr(note, 2) ELSE note END
"""
"""An export's formula guard taken off again, so an export imports back as it was."""


def _ignored(index: int) -> str:
    return f"ignored_{index}"


SNAPSHOT_CHUNK = 20_000
STATE = "SELECT tenant_id::text, address, stream, reason, expires_at FROM suppressions"
"""What the in-process view keeps of a suppression (the verdict needs no more)."""
IN_FORCE = "(expires_at IS NULL OR expires_at > now())"
HORIZON = "SELECT pg_current_snapshot()::text"
"""The snapshot a view read in: the next poll reads what it could not see, nothing more."""
UNSEEN = (
    "changed_xid >= pg_snapshot_xmin($1::text::pg_snapshot)"
    " AND NOT pg_visible_in_snapshot(changed_xid, $1::text::pg_snapshot)"
)
"""Rows written by transactions the previous poll's snapshot did not see (running or later)."""


def _state(row: asyncpg.Record) -> Suppression:
    return Suppression(row[0], row[1], Stream(row[2]), reason_of(row[3]), expires_at=row[4])


async def load_all(connection: Connection, take: Callable[[list[Suppression]], None]) -> str:
    """Hand every suppression in force to ``take``, a chunk at a time (a million never sit in
    memory as objects); return the horizon from which to poll changes (``changes_since``)."""
    async with connection.transaction(readonly=True, isolation="repeatable_read"):
        horizon: str = await connection.fetchval(HORIZON)
        cursor = await connection.cursor(f"{STATE} WHERE {IN_FORCE}")
        while rows := await cursor.fetch(SNAPSHOT_CHUNK):
            take([_state(row) for row in rows])
    return horizon


@dataclass(frozen=True)
class Removals:
    """The whole state in force of each address that lost a suppression (its other
    suppressions may remain), and the horizon of the next poll."""

    now_in_force: dict[Key, list[Suppression]]
    horizon: str


async def changes_since(
    connection: Connection, horizon: str, take: Callable[[list[Suppression]], None]
) -> Removals:
    """Hand the suppressions written by transactions from ``horizon`` on to ``take`` (a chunk
    at a time: an import of a million arrives in one poll), and answer the removals.

    A transaction the previous poll's snapshot saw had its rows read then; every other one
    (running then, or begun later) is read once it has committed: no commit slips between two
    polls however long it ran, and a long transaction elsewhere does not make each poll read
    again what earlier polls took.
    """
    since = horizon
    async with connection.transaction(readonly=True, isolation="repeatable_read"):
        following: str = await connection.fetchval(HORIZON)
        cursor = await connection.cursor(f"{STATE} WHERE {UNSEEN} AND {IN_FORCE}", since)
        while rows := await cursor.fetch(SNAPSHOT_CHUNK):
            take([_state(row) for row in rows])
        removed = await connection.fetch(
            f"SELECT DISTINCT tenant_id::text, address FROM suppression_removals WHERE {UNSEEN}",
            since,
        )
        if not removed:
            return Removals({}, following)
        remaining = await connection.fetch(
            f"{STATE} WHERE (tenant_id, address) IN (SELECT * FROM"
            f" unnest($1::uuid[], $2::text[])) AND {IN_FORCE}",
            [uuid.UUID(row[0]) for row in removed],
            [row[1] for row in removed],
        )
    now_in_force: dict[Key, list[Suppression]] = {(row[0], row[1]): [] for row in removed}
    for row in remaining:
        now_in_force[(row[0], row[1])].append(_state(row))
    return Removals(now_in_force, following)
