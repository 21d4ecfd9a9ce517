"""``/v1/suppressions``: the addresses a tenant does not send to, per stream and reason.

Reading needs the ``read`` scope; adding (one by one, in bulk or from CSV) and removing need
``send`` — a key that may send may also stop or resume sending to an address — and removing
a complaint also needs ``admin``: it resumes mail to someone who reported it as spam. Every
change reaches each policy-check process within its view's staleness bound
(``services.policy_check.view``: ≤ 2 s). A tenant only ever sees and changes its own rows.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Annotated, TypeVar

import asyncpg
from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import AfterValidator, AwareDatetime, BaseModel, Field

from libs.keys import Scope
from libs.sendable import ONE_LINE
from libs.suppression_csv import (
    CsvRefused,
    GuardedBody,
    export_lines,
    header_line,
)
from libs.suppression_views import AddressCheck, SuppressionView
from libs.suppressions import (
    MAX_ADDRESS_CHARS,
    MAX_NOTE_CHARS,
    Cursor,
    ImportFault,
    Stager,
    SuppressionQuery,
    SuppressionReason,
    active_suppressions,
    each_suppression,
    import_suppressions,
    list_suppressions,
    normalise_address,
    remove_suppressions,
    stage_csv,
    stage_rows,
)
from libs.tenants import Caller
from schemas.common import Stream
from services.ingest.http_deps import IngestDep, ReadCaller, SendCaller, parsed_body, problems
from services.ingest.problems import ProblemError
from services.ingest.search import (
    bad_parameter,
    grouped_parameters,
    parse_choice,
    parse_limit,
    parse_moment,
    unstorable,
)
from services.ingest.validate import Violation, pointer

router = APIRouter(prefix="/v1/suppressions", tags=["suppressions"])
T = TypeVar("T")

MAX_ADD = 1000
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
CSV = "text/csv"
Filter = Annotated[str | None, Query()]
IMPORT_RETRY_SECONDS = 10
TRANSFER_SECONDS = 600.0
"""The longest an import's upload or an export's download may hold its connection and
transaction (a million rows take seconds; a client trickling bytes is cut off)."""


@dataclass
class RunningImports:
    """CSV imports this process runs now, and how many it runs at once: each holds
    a connection and a transaction for as long as its client takes, so a flood of them could
    starve everything else of the database."""

    most: int
    running: int = 0

    def take(self) -> None:
        """Count one more, or answer 429 when ``most`` are running."""
        if self.running >= self.most:
            raise ProblemError(
                "rate_limited",
                f"{self.most} imports are running in this process; retry soon",
                headers={"Retry-After": str(IMPORT_RETRY_SECONDS)},
            )
        self.running += 1


IMPORTS = RunningImports(most=2)
REMOVE_PARAMETERS = frozenset({"stream", "reason", "note"})
PARAMETERS = frozenset(
    {"address", "prefix", "stream", "reason", "since", "until", "cursor", "limit", "format"}
)


class SuppressionPage(BaseModel):
    """One page of the list in address order; pass ``next_cursor`` as ``cursor`` for the next."""

    suppressions: list[SuppressionView]
    next_cursor: str | None


def _one_line(value: str) -> str:
    if fault := ONE_LINE.fault(value):
        raise ValueError(fault)
    return value


OneLine = Annotated[str, AfterValidator(_one_line)]


class NewSuppression(BaseModel):
    """An address to suppress (reason ``manual``)."""

    address: OneLine = Field(min_length=1, max_length=MAX_ADDRESS_CHARS)
    stream: Stream | None = None
    """None: every stream."""
    expires_at: AwareDatetime | None = None
    """None: for good."""
    note: OneLine | None = Field(default=None, max_length=MAX_NOTE_CHARS)
    """Who asked and why."""


class AddRequest(BaseModel):
    """``POST /v1/suppressions``: up to 1000 addresses, all added or none."""

    suppressions: list[NewSuppression] = Field(min_length=1, max_length=MAX_ADD)


class Added(BaseModel):
    """How many suppressions were written (an address without a stream counts in each)."""

    written: int


class Removed(BaseModel):
    """What ``DELETE`` removed."""

    removed: list[SuppressionView]


LIST_DESCRIPTION = f"""The caller's suppressions in force, in address order.

- `address`: one address, exactly (any case); `prefix`: addresses starting with it.
- `stream`: `transactional` or `broadcast`;
  `reason`: {", ".join(r.value for r in SuppressionReason)}.
- `since` (inclusive), `until` (exclusive): RFC 3339 date-times, on when it was created.
- `limit`: 1 to {MAX_LIMIT} (default {DEFAULT_LIMIT}); `cursor`: `next_cursor` as it is.
- `format=csv`: every match as CSV, streamed (as `GET /v1/suppressions.csv`).
"""


def _parameters(params: list[tuple[str, str]], known: frozenset[str]) -> dict[str, str]:
    """Each parameter's value, or a 422 naming the unknown, repeated or unstorable ones."""
    given = grouped_parameters(params, known)
    if isinstance(given, list):
        raise ProblemError.of(given)
    if bad := unstorable(given):
        raise ProblemError.of(bad)
    return {name: values[0] for name, values in given.items()}


