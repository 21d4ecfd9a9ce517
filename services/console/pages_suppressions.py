"""``/suppressions``: find the addresses a tenant does not send to, and remove one with a reason.

The removal goes through ``DELETE /v1/suppressions/{address}`` with the reason as its ``note``,
which the API keeps with the key that removed it (``suppression_removals``), so the address's
history says who resumed mail to it and why.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response

from libs.suppressions import MAX_NOTE_CHARS, SuppressionReason
from schemas.common import Stream
from services.console.controls import back_to, said
from services.console.gateway import GatewayDep, GatewayProblem
from services.console.rendering import page
from services.console.session import FormDep, SessionDep
from services.console.times import utc

router = APIRouter()

PAGE_SIZE = 50
FILTERS = ("address", "prefix", "stream", "reason")


@router.get("/suppressions")
async def suppressions_page(request: Request, session: SessionDep, gw: GatewayDep) -> Response:
    wanted = {name: request.query_params.get(name, "").strip() for name in FILTERS}
    cursor = request.query_params.get("cursor", "")
    found: dict[str, Any] = {"suppressions": [], "next_cursor": None}
    problem = request.query_params.get("problem", "")
    try:
        found = await gw.get("/v1/suppressions", {**wanted, "cursor": cursor, "limit": PAGE_SIZE})
    except GatewayProblem as refused:
        if refused.status != 422:
            raise
        problem = said(refused)
    return page(
        request,
        session,
        "suppressions.html",
        active="suppressions",
        wanted=wanted,
        paged=bool(cursor),
        found=found,
        problem=problem,
        streams=[s.value for s in Stream],
        reasons=[r.value for r in SuppressionReason],
        note_chars=MAX_NOTE_CHARS,
        utc=utc,
    )


@router.post("/suppressions/remove")
async def remove_suppression(form: FormDep, gw: GatewayDep) -> Response:
    """Remove one suppression (an address in one stream, for one reason), saying why."""
    address, note = form.get("address", "").strip(), form.get("note", "").strip()
    if not note:
        return back_to("/suppressions", address=address, problem="Say why it is removed.")
    try:
        await gw.delete(
            f"/v1/suppressions/{quote(address, safe='')}",
            {"stream": form.get("stream"), "reason": form.get("reason"), "note": note},
        )
    except GatewayProblem as refused:
        if refused.status >= 500:
            raise
        return back_to("/suppressions", address=address, problem=said(refused))
    removed = f"Removed the {form.get('reason')} suppression of {address} ({form.get('stream')})."
    return back_to("/suppressions", address=address, done=removed)
