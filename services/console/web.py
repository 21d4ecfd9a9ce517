"""The console's web app: security headers, static files, error pages and every page module."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from libs.settings import Settings
from services.console import (
    pages_deliverability,
    pages_login,
    pages_messages,
    pages_queues,
    pages_suppressions,
    pages_templates,
    pages_webhooks,
)
from services.console.gateway import TIMEOUT_SECONDS, GatewayProblem
from services.console.rendering import page
from services.console.session import LoginRequired, current_session, session_fernet

STATIC = Path(__file__).parent / "static"

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; frame-src 'self'; object-src 'none';"
        " base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # "no-referrer" makes Origin "null" on our own forms
    "X-Frame-Options": "DENY",
}
"""Every answer's, unless it sets its own (the sandboxed mail preview does)."""


def build_console(settings: Settings) -> FastAPI:
    """The console app: its pages, its static files and its shared HTTP client."""
    app = FastAPI(title="Sendarix console", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings = settings
    app.state.fernet = session_fernet(settings)
    app.state.http = httpx.AsyncClient(timeout=TIMEOUT_SECONDS)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(pages_login.router)
    app.include_router(pages_messages.router)
    app.include_router(pages_queues.router)
    app.include_router(pages_deliverability.router)
    app.include_router(pages_suppressions.router)
    app.include_router(pages_templates.router)
    app.include_router(pages_webhooks.router)

    @app.middleware("http")
    async def security_headers(request: Request, call_next: object) -> Response:
        response: Response = await call_next(request)  # type: ignore[operator]
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @app.exception_handler(LoginRequired)
    async def to_login(request: Request, error: LoginRequired) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)

    @app.exception_handler(GatewayProblem)
    async def gateway_problem(request: Request, error: GatewayProblem) -> Response:
        return _error_page(request, error.status, f"{error.status} {error.code}", error.detail)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> Response:
        return _error_page(request, error.status_code, str(error.status_code), str(error.detail))

    return app


def _error_page(request: Request, status: int, title: str, detail: str) -> Response:
    """The error page, with the navigation when the user is logged in."""
    return page(
        request,
        current_session(request),
        "error.html",
        status_code=status,
        title=title,
        detail=detail,
    )
