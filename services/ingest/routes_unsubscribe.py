"""One-click unsubscribe (RFC 8058): the link every offering message's ``List-Unsubscribe`` holds.

No API key: the link's signed token (``libs.message_tokens``) is the authority, and it names one
message and its stream. ``POST`` with ``List-Unsubscribe=One-Click`` — what a mailbox provider's
unsubscribe button sends — reports the message ``unsubscribed`` (one event per message, however
often it is posted). ``GET`` only shows a page with a button that makes that POST: mail scanners
and link previews fetch every link in a message, and must not unsubscribe anyone. A token that is
malformed, forged or another message's is a 404, like a link that never existed.
"""

from __future__ import annotations

import html
from email import message_from_bytes
from email.message import Message
from typing import Annotated
from urllib.parse import parse_qsl

import asyncpg
from fastapi import APIRouter, Header, Request
from fastapi.responses import HTMLResponse

from libs.late_events import report_logged
from libs.message_log import Unverified, message_of_token
from libs.message_tokens import MessageToken, Purpose
from libs.verp import UNSUBSCRIBE_PATH
from schemas.events import MessageState
from services.ingest.accept import SERVICE, Ingest
from services.ingest.http_deps import IngestDep, problems
from services.ingest.problems import ProblemError

router = APIRouter()

MAX_FORM_BYTES = 4096
"""An unsubscribe POST is one short form field."""
ONE_CLICK = ("List-Unsubscribe", "One-Click")
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def one_click_requested(content_type: str, body: bytes) -> bool:
    """Whether a POST body is RFC 8058's ``List-Unsubscribe=One-Click``, URL-encoded or as
    ``multipart/form-data`` (both are allowed)."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media == FORM_TYPES[0]:
        fields = parse_qsl(body.decode("ascii", "replace"), keep_blank_values=True)
        return ONE_CLICK in fields
    if media == FORM_TYPES[1]:
        form = message_from_bytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
        return any(_form_field(part) == ONE_CLICK for part in form.walk())
    return False


def _form_field(part: Message) -> tuple[str, str] | None:
    """A ``multipart/form-data`` part as (name, value)."""
    name = part.get_param("name", header="content-disposition")
    payload = part.get_payload(decode=True)
    if not isinstance(name, str) or not isinstance(payload, bytes):
        return None
    return name, payload.decode("utf-8", "replace").strip()


def confirmation_page(action: str, stream: str) -> str:
    """The page a GET shows: what the button does, and the button."""
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Unsubscribe</title></head>"
        "<body><h1>Unsubscribe</h1>"
        f"<p>Stop receiving {html.escape(stream)} mail like the message that brought you here?</p>"
        f"<form method='post' action='{html.escape(action)}'>"
        "<input type='hidden' name='List-Unsubscribe' value='One-Click'>"
        "<button type='submit'>Unsubscribe</button></form></body></html>"
    )


DONE_PAGE = (
    "<!doctype html><html><head><meta charset='utf-8'><title>Unsubscribed</title></head>"
    "<body><h1>You are unsubscribed</h1></body></html>"
)


async def _signed_message(ingest: Ingest, token: str) -> asyncpg.Record:
    """The logged message a genuine token names (404 for any other token)."""
    parsed = MessageToken.parse(token)
    if parsed is not None:
        found = await message_of_token(ingest.pool, ingest.token_key, parsed, Purpose.UNSUBSCRIBE)
        if not isinstance(found, Unverified):
            return found
    raise ProblemError("not_found", "no such unsubscribe link")


@router.get(
    UNSUBSCRIBE_PATH + "{token}",
    response_class=HTMLResponse,
    responses=problems(404),
    summary="The unsubscribe page of a List-Unsubscribe link (changes nothing)",
)
async def unsubscribe_page(token: str, request: Request, ingest: IngestDep) -> HTMLResponse:
    """A page with one button that POSTs the one-click form: fetching the link never
    unsubscribes (scanners fetch every link)."""
    row = await _signed_message(ingest, token)
    return HTMLResponse(confirmation_page(request.url.path, row["stream"] or "this"))


@router.post(
    UNSUBSCRIBE_PATH + "{token}",
    response_class=HTMLResponse,
    responses=problems(400, 404, 413, 503),
    summary="One-click unsubscribe (RFC 8058): no API key, the signed token is the authority",
)
async def unsubscribe(
    token: str,
    request: Request,
    ingest: IngestDep,
    content_type: Annotated[str, Header()] = "",
) -> HTMLResponse:
    """Report the link's message ``unsubscribed`` (from its stream); a repeat is the same
    event. The body must be ``List-Unsubscribe=One-Click``, URL-encoded or as form data."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise ProblemError(
                "payload_too_large", f"an unsubscribe form is {MAX_FORM_BYTES} bytes at most"
            )
    if not one_click_requested(content_type, body):
        raise ProblemError(
            "invalid_unsubscribe_request", "the body must be List-Unsubscribe=One-Click"
        )
    row = await _signed_message(ingest, token)
    await report_logged(
        ingest.broker, ingest.settings.topic_prefix, row, MessageState.UNSUBSCRIBED, SERVICE
    )
    return HTMLResponse(DONE_PAGE)