def _path_address(address: str) -> str:
    """The address of a path, normalised; 422 for text no address can contain."""
    if fault := ONE_LINE.fault(address):
        raise ProblemError.of([Violation("invalid_address", pointer("address"), fault)])
    return normalise_address(address)


def _parsed(
    single: dict[str, str], name: str, parse: Callable[[str, str], T | Violation]
) -> T | Violation | None:
    return parse(name, single[name]) if name in single else None


def _cursor(name: str, text: str) -> Cursor | Violation:
    try:
        return Cursor.decode(text)
    except ValueError:
        return bad_parameter(name, "not a cursor this API gave (pass next_cursor as it is)")


def _format(name: str, text: str) -> str | Violation:
    return text if text in ("json", "csv") else bad_parameter(name, "json or csv")


def _stream(name: str, text: str) -> Stream | Violation:
    return parse_choice(name, text, Stream)


def _reason(name: str, text: str) -> SuppressionReason | Violation:
    return parse_choice(name, text, SuppressionReason)


def _valid(value: T | Violation | None) -> T | None:
    """A parsed value once the violations were answered."""
    return None if isinstance(value, Violation) else value


def _refuse(*values: object) -> None:
    if violations := [v for v in values if isinstance(v, Violation)]:
        raise ProblemError.of(violations)


def parse_query(params: list[tuple[str, str]]) -> tuple[SuppressionQuery, bool]:
    """The list the parameters ask for and whether as CSV; 422 naming each bad parameter."""
    single = _parameters(params, PARAMETERS)
    stream, reason = _parsed(single, "stream", _stream), _parsed(single, "reason", _reason)
    since, until = _parsed(single, "since", parse_moment), _parsed(single, "until", parse_moment)
    after, form = _parsed(single, "cursor", _cursor), _parsed(single, "format", _format)
    limit = parse_limit(single.get("limit", str(DEFAULT_LIMIT)), MAX_LIMIT)
    _refuse(stream, reason, since, until, after, form, limit)
    query = SuppressionQuery(
        address=single.get("address"),
        prefix=single.get("prefix"),
        stream=_valid(stream),
        reason=_valid(reason),
        since=_valid(since),
        until=_valid(until),
        after=_valid(after),
        limit=_valid(limit),
    )
    return query, form == "csv"


@router.get(
    "",
    response_model=SuppressionPage,
    responses={200: {"content": {CSV: {}}}, **problems(401, 403, 422)},
    summary="List suppressions (JSON pages, or all of them as CSV)",
    description=LIST_DESCRIPTION,
)
async def list_route(
    request: Request,
    ingest: IngestDep,
    caller: ReadCaller,
    address: Filter = None,
    prefix: Filter = None,
    stream: Filter = None,
    reason: Filter = None,
    since: Filter = None,
    until: Filter = None,
    cursor: Filter = None,
    limit: Filter = None,
    format: Filter = None,
) -> SuppressionPage | StreamingResponse:
    """Parameters are declared for the OpenAPI document; ``parse_query`` reads and checks them."""
    query, as_csv = parse_query(request.query_params.multi_items())
    if as_csv:
        return _export(ingest.pool, caller, query)
    page = await list_suppressions(ingest.pool, caller.tenant.id, query)
    return SuppressionPage(
        suppressions=[SuppressionView.of(s) for s in page.suppressions],
        next_cursor=page.next_cursor.encode() if page.next_cursor else None,
    )


@router.get(
    ".csv",
    response_class=StreamingResponse,
    responses={200: {"content": {CSV: {}}}, **problems(401, 403, 422)},
    summary="Every suppression as CSV, streamed (the list's filters apply)",
)
async def export_route(
    request: Request, ingest: IngestDep, caller: ReadCaller
) -> StreamingResponse:
    query, _ = parse_query(request.query_params.multi_items())
    return _export(ingest.pool, caller, query)


def _export(pool: asyncpg.Pool, caller: Caller, query: SuppressionQuery) -> StreamingResponse:
    """Rows are read through a cursor and sent as they come: millions never sit in memory."""
    whole = replace(query, limit=None, after=None)

    async def lines() -> AsyncIterator[str]:
        yield header_line()
        async with asyncio.timeout(TRANSFER_SECONDS), pool.acquire() as connection:
            async for chunk in each_suppression(connection, caller.tenant.id, whole):
                yield export_lines(chunk)

    disposition = 'attachment; filename="suppressions.csv"'
    return StreamingResponse(
        lines(), media_type=f"{CSV}; charset=utf-8", headers={"Content-Disposition": disposition}
    )


@router.get(
    "/{address}",
    response_model=AddressCheck,
    responses=problems(401, 403, 422),
    summary="Whether mail to an address goes, per stream",
)
async def check_route(address: str, ingest: IngestDep, caller: ReadCaller) -> AddressCheck:
    key = (caller.tenant.id, _path_address(address))
    found = await active_suppressions(ingest.pool, [key])
    return AddressCheck.of(key[1], found.get(key, []))


