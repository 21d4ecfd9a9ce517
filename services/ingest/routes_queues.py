"""``/v1/queues``: what waits where, live; ``/v1/queue-controls`` and ``/v1/queue-actions``: pause,
drain, retry now and cancel.

Reading needs ``read``, acting ``admin``. A tenant's key sees and acts on its own tenant's mail:
its scheduled and waiting counts, the sites its mail waits for, its controls and the ones on
every tenant, its queue events and the platform's (site changes). Stage depths are platform
figures, shown to everyone. An admin key of the operator tenant (``settings.operator_tenant``)
is an operator: it sees every tenant and may leave ``tenant_id`` out (every tenant) or name any.

Problems: ``operator_only`` (403) for a tenant key naming another tenant, or lifting a control
an operator set on it; ``drain_needs_route`` (422) for a drain without a route; ``empty_scope``
(422) for an operator's control or cancel that names nothing (the whole platform); 404
``not_found`` for a control the caller cannot see.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from libs.queue_controls import (
    MAX_REASON_CHARS,
    CancelResult,
    ControlKind,
    QueueControl,
    Scope,
    ScopeRefused,
    WaitingScope,
    add_control,
    cancel_waiting,
    remove_control,
    retry_now,
    scoped_for,
)
from libs.queue_views import (
    MAX_EVENTS,
    QueueEvent,
    QueueOverview,
    ScheduledGroup,
    SiteView,
    grouping,
    read_controls_of,
    read_events,
    read_overview,
    read_scheduled,
    read_sites,
)
from libs.tenants import Caller
from services.ingest.accept import SERVICE, Ingest
from services.ingest.http_deps import (
    AdminCaller,
    IngestDep,
    ReadCaller,
    parsed_body,
    problems,
    seen_as,
)
from services.ingest.problems import ProblemError
from services.ingest.routes_keys import json_body_doc
from services.ingest.search import bad_parameter, parse_limit, parse_moment
from services.ingest.validate import Violation

router = APIRouter(tags=["queues"])

Filter = Annotated[str | None, Query()]
DEFAULT_EVENTS = 100


def _refused(error: ScopeRefused) -> ProblemError:
    return ProblemError(error.code, error.detail)


class ControlList(BaseModel):
    controls: list[QueueControl]


class SiteList(BaseModel):
    sites: list[SiteView]


class ScheduledList(BaseModel):
    scheduled: list[ScheduledGroup]


class EventList(BaseModel):
    """Queue events, newest first."""

    events: list[QueueEvent]


class RetriedNow(BaseModel):
    """How many waiting attempts were made due now."""

    count: int


class ControlFields(Scope):
    """``POST /v1/queue-controls``: what to control and why (fields left out match any)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: ControlKind
    reason: str = Field("", max_length=MAX_REASON_CHARS)

    def scope(self) -> Scope:
        return Scope.model_validate(self.model_dump(include=set(Scope.model_fields)))


@router.get(
    "/v1/queues",
    response_model=QueueOverview,
    responses=problems(401, 403, 503),
    summary="Every stage's depth and oldest wait, the sites, scheduled retries and controls",
)
async def overview(ingest: IngestDep, caller: ReadCaller) -> QueueOverview:
    """Per stage and lane the depth (consumer lag) and the age of the oldest waiting record
    (at most a second old; the retry stage from the schedule: attempts waiting, the first due,
    how long the most overdue one has been due), the destination sites, scheduled retries by
    lane and reason, and the active controls."""
    return await read_overview(ingest.pool, ingest.settings, seen_as(ingest, caller))


@router.get(
    "/v1/queues/sites",
    response_model=SiteList,
    responses=problems(401, 403),
    summary="Destination sites: shaping state, in flight, waiting, last replies",
)
async def sites(ingest: IngestDep, caller: ReadCaller) -> SiteList:
    """Per site the shaping state per lane, deliveries in flight, attempts waiting by reason,
    limits, rate and last replies (a tenant: the sites its mail waits for)."""
    return SiteList(sites=await read_sites(ingest.pool, seen_as(ingest, caller)))


@router.get(
    "/v1/queues/scheduled",
    response_model=ScheduledList,
    responses=problems(401, 403, 422),
    summary="Scheduled retries by tenant, domain, lane, site or route",
)
async def scheduled(
    ingest: IngestDep, caller: ReadCaller, group_by: Filter = None
) -> ScheduledList:
    """`group_by`: comma-separated `tenant`, `domain`, `lane`, `site`, `route` (default
    `tenant,domain,lane`); always also by the reason they wait. Each group has its count and
    the next due time, the biggest first."""
    try:
        dimensions = grouping(group_by)
    except ValueError as error:
        raise ProblemError.of([bad_parameter("group_by", str(error))]) from None
    groups = await read_scheduled(ingest.pool, seen_as(ingest, caller), dimensions)
    return ScheduledList(scheduled=groups)


