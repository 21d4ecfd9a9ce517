"""``/v1/held``: the caller's messages a ``hold`` rule keeps, to list, release or cancel.

Releasing sends a message on to the router as policy-check would have; cancelling ends it
``cancelled``. Both work one by one (``/v1/held/{id}/release``) or in bulk, by ids or by a
filter (rule, recipient domain, time held), and answer how many messages they settled. A held
message nobody settles fails with problem ``hold_expired`` once its rule's hold is over.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, ValidationError

from libs import held
from libs.held import (
    HeldFilter,
    HeldSelection,
    HeldState,
    HeldSummary,
    InvalidCursor,
)
from libs.tenants import Caller
from services.ingest.accept import SERVICE, Ingest
from services.ingest.http_deps import IngestDep, ReadCaller, SendCaller, parsed_body, problems
from services.ingest.problems import ProblemError
from services.ingest.routes_keys import json_body_doc
from services.ingest.search import DEFAULT_LIMIT, INVALID_PARAMETER, parse_limit
from services.ingest.validate import Violation

router = APIRouter(prefix="/v1/held", tags=["held messages"])
Filter = Annotated[str | None, Query()]
Verb = Annotated[str, Path(description="`release` or `cancel`")]


class HeldPage(BaseModel):
    """Held messages, longest held first; pass ``next_cursor`` as ``cursor`` for the next."""

    held: list[HeldSummary]
    next_cursor: str | None


class Settlement(BaseModel):
    """How many held messages a release or a cancel settled."""

    count: int


def _invalid(name: str, detail: str) -> ProblemError:
    return ProblemError.of([Violation(INVALID_PARAMETER, name, f"parameter {name!r}: {detail}")])


@router.get(
    "",
    response_model=HeldPage,
    responses=problems(401, 403, 422),
    summary="List held messages",
)
async def list_held(
    ingest: IngestDep,
    caller: ReadCaller,
    rule: Filter = None,
    recipient_domain: Filter = None,
    since: Filter = None,
    until: Filter = None,
    cursor: Filter = None,
    limit: Filter = None,
) -> HeldPage:
    """The tenant's held messages matching every filter: ``rule`` (its id), ``recipient_domain``,
    ``since`` (inclusive) and ``until`` (exclusive) on the time it was held (RFC 3339);
    ``limit`` 1 to 100 (default 50)."""
    size = parse_limit(limit) if limit is not None else DEFAULT_LIMIT
    if isinstance(size, Violation):
        raise ProblemError.of([size])
    given = {"rule_id": rule, "recipient_domain": recipient_domain, "since": since, "until": until}
    try:
        wanted = HeldFilter.model_validate({k: v for k, v in given.items() if v is not None})
    except ValidationError as error:
        first = error.errors()[0]
        name = "rule" if first["loc"][0] == "rule_id" else str(first["loc"][0])
        raise _invalid(name, first["msg"]) from None
    try:
        page, after = await held.list_held(ingest.pool, caller.tenant.id, wanted, cursor, size)
    except InvalidCursor as error:
        raise _invalid("cursor", str(error)) from None
    return HeldPage(held=page, next_cursor=after)


SETTLEMENTS = {"release": HeldState.RELEASED, "cancel": HeldState.CANCELLED}
"""The verb of each settlement in the path, and the state it moves held messages to."""


def _settlement(verb: str) -> HeldState:
    """The settlement a path names; 404 for any other word, as for an unknown path."""
    if verb not in SETTLEMENTS:
        raise ProblemError("not_found", f"no such settlement {verb!r}: release or cancel")
    return SETTLEMENTS[verb]


async def _settle(ingest: Ingest, caller: Caller, selection: HeldSelection, to: HeldState) -> int:
    send = ingest.broker.send_confirmed
    prefix = ingest.settings.topic_prefix
    return await held.settle(ingest.pool, send, prefix, SERVICE, caller.tenant.id, selection, to)


BULK_DESCRIPTION = """`release` sends held messages on to delivery; `cancel` ends them
`cancelled`. The body selects `message_ids` (up to 1000), or a filter: `rule_id`,
`recipient_domain`, `since`, `until` (at least one). Messages no longer held are skipped; the
answer says how many were settled."""


@router.post(
    "/{verb}",
    response_model=Settlement,
    responses=problems(400, 401, 403, 404, 415, 422, 503),
    summary="Release or cancel held messages, by ids or by a filter",
    description=BULK_DESCRIPTION,
    openapi_extra=json_body_doc(HeldSelection),
)
async def settle_many(
    verb: Verb, request: Request, ingest: IngestDep, caller: SendCaller
) -> Settlement:
    to = _settlement(verb)
    selection = await parsed_body(request, HeldSelection)
    return Settlement(count=await _settle(ingest, caller, selection, to))


async def settle_one(ingest: Ingest, caller: Caller, message_id: str, to: HeldState) -> bool:
    """Release or cancel one held message; False when the tenant has no such held message."""
    try:
        selection = HeldSelection(message_ids=[message_id])
    except ValidationError:
        return False
    return await _settle(ingest, caller, selection, to) == 1


@router.post(
    "/{message_id}/{verb}",
    response_model=Settlement,
    responses=problems(401, 403, 404, 503),
    summary="Release or cancel one held message",
)
async def settle(message_id: str, verb: Verb, ingest: IngestDep, caller: SendCaller) -> Settlement:
    """404 when the caller has no such message held (any more)."""
    if not await settle_one(ingest, caller, message_id, _settlement(verb)):
        raise ProblemError("not_found", f"no held message {message_id!r}")
    return Settlement(count=1)