def _rows_refused(faults: list[ImportFault], collection: str, first: int) -> ProblemError:
    """The 422 naming each faulty row of an import (rows counted from ``first``)."""
    return ProblemError.of(
        [
            Violation(
                f"invalid_{fault.field}",
                pointer(collection, fault.line - 1 + first, fault.field),
                fault.detail,
            )
            for fault in faults
        ]
    )


async def _import(ingest: IngestDep, caller: Caller, stage: Stager) -> int | list[ImportFault]:
    async with ingest.pool.acquire() as connection:
        return await import_suppressions(
            connection, caller.tenant.id, f"key:{caller.key.id}", stage
        )


@router.post(
    "",
    response_model=Added,
    responses=problems(400, 401, 403, 413, 415, 422),
    summary="Suppress up to 1000 addresses (reason manual), all or none",
)
async def add_route(request: Request, ingest: IngestDep, caller: SendCaller) -> Added:
    parsed = await parsed_body(request, AddRequest)
    now = datetime.now(UTC)
    past = [
        Violation("expired", pointer("suppressions", i, "expires_at"), "expires_at is past")
        for i, item in enumerate(parsed.suppressions)
        if item.expires_at is not None and item.expires_at <= now
    ]
    if past:
        raise ProblemError.of(past)
    rows = [
        (
            item.address,
            item.stream.value if item.stream else None,
            item.expires_at.isoformat() if item.expires_at else None,
            item.note,
        )
        for item in parsed.suppressions
    ]
    written = await _import(ingest, caller, stage_rows(rows))
    if isinstance(written, list):
        raise _rows_refused(written, "suppressions", first=0)
    return Added(written=written)


@router.post(
    "/import",
    response_model=Added,
    responses=problems(401, 403, 413, 415, 422),
    openapi_extra={"requestBody": {"required": True, "content": {CSV: {}}}},
    summary="Suppress every address of a CSV (reason manual), all or none",
)
async def import_route(request: Request, ingest: IngestDep, caller: SendCaller) -> Added:
    """A header line (``address`` and any of ``stream``, ``expires_at``, ``note``), then a row
    per address; streamed into the database as it arrives. Faults name the row (from 1 after
    the header) and column: ``/rows/<n>/<column>``."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != CSV:
        raise ProblemError("unsupported_media_type", "send the body as text/csv")
    IMPORTS.take()
    body = GuardedBody(request.stream())
    try:
        async with asyncio.timeout(TRANSFER_SECONDS):
            columns = await body.header()
            written = await _import(ingest, caller, stage_csv(body.rows(), columns))
    except TimeoutError:
        raise ProblemError(
            "request_timeout", f"an import may take {TRANSFER_SECONDS:g} s at most"
        ) from None
    except CsvRefused as refused:
        raise ProblemError(refused.code, refused.detail) from None
    except asyncpg.DataError as error:  # COPY could not read it: quotes, columns, encoding
        where = f" ({error.context})" if getattr(error, "context", None) else ""
        raise ProblemError(
            "invalid_csv", f"{error.args[0] if error.args else error}{where}"
        ) from None
    finally:
        IMPORTS.running -= 1
    if isinstance(written, list):
        raise _rows_refused(written, "rows", first=1)
    return Added(written=written)


@router.delete(
    "/{address}",
    response_model=Removed,
    responses=problems(401, 403, 404, 422),
    summary="Stop suppressing an address (one stream or reason, or all); a complaint needs admin",
)
async def remove_route(
    request: Request,
    address: str,
    ingest: IngestDep,
    caller: SendCaller,
    stream: Filter = None,
    reason: Filter = None,
    note: Filter = None,
) -> Removed:
    """Remove the address's suppressions (of ``stream`` and ``reason`` when given), recording
    the key that removed them and ``note`` (why). 403 ``complaint_needs_admin`` removes nothing
    when a complaint is among them and the key lacks the admin scope."""
    single = _parameters(request.query_params.multi_items(), REMOVE_PARAMETERS)
    only_stream, only_reason = (
        _parsed(single, "stream", _stream),
        _parsed(single, "reason", _reason),
    )
    _refuse(only_stream, only_reason)
    may_remove_complaints = Scope.ADMIN in caller.key.settings.scopes
    async with ingest.pool.acquire() as connection:
        removal = await remove_suppressions(
            connection,
            caller.tenant.id,
            _path_address(address),
            _valid(only_stream),
            _valid(only_reason),
            f"key:{caller.key.id}",
            single.get("note"),
            may_remove_complaints,
        )
    if removal.refused_complaints:
        raise ProblemError(
            "complaint_needs_admin", "removing a complaint needs a key with the admin scope"
        )
    if not removal.removed:
        raise ProblemError("not_found", f"{normalise_address(address)} is not suppressed")
    return Removed(removed=[SuppressionView.of(s) for s in removal.removed])
