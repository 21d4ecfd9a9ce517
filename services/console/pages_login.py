"""Log-in and log-out: an API key of scope ``read`` or ``admin`` opens a session.

The key is checked with the gateway (``GET /v1/me``), which also says its tenant and whether it
is an operator's. A send-only key cannot log in.
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from services.console.gateway import Gateway
from services.console.rendering import page
from services.console.session import (
    COOKIE,
    LOGIN_CSRF_COOKIE,
    FormDep,
    LoginRequired,
    Session,
    same_origin,
    seal,
    tokens_match,
)

router = APIRouter()

MAX_KEY_LENGTH = 512


def safe_next(target: str | None) -> str:
    """Where to go after log-in: a path of the console only (never another site)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _login_form(request: Request, error: str = "", status_code: int = 200) -> Response:
    token = secrets.token_urlsafe(24)
    response = page(
        request,
        None,
        "login.html",
        status_code=status_code,
        login_csrf=token,
        error=error,
        next=safe_next(request.query_params.get("next")),
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", secure=_secure(request)
    )
    return response


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


@router.get("/login")
async def login_page(request: Request) -> Response:
    return _login_form(request)


@router.post("/login")
async def log_in(
    request: Request,
    api_key: Annotated[str, Form(max_length=MAX_KEY_LENGTH)] = "",
    csrf: Annotated[str, Form(max_length=100)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not same_origin(request) or not tokens_match(csrf, expected):
        return _login_form(request, "The form expired; please try again.", 403)
    owner = await _owner(request, api_key.strip())
    if owner is None:
        return _login_form(request, "This key is unknown, revoked or expired.", 401)
    if not {"read", "admin"} & set(owner["scopes"]):
        return _login_form(request, "This key may only send; use a read or admin key.", 403)
    session = Session(
        api_key=api_key.strip(),
        tenant_id=owner["tenant_id"],
        tenant_name=owner["tenant_name"],
        key_name=owner["key_name"],
        scopes=tuple(owner["scopes"]),
        operator=bool(owner["operator"]),
        csrf=secrets.token_urlsafe(24),
    )
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(
        COOKIE,
        seal(request.app.state.fernet, session),
        max_age=int(request.app.state.settings.console_session_hours * 3600),
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE)
    return response


async def _owner(request: Request, api_key: str) -> dict[str, Any] | None:
    """What the gateway says of ``api_key``, or None when it does not know it."""
    if not api_key:
        return None
    state = request.app.state
    try:
        owner: dict[str, Any] = await Gateway(
            state.http, state.settings.internal_gateway_url, api_key
        ).get("/v1/me")
    except LoginRequired:
        return None
    return owner


@router.post("/logout")
async def log_out(form: FormDep) -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE)
    return response
