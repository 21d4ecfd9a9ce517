"""Pages and fragments from the jinja2 templates, with what every page needs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from services.console.session import Session

TEMPLATES = Path(__file__).parent / "templates"

SANDBOXED_MAIL = {
    "Content-Security-Policy": (
        "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline';"
        " frame-ancestors 'self'"
    ),
    "X-Frame-Options": "SAMEORIGIN",
    "Cache-Control": "no-store",
}
"""The headers of a mail's HTML (sent or previewed): framed by the console only, it runs
nothing and loads nothing — no script, no form, no remote image."""

environment = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def page(
    request: Request,
    session: Session | None,
    template: str,
    *,
    active: str = "",
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """A whole page: ``template`` (extending ``base.html``) with the session and navigation."""
    html = environment.get_template(template).render(
        request=request,
        session=session,
        csrf=session.csrf if session else "",
        active=active,
        settings=request.app.state.settings,
        done=request.query_params.get("done", ""),
        **context,
    )
    return HTMLResponse(html, status_code=status_code)


def fragment(request: Request, template: str, **context: Any) -> HTMLResponse:
    """A piece of a page without the layout, for the live refresh of ``console.js``."""
    html = environment.get_template(template).render(
        request=request, settings=request.app.state.settings, **context
    )
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})
