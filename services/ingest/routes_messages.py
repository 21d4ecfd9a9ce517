"""Finding messages, their sent ``.eml``, and cancelling one before SMTP.

``GET /v1/messages`` searches the tenant's log, ``GET /v1/messages/{id}/raw`` gives the bytes
the sender handed to SMTP, ``DELETE /v1/messages/{id}`` keeps a message from being sent. An
operator's key reads every tenant's messages (support answers for all of them); cancelling stays
the tenant's own.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel

from libs.cancellation import PAST_CANCELLING, Cancellation, cancel_logged
from libs.held import HeldState
from libs.message_log import raw_message, read_message
from schemas.events import MessageState
from services.ingest.accept import SERVICE
from services.ingest.http_deps import (
    IngestDep,
    ReadCaller,
    SendCaller,
    problems,
    searched_tenant,
    seen_as,
)
from services.ingest.problems import ProblemError
from services.ingest.routes_held import settle_one
from services.ingest.search import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    METADATA_SEPARATOR,
    parse_query,
    search_messages,
)
from services.ingest.views import MessageSummary, MessageView

router = APIRouter()

RFC822 = "message/rfc822"
Filter = Annotated[str | None, Query()]


class MessagePage(BaseModel):
    """One page of a search, newest first; pass ``next_cursor`` as ``cursor`` for the next."""

    messages: list[MessageSummary]
    next_cursor: str | None


SEARCH_DESCRIPTION = f"""The caller's messages matching every filter given, newest first.

- `tenant_id`: for an operator's key, the tenant whose messages to search (without it: every
  tenant's); a tenant's key may name only its own tenant (another: 403 `operator_only`).
- `recipient`: the address, any case. `status`, `stream`, `category`, `template`: exact.
- `tag`: a tag the message has; repeat it for messages having all of them.
- `metadata`: `key{METADATA_SEPARATOR}value` (split at the first `{METADATA_SEPARATOR}`), e.g.
  `metadata=order_id{METADATA_SEPARATOR}123`; repeat it for messages having all pairs.
- `since` (inclusive), `until` (exclusive): RFC 3339 date-times with an offset, on the time the
  message was accepted.
- `limit`: 1 to {MAX_LIMIT} (default {DEFAULT_LIMIT}); `cursor`: `next_cursor` of the previous
  page, as it is. Pages never skip or repeat a message, however many arrive meanwhile.

A parameter that is unknown, repeated (but `tag`, `metadata`) or malformed is a 422 problem
with code `invalid_parameter` naming it.
"""


@router.get(
    "/v1/messages",
    response_model=MessagePage,
    responses=problems(401, 403, 422),
    summary="Find messages",
    description=SEARCH_DESCRIPTION,
)
async def search(
    request: Request,
    ingest: IngestDep,
    caller: ReadCaller,
    tenant_id: Filter = None,
    recipient: Filter = None,
    status: Filter = None,
    stream: Filter = None,
    category: Filter = None,
    template: Filter = None,
    tag: Annotated[list[str] | None, Query()] = None,
    metadata: Annotated[list[str] | None, Query()] = None,
    since: Filter = None,
    until: Filter = None,
    cursor: Filter = None,
    limit: Filter = None,
) -> MessagePage:
    """Parameters are declared for the OpenAPI document; they are read and checked by
    ``parse_query``, so each bad one gets its problem."""
    query = parse_query(request.query_params.multi_items())
    if isinstance(query, list):
        raise ProblemError.of(query)
    tenant = searched_tenant(ingest, caller, query.tenant_id)
    async with ingest.pool.acquire() as connection:
        page = await search_messages(connection, tenant, query)
    return MessagePage(
        messages=[MessageSummary.of_row(row) for row in page.rows],
        next_cursor=page.next_cursor.encode() if page.next_cursor else None,
    )


def _not_found(message_id: str) -> ProblemError:
    return ProblemError("not_found", f"no message {message_id!r}")


def _checked_id(message_id: str) -> str:
    try:
        return str(uuid.UUID(message_id))
    except ValueError:
        raise _not_found(message_id) from None


@router.get(
    "/v1/messages/{message_id}/raw",
    response_class=Response,
    responses={200: {"content": {RFC822: {}}}, **problems(401, 403, 404)},
    summary="The .eml the message was sent as",
)
async def raw(message_id: str, ingest: IngestDep, caller: ReadCaller) -> Response:
    """The exact bytes of the message's last attempt handed to SMTP; 404 before any."""
    checked = _checked_id(message_id)
    tenant = seen_as(ingest, caller)
    content = await raw_message(ingest.pool, checked, tenant)
    if content is None:
        if await read_message(ingest.pool, checked, tenant) is None:
            raise _not_found(message_id)
        raise ProblemError("not_found", f"message {checked} was not handed to SMTP yet")
    disposition = f'inline; filename="{checked}.eml"'
    return Response(content, media_type=RFC822, headers={"Content-Disposition": disposition})


@router.delete(
    "/v1/messages/{message_id}",
    response_model=MessageView,
    responses=problems(401, 403, 404, 409, 503),
    summary="Cancel a message not handed to SMTP yet",
)
async def cancel(message_id: str, ingest: IngestDep, caller: SendCaller) -> MessageView:
    """Cancel a message that is held by a rule, scheduled (``send_at``), waiting for a retry or
    still on its way to the sender: no attempt of it will be handed to SMTP, and a
    ``cancelled`` event reports it. 409 ``not_cancellable`` once an attempt is being handed
    over or the message's journey ended; cancelling a cancelled message answers it again."""
    logged = await read_message(ingest.pool, _checked_id(message_id), caller.tenant.id)
    if logged is None:
        raise _not_found(message_id)
    row, _ = logged
    if row["status"] == MessageState.CANCELLED:
        return MessageView.of(*logged)
    if MessageState(row["status"]) in PAST_CANCELLING:
        raise _not_cancellable(message_id, f"it is {row['status']}")
    if await settle_one(ingest, caller, str(row["id"]), HeldState.CANCELLED):
        return MessageView.of(*logged).model_copy(update={"status": MessageState.CANCELLED.value})
    prefix = ingest.settings.topic_prefix
    outcomes = await cancel_logged(ingest.pool, ingest.broker, prefix, [row], SERVICE)
    if outcomes[str(row["id"])] is Cancellation.TOO_LATE:
        raise _not_cancellable(message_id, "it is being handed to SMTP, or was")
    return MessageView.of(*logged).model_copy(update={"status": MessageState.CANCELLED.value})


def _not_cancellable(message_id: str, why: str) -> ProblemError:
    return ProblemError("not_cancellable", f"message {message_id} cannot be cancelled: {why}")
