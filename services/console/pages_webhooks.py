"""``/webhooks``: a tenant's webhook endpoints, each one's recent posts, and replays.

What the API shows of an endpoint never includes its signing secret, and neither does this.
A replay queues events again (``POST /v1/webhooks/{id}/replay``): one event of the log, or those
of a time range given in UTC.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response

from services.console.controls import back_to, said
from services.console.gateway import GatewayDep, GatewayProblem
from services.console.rendering import page
from services.console.session import FormDep, SessionDep
from services.console.times import form_moment, utc

router = APIRouter()

ATTEMPTS_PAGE = 50


def _endpoint_path(endpoint_id: str) -> str:
    return f"/v1/webhooks/{quote(endpoint_id, safe='')}"


def replay_body(form: dict[str, str]) -> dict[str, str] | str:
    """What the replay form asks the API for, or why it cannot be asked."""
    if event_id := form.get("event_id", "").strip():
        return {"event_id": event_id}
    since, until = form.get("since", "").strip(), form.get("until", "").strip()
    if not since:
        return "Give the start of the range to replay."
    try:
        body = {"since": form_moment(since)} | ({"until": form_moment(until)} if until else {})
    except ValueError:
        return "Give the range as date and time (UTC)."
    return body


@router.get("/webhooks")
async def webhooks_page(request: Request, session: SessionDep, gw: GatewayDep) -> Response:
    listed = await gw.get("/v1/webhooks")
    return page(
        request, session, "webhooks.html", active="webhooks", endpoints=listed["webhooks"], utc=utc
    )


@router.get("/webhooks/{endpoint_id}")
async def webhook_page(
    endpoint_id: str, request: Request, session: SessionDep, gw: GatewayDep
) -> Response:
    endpoint = await gw.get(_endpoint_path(endpoint_id))
    cursor = request.query_params.get("cursor", "")
    attempts: dict[str, Any] = await gw.get(
        f"{_endpoint_path(endpoint_id)}/attempts", {"cursor": cursor, "limit": ATTEMPTS_PAGE}
    )
    return page(
        request,
        session,
        "webhook.html",
        active="webhooks",
        endpoint=endpoint,
        attempts=attempts["attempts"],
        next_cursor=attempts["next_cursor"],
        paged=bool(cursor),
        problem=request.query_params.get("problem", ""),
        utc=utc,
    )


@router.post("/webhooks/{endpoint_id}/replay")
async def replay(endpoint_id: str, form: FormDep, gw: GatewayDep) -> Response:
    here = f"/webhooks/{quote(endpoint_id, safe='')}"
    body = replay_body(form)
    if isinstance(body, str):
        return back_to(here, problem=body)
    try:
        replayed = await gw.post(f"{_endpoint_path(endpoint_id)}/replay", body)
    except GatewayProblem as refused:
        if refused.status >= 500 or refused.status == 404:
            raise
        return back_to(here, problem=said(refused))
    return back_to(here, done=f"Replay accepted: {replayed['queued']} event(s) queued.")
