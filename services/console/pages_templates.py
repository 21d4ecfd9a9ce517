"""``/templates``: a tenant's templates, a template's versions, and a preview of a version with
sample data.

A preview is a read (``POST /v1/templates/{alias}/render`` needs only the ``read`` scope and
changes nothing), so its form is a GET and its inputs travel in the URL — bounded, so they fit
one. The rendered HTML is never put into the console's own page: an ``<iframe sandbox>`` loads
it from ``/templates/{alias}/preview.html``, served under a CSP that allows no script and no
remote load.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from html import escape
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from services.console.controls import said
from services.console.gateway import Gateway, GatewayDep, GatewayProblem
from services.console.rendering import SANDBOXED_MAIL, page
from services.console.session import SessionDep
from services.console.times import utc

router = APIRouter()

MAX_DATA_CHARS = 2000
"""Sample data travels in the preview's URL (twice: the page's and the frame's)."""
MAX_LOCALE_CHARS = 35


@dataclass(frozen=True)
class PreviewAsked:
    """What to render: a version (None: the API's default), a locale, sample data as typed."""

    version: int | None
    locale: str
    data: str

    @classmethod
    def of(cls, request: Request) -> PreviewAsked:
        version = request.query_params.get("version", "")
        return cls(
            version=int(version) if version.isdigit() and len(version) < 10 else None,
            locale=request.query_params.get("locale", "").strip()[:MAX_LOCALE_CHARS],
            data=request.query_params.get("data", ""),
        )

    def query(self) -> str:
        return urlencode({"version": self.version or "", "locale": self.locale, "data": self.data})


def _alias_path(alias: str) -> str:
    return f"/v1/templates/{quote(alias, safe='')}"


def sample_data(version: dict[str, Any] | None) -> str:
    """The version's declared examples as editable JSON (what the API previews by default)."""
    variables = version.get("variables", []) if version else []
    examples = {v["name"]: v["example"] for v in variables if v.get("example") is not None}
    return json.dumps(examples, indent=2, ensure_ascii=False)


def parsed_data(text: str) -> dict[str, Any] | str:
    """The sample data, or why it cannot be used."""
    if len(text) > MAX_DATA_CHARS:
        return f"Sample data may be {MAX_DATA_CHARS} characters at most."
    try:
        data = json.loads(text or "{}")
    except ValueError as error:
        return f"Sample data is not JSON: {error}"
    return data if isinstance(data, dict) else "Sample data must be a JSON object."


async def render(gw: Gateway, alias: str, asked: PreviewAsked) -> dict[str, Any] | str:
    """The API's preview of ``asked``, or why there is none (bad data, a refused render)."""
    data = parsed_data(asked.data)
    if isinstance(data, str):
        return data
    body = {"version": asked.version, "locale": asked.locale or None, "data": data}
    try:
        preview: dict[str, Any] = await gw.post(f"{_alias_path(alias)}/render", body)
    except GatewayProblem as refused:
        if refused.status not in (400, 422):
            raise
        return said(refused)
    return preview


@router.get("/templates")
async def templates_page(request: Request, session: SessionDep, gw: GatewayDep) -> Response:
    listed = await gw.get("/v1/templates")
    return page(
        request,
        session,
        "templates.html",
        active="templates",
        templates=listed["templates"],
        utc=utc,
    )


@router.get("/templates/{alias}")
async def template_page(
    alias: str, request: Request, session: SessionDep, gw: GatewayDep
) -> Response:
    head = await gw.get(_alias_path(alias))
    versions: list[dict[str, Any]] = (await gw.get(f"{_alias_path(alias)}/versions"))["versions"]
    asked = PreviewAsked.of(request)
    shown = asked.version or head["active_version"] or head["latest_version"]
    chosen = next((v for v in versions if v["version"] == shown), None)
    if "data" not in request.query_params:
        asked = PreviewAsked(asked.version, asked.locale, sample_data(chosen))
    preview = await render(gw, alias, asked) if versions else None
    return page(
        request,
        session,
        "template.html",
        active="templates",
        head=head,
        versions=versions,
        shown=shown,
        asked=asked,
        preview=preview if isinstance(preview, dict) else None,
        problem=preview if isinstance(preview, str) else "",
        frame_src=f"/templates/{quote(alias, safe='')}/preview.html?{asked.query()}",
        max_data=MAX_DATA_CHARS,
        utc=utc,
    )


@router.get("/templates/{alias}/preview.html")
async def preview_html(alias: str, request: Request, gw: GatewayDep) -> Response:
    """The rendered HTML part alone, for the page's sandboxed frame."""
    preview = await render(gw, alias, PreviewAsked.of(request))
    if isinstance(preview, str):
        return HTMLResponse(f"<p>{escape(preview)}</p>", status_code=422, headers=SANDBOXED_MAIL)
    return HTMLResponse(preview.get("html") or "<p>(no HTML part)</p>", headers=SANDBOXED_MAIL)