@router.get(
    "/v1/queues/events",
    response_model=EventList,
    responses=problems(401, 403, 422),
    summary="Pauses, drains, retries, cancels (with who) and site shaping changes",
)
async def events(
    ingest: IngestDep, caller: ReadCaller, since: Filter = None, limit: Filter = None
) -> EventList:
    """Events at or after `since` (RFC 3339), newest first; `limit` 1 to 1000 (default 100)."""
    moment = parse_moment("since", since) if since is not None else None
    count = parse_limit(limit, MAX_EVENTS) if limit is not None else DEFAULT_EVENTS
    violations = [v for v in (moment, count) if isinstance(v, Violation)]
    if violations:
        raise ProblemError.of(violations)
    assert not isinstance(moment, Violation) and isinstance(count, int)
    found = await read_events(ingest.pool, seen_as(ingest, caller), moment, count)
    return EventList(events=found)


@router.get(
    "/v1/queue-controls",
    response_model=ControlList,
    responses=problems(401, 403),
    summary="Active pauses and drains",
)
async def list_controls(ingest: IngestDep, caller: ReadCaller) -> ControlList:
    return ControlList(controls=await read_controls_of(ingest.pool, seen_as(ingest, caller)))


@router.post(
    "/v1/queue-controls",
    status_code=201,
    response_model=QueueControl,
    responses=problems(400, 401, 403, 415, 422),
    summary="Pause or drain the mail a scope covers",
    openapi_extra=json_body_doc(ControlFields),
)
async def create_control(request: Request, ingest: IngestDep, caller: AdminCaller) -> QueueControl:
    """`pause` holds the mail it covers (nothing is attempted) until the control is deleted;
    `drain` sends a route's mail through the route's fallback. A tenant key's control is on its
    own tenant."""
    body = await parsed_body(request, ControlFields)
    try:
        scope = scoped_for(body.scope(), seen_as(ingest, caller))
        return await add_control(ingest.pool, body.kind, scope, body.reason, caller.key.id)
    except ScopeRefused as error:
        raise _refused(error) from None


@router.delete(
    "/v1/queue-controls/{control_id}",
    response_model=QueueControl,
    responses=problems(401, 403, 404),
    summary="Lift a pause (resume) or a drain (undrain)",
)
async def delete_control(control_id: str, ingest: IngestDep, caller: AdminCaller) -> QueueControl:
    try:
        lifted = await remove_control(
            ingest.pool, control_id, caller.key.id, seen_as(ingest, caller)
        )
    except ScopeRefused as error:
        raise _refused(error) from None
    if lifted is None:
        raise ProblemError("not_found", f"no queue control {control_id!r}")
    return lifted


async def _action_scope(request: Request, ingest: Ingest, caller: Caller) -> WaitingScope:
    body = await parsed_body(request, WaitingScope)
    try:
        return scoped_for(body, seen_as(ingest, caller))
    except ScopeRefused as error:
        raise _refused(error) from None


@router.post(
    "/v1/queue-actions/retry-now",
    response_model=RetriedNow,
    responses=problems(400, 401, 403, 415, 422),
    summary="Make waiting retries due now",
    openapi_extra=json_body_doc(WaitingScope),
)
async def retry_waiting_now(request: Request, ingest: IngestDep, caller: AdminCaller) -> RetriedNow:
    """The attempts waiting in the retry schedule that the scope covers (`tenant_id`, `lane`,
    `route`, `site`, `domain`, `message_id`) are due now; those a pause covers stay held."""
    scope = await _action_scope(request, ingest, caller)
    return RetriedNow(count=await retry_now(ingest.pool, scope, caller.key.id))


@router.post(
    "/v1/queue-actions/cancel",
    response_model=CancelResult,
    responses=problems(400, 401, 403, 415, 422, 503),
    summary="Cancel the messages waiting for a retry",
    openapi_extra=json_body_doc(WaitingScope),
)
async def cancel_waiting_mail(
    request: Request, ingest: IngestDep, caller: AdminCaller
) -> CancelResult:
    """Cancel, as `DELETE /v1/messages/{id}` does, up to 10,000 messages waiting in the retry
    schedule that the scope covers; `more` says whether to call again."""
    scope = await _action_scope(request, ingest, caller)
    prefix = ingest.settings.topic_prefix
    try:
        return await cancel_waiting(
            ingest.pool, ingest.broker, prefix, scope, caller.key.id, SERVICE
        )
    except ScopeRefused as error:
        raise _refused(error) from None
