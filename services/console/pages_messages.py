"""Finding a message and explaining it: the search page, the message page, its sent mail.

Everything comes from the gateway with the session's key (so a tenant sees only its own
messages; an operator, every tenant's) and, for the waterfall, from Jaeger for the trace id the
gateway just returned for that key.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from libs.trace_waterfall import fetch_trace, trace_ui_url, waterfall
from schemas.common import Stream
from schemas.events import MessageState
from services.console.gateway import GatewayDep, GatewayProblem
from services.console.mail_view import read_eml
from services.console.rendering import SANDBOXED_MAIL, page
from services.console.session import SessionDep
from services.console.timeline import (
    duration,
    rule_ids,
    suppressed_address,
    timeline,
)
from services.console.times import form_moment, utc

router = APIRouter()

TEXT_FILTERS = ("recipient", "status", "stream", "category", "tag", "metadata")
TIME_FILTERS = ("since", "until")
PAGE_SIZE = 25
EMPTY_PAGE: dict[str, Any] = {"messages": [], "next_cursor": None}


def _search_params(filters: dict[str, str], operator: bool) -> dict[str, str]:
    params = {name: filters[name] for name in TEXT_FILTERS if filters.get(name)}
    for name in TIME_FILTERS:
        if filters.get(name):
            params[name] = form_moment(filters[name])
    if operator and filters.get("tenant_id"):
        params["tenant_id"] = filters["tenant_id"]
    if filters.get("cursor"):
        params["cursor"] = filters["cursor"]
    params["limit"] = str(PAGE_SIZE)
    return params


@router.get("/")
async def search(request: Request, session: SessionDep, gateway: GatewayDep) -> Response:
    filters = {name: value.strip() for name, value in request.query_params.items()}
    if message_id := filters.get("id"):
        return RedirectResponse(f"/messages/{quote(message_id, safe='')}", status_code=303)
    error, found = "", EMPTY_PAGE
    try:
        found = await gateway.get("/v1/messages", params=_search_params(filters, session.operator))
    except GatewayProblem as problem:
        if problem.status not in (403, 422):
            raise
        error = problem.detail
    except ValueError:
        error = "Give the times as date and time (UTC)."
    older = None
    if found["next_cursor"]:
        kept = {name: value for name, value in filters.items() if value and name != "cursor"}
        older = "/?" + urlencode(kept | {"cursor": found["next_cursor"]})
    return page(
        request,
        session,
        "search.html",
        active="messages",
        filters=filters,
        messages=found["messages"],
        older=older,
        error=error,
        statuses=[state.value for state in MessageState],
        streams=[stream.value for stream in Stream],
        utc=utc,
    )


@router.get("/messages/{message_id}")
async def message(
    request: Request, message_id: str, session: SessionDep, gateway: GatewayDep
) -> Response:
    shown = await gateway.get(f"/v1/messages/{quote(message_id, safe='')}")
    trace = await fetch_trace(request.app.state.http, request.app.state.settings, shown["trace_id"])
    rows = waterfall(trace) if trace else []
    mail = None
    try:
        mail = read_eml(await gateway.get_bytes(_raw_path(shown["id"])))
    except GatewayProblem as problem:
        if problem.status != 404:
            raise
    return page(
        request,
        session,
        "message.html",
        active="messages",
        message=shown,
        events=timeline(shown["events"], rows),
        suppressed=suppressed_address(shown),
        rules=rule_ids(shown),
        mail=mail,
        spans=rows,
        trace_url=trace_ui_url(request.app.state.settings, shown["trace_id"]),
        utc=utc,
        duration=duration,
        metadata=sorted(shown["metadata"].items()),
    )


def _raw_path(message_id: str) -> str:
    return f"/v1/messages/{quote(message_id, safe='')}/raw"


@router.get("/messages/{message_id}/raw")
async def raw(message_id: str, gateway: GatewayDep) -> Response:
    """The sent ``.eml``, as a download named after the message."""
    content = await gateway.get_bytes(_raw_path(message_id))
    disposition = f'attachment; filename="{_file_stem(message_id)}.eml"'
    headers = {"Content-Disposition": disposition, "Cache-Control": "no-store"}
    return Response(content, media_type="message/rfc822", headers=headers)


@router.get("/messages/{message_id}/preview")
async def preview(message_id: str, gateway: GatewayDep) -> Response:
    """The sent mail's HTML, for the message page's sandboxed frame only."""
    mail = read_eml(await gateway.get_bytes(_raw_path(message_id)))
    return Response(mail.html or "", media_type="text/html", headers=SANDBOXED_MAIL)


def _file_stem(message_id: str) -> str:
    """The id with nothing that could break out of the header's quoted file name."""
    return "".join(c for c in message_id if c.isalnum() or c == "-") or "message"
