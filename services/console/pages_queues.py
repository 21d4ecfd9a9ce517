"""``/queues``: what waits where, live, and the controls of the queue management API.

The tables refresh themselves (``data-live``: each has a fragment under ``/queues/live/``).
Pause, drain, resume, retry now and cancel are forms that call ``/v1/queue-controls`` and
``/v1/queue-actions`` with the user's key: the gateway decides what that key may act on (a
tenant its own mail, an operator any tenant's) and its refusals come back as a message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from schemas.common import Lane
from services.console.controls import back_to, said
from services.console.gateway import Gateway, GatewayDep, GatewayProblem
from services.console.rendering import fragment, page
from services.console.session import FormDep, Session, SessionDep

router = APIRouter()

LANES = tuple(lane.value for lane in Lane)
CONTROL_FIELDS = ("tenant_id", "lane", "route", "site")
WAITING_FIELDS = (*CONTROL_FIELDS, "domain", "message_id")
RECENT_EVENTS = 25
CONSOLE_REASON = "from the support console"


def duration(seconds: float) -> str:
    """A wait in ms under a second, else in s."""
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"


def describe(scope: Mapping[str, Any], session: Session) -> str:
    """A scope in words as ``session`` sees it, leaving out its own tenant ("lane normal")."""
    parts = [
        f"{'tenant' if name == 'tenant_id' else name} {value}"
        for name, value in scope.items()
        if value and not (name == "tenant_id" and value == session.tenant_id)
    ]
    if parts:
        return ", ".join(parts)
    return (
        "every tenant's mail"
        if session.operator and not scope.get("tenant_id")
        else "all your mail"
    )


def scope_of(form: Mapping[str, str], fields: tuple[str, ...], session: Session) -> dict[str, str]:
    """The scope fields a form filled in (a tenant only from an operator: a tenant's key acts
    on its own tenant whatever it names)."""
    chosen = {name: form.get(name, "").strip() for name in fields}
    if not session.operator:
        chosen.pop("tenant_id", None)
    return {name: value for name, value in chosen.items() if value}


async def acted(call: Awaitable[Any], done: Callable[[Any], str]) -> RedirectResponse:
    """Back to the page saying what ``call`` did, or why the gateway refused it."""
    try:
        answer = await call
    except GatewayProblem as problem:
        if problem.status >= 500:
            raise
        return back_to("/queues", problem=f"Refused ({said(problem)})")
    return back_to("/queues", done=done(answer))


def by_stage(depths: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """The API's stage depths as a table: stage (in pipeline order) -> lane -> depth."""
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for depth in depths:
        table.setdefault(depth["stage"], {})[depth["lane"]] = depth
    return table


async def _stages(gw: Gateway) -> dict[str, Any]:
    overview = await gw.get("/v1/queues")
    return {"stages": by_stage(overview["stages"]), "at": overview["at"]}


async def _sites(gw: Gateway) -> dict[str, Any]:
    return {"sites": (await gw.get("/v1/queues/sites"))["sites"]}


async def _scheduled(gw: Gateway) -> dict[str, Any]:
    return {"scheduled": (await gw.get("/v1/queues/scheduled"))["scheduled"]}


async def _events(gw: Gateway) -> dict[str, Any]:
    return {"events": (await gw.get("/v1/queues/events", {"limit": RECENT_EVENTS}))["events"]}


LIVE: dict[str, Callable[[Gateway], Awaitable[dict[str, Any]]]] = {
    "stages": _stages,
    "sites": _sites,
    "scheduled": _scheduled,
    "events": _events,
}
"""The live tables: their name (``/queues/live/<name>``, ``queues_<name>.html``) and data."""


def _helpers(session: Session) -> dict[str, Any]:
    return {
        "duration": duration,
        "lanes": LANES,
        "describe": lambda scope: describe(scope, session),
        "refreshed_at": datetime.now(UTC).isoformat(),
    }


@router.get("/queues")
async def queues(request: Request, session: SessionDep, gw: GatewayDep) -> HTMLResponse:
    *tables, controls = await asyncio.gather(
        *(read(gw) for read in LIVE.values()), gw.get("/v1/queue-controls")
    )
    context = {name: value for table in tables for name, value in table.items()}
    return page(
        request,
        session,
        "queues.html",
        active="queues",
        live=list(LIVE),
        controls=controls["controls"],
        problem=request.query_params.get("problem", ""),
        **context,
        **_helpers(session),
    )


@router.get("/queues/live/{table}")
async def live_table(
    request: Request, table: str, session: SessionDep, gw: GatewayDep
) -> HTMLResponse:
    read = LIVE.get(table)
    if read is None:
        return HTMLResponse("no such table", status_code=404)
    return fragment(request, f"queues_{table}.html", **await read(gw), **_helpers(session))


@router.post("/queues/controls")
async def add_control(session: SessionDep, gw: GatewayDep, form: FormDep) -> RedirectResponse:
    kind = "drain" if form.get("kind") == "drain" else "pause"
    body = {
        "kind": kind,
        "reason": form.get("reason", "").strip() or CONSOLE_REASON,
        **scope_of(form, CONTROL_FIELDS, session),
    }
    verb = "Paused" if kind == "pause" else "Drained"
    return await acted(
        gw.post("/v1/queue-controls", json=body),
        lambda control: f"{verb} {describe(control['scope'], session)}.",
    )


@router.post("/queues/controls/{control_id}/lift")
async def lift_control(
    control_id: str, session: SessionDep, gw: GatewayDep, form: FormDep
) -> RedirectResponse:
    return await acted(
        gw.delete(f"/v1/queue-controls/{quote(control_id, safe='')}"),
        lambda control: (
            f"{'Resumed' if control['kind'] == 'pause' else 'Undrained'}"
            f" {describe(control['scope'], session)}."
        ),
    )


@router.post("/queues/retry-now")
async def retry_now(session: SessionDep, gw: GatewayDep, form: FormDep) -> RedirectResponse:
    scope = scope_of(form, WAITING_FIELDS, session)
    return await acted(
        gw.post("/v1/queue-actions/retry-now", json=scope),
        lambda answer: (
            f"{answer['count']} waiting attempts of {describe(scope, session)} made due now."
        ),
    )


@router.post("/queues/cancel")
async def cancel(session: SessionDep, gw: GatewayDep, form: FormDep) -> RedirectResponse:
    if form.get("confirm") != "yes":
        return back_to(
            "/queues", problem="Nothing cancelled: tick the box that confirms the cancel first."
        )
    scope = scope_of(form, WAITING_FIELDS, session)
    return await acted(
        gw.post("/v1/queue-actions/cancel", json=scope),
        lambda answer: (
            f"Cancelled {answer['cancelled']} waiting messages of"
            f" {describe(scope, session)}; {answer['too_late']} were already being"
            f" sent.{' More are waiting: cancel again.' if answer['more'] else ''}"
        ),
    )
