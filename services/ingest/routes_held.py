"""``/v1/held``: the caller's messages a ``hold`` rule keeps, to list, release or cancel.

Releasing sends a message on to the router as policy-check would have; cancelling ends it
``cancelled``. Both work one by one (``/v1/held/{id}/release``) or in bulk, by ids or by a
filter (rule, recipient domain, time held), and answer how many messages they settled. A held
message nobody settles fails with problem ``hold_expired`` once its rule's hold is over.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ValidationError

from libs import held
from libs.held import (
    DEFAULT_PAGE,
    MAX_PAGE,
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
from services.ingest.validate import Violation, pointer

router = APIRouter(prefix="/v1/held", tags=["held messages"])
Filter = Annotated[str | None, Query()]


class HeldPage(BaseModel):
    """Held messages, longest held first; pass ``next_cursor`` as ``cursor`` for the next."""

    held: list[HeldSummary]
    next_cursor: str | None


class Settlement(BaseModel):
    """How many held messages a release or a cancel settled."""

    count: int


def _invalid(name: str, detail: str) -> ProblemError:
    return ProblemError.of([Violation("invalid_parameter", pointer(name), detail)])


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
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
) -> HeldPage:
    """The tenant's held messages matching every filter: ``rule`` (its id), ``recipient_domain``,
    ``since`` (inclusive) and ``until`` (exclusive) on the time it was held (RFC 3339)."""
    given = {"rule_id": rule, "recipient_domain": recipient_domain, "since": since, "until": until}
    try:
        wanted = HeldFilter.model_validate({k: v for k, v in given.items() if v is not None})
    except ValidationError as error:
        first = error.errors()[0]
        name = "rule" if first["loc"][0] == "rule_id" else str(first["loc"][0])
        raise _invalid(name, first["msg"]) from None
    try:
        page, after = await held.list_held(ingest.pool, caller.tenant.id, wanted, cursor, limit)
    except InvalidCursor as error:
        raise _invalid("cursor", str(error)) from None
    return HeldPage(held=page, next_cursor=after)


async def _settle(ingest: Ingest, caller: Caller, selection: HeldSelection, to: HeldState) -> int:
    send = ingest.broker.send_confirmed
    prefix = ingest.settings.topic_prefix
    return await held.settle(ingest.pool, send, prefix, SERVICE, caller.tenant.id, selection, to)


BULK_DESCRIPTION = """The body selects `message_ids` (up to 1000), or a filter: `rule_id`,
`recipient_domain`, `since`, `until` (at least one). Messages no longer held are skipped; the
answer says how many were settled."""


@router.post(
    "/release",
    response_model=Settlement,
    responses=problems(400, 401, 403, 415, 422, 503),
    summary="Release held messages: they go on to delivery",
    description=BULK_DESCRIPTION,
    openapi_extra=json_body_doc(HeldSelection),
)
async def release(request: Request, ingest: IngestDep, caller: SendCaller) -> Settlement:
    selection = await parsed_body(request, HeldSelection)
    return Settlement(count=await _settle(ingest, caller, selection, HeldState.RELEASED))


@router.post(
    "/cancel",
    response_model=Settlement,
    responses=problems(400, 401, 403, 415, 422, 503),
    summary="Cancel held messages: they end cancelled",
    description=BULK_DESCRIPTION,
    openapi_extra=json_body_doc(HeldSelection),
)
async def cancel(request: Request, ingest: IngestDep, caller: SendCaller) -> Settlement:
    selection = await parsed_body(request, HeldSelection)
    return Settlement(count=await _settle(ingest, caller, selection, HeldState.CANCELLED))


async def settle_one(ingest: Ingest, caller: Caller, message_id: str, to: HeldState) -> bool:
    """Release or cancel one held message; False when the tenant has no such held message."""
    try:
        selection = HeldSelection(message_ids=[message_id])
    except ValidationError:
        return False
    return await _settle(ingest, caller, selection, to) == 1


async def _one(ingest: Ingest, caller: Caller, message_id: str, to: HeldState) -> Settlement:
    if not await settle_one(ingest, caller, message_id, to):
        raise ProblemError("not_found", f"no held message {message_id!r}")
    return Settlement(count=1)


@router.post(
    "/{message_id}/release",
    response_model=Settlement,
    responses=problems(401, 403, 404, 503),
    summary="Release one held message",
)
async def release_one(message_id: str, ingest: IngestDep, caller: SendCaller) -> Settlement:
    return await _one(ingest, caller, message_id, HeldState.RELEASED)


@router.post(
    "/{message_id}/cancel",
    response_model=Settlement,
    responses=problems(401, 403, 404, 503),
    summary="Cancel one held message",
)
async def cancel_one(message_id: str, ingest: IngestDep, caller: SendCaller) -> Settlement:
    return await _one(ingest, caller, message_id, HeldState.CANCELLED)
