"""``/v1/webhooks``: a tenant's webhook endpoints, their secrets, their attempt log, replays.

Always the caller's tenant's endpoints: another tenant's is not found (404). Reading needs the
``read`` scope, writing ``admin``. A URL the platform may not post to (not https, userinfo, a
host resolving to a private, loopback, link-local or metadata address, …) is refused (422
``webhook_target_refused``, ``libs.webhook_targets``). The secret is shown once: when the
endpoint is created and when it is rotated. The webhook service applies a change within
``services.webhook.app.ENDPOINTS_TTL_SECONDS``.
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from libs import webhook_endpoints as endpoints
from libs.webhook_endpoints import (
    DEFAULT_OVERLAP,
    MAX_OVERLAP,
    Endpoint,
    EndpointFields,
    EndpointPatch,
    EndpointRefused,
)
from libs.webhook_queue import MAX_REPLAY, Attempt, ReplayRefused, list_attempts, replay
from services.ingest.http_deps import (
    AdminCaller,
    IngestDep,
    ReadCaller,
    optional_body,
    parsed_body,
    problems,
)
from services.ingest.problems import ProblemError
from services.ingest.routes_keys import json_body_doc
from services.ingest.search import bad_parameter, parse_limit
from services.ingest.validate import Violation, pointer

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])
MAX_ATTEMPTS_PAGE = 500
DEFAULT_ATTEMPTS_PAGE = 50

T = TypeVar("T")


class EndpointList(BaseModel):
    webhooks: list[Endpoint]


class EndpointWithSecret(Endpoint):
    """An endpoint as created or rotated: with its signing secret, shown this once."""

    secret: str = Field(exclude=False)


class Rotation(BaseModel):
    """``POST /v1/webhooks/{id}/rotate-secret``: how long the old secret keeps signing too."""

    model_config = ConfigDict(extra="forbid")

    overlap_seconds: int = Field(
        int(DEFAULT_OVERLAP.total_seconds()), ge=0, le=int(MAX_OVERLAP.total_seconds())
    )


class Replay(BaseModel):
    """``POST /v1/webhooks/{id}/replay``: one event again, or those of a time range."""

    model_config = ConfigDict(extra="forbid")

    event_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    """Default: now."""

    @model_validator(mode="after")
    def _one_way(self) -> Replay:
        if (self.event_id is None) == (self.since is None):
            raise ValueError("give event_id, or since (and until)")
        return self


class Replayed(BaseModel):
    queued: int


class AttemptPage(BaseModel):
    """Posts to the endpoint, newest first; pass ``next_cursor`` as ``cursor`` for older ones."""

    attempts: list[Attempt]
    next_cursor: str | None


async def _found(endpoint_id: str, change: Awaitable[T | None]) -> T:
    """What a look-up or change of one endpoint returned: 404 when the tenant has none such."""
    try:
        result = await change
    except EndpointRefused as error:
        violations = (
            [Violation(error.code, pointer(error.field), error.detail)] if error.field else []
        )
        raise ProblemError(error.code, error.detail, violations) from error
    if result is None:
        raise ProblemError("not_found", f"no webhook endpoint {endpoint_id!r}")
    return result


def _with_secret(endpoint: Endpoint) -> EndpointWithSecret:
    return EndpointWithSecret.model_validate(
        endpoint.model_dump() | {"secret": endpoint.secret, "previous_secret": None}
    )


@router.get("", response_model=EndpointList, responses=problems(401, 403), summary="List endpoints")
async def list_webhooks(ingest: IngestDep, caller: ReadCaller) -> EndpointList:
    return EndpointList(webhooks=await endpoints.list_endpoints(ingest.pool, caller.tenant.id))


@router.post(
    "",
    status_code=201,
    response_model=EndpointWithSecret,
    responses=problems(400, 401, 403, 409, 415, 422),
    summary="Add an endpoint (its secret is shown this once)",
    openapi_extra=json_body_doc(EndpointFields),
)
async def create_webhook(
    request: Request, ingest: IngestDep, caller: AdminCaller
) -> EndpointWithSecret:
    body = await parsed_body(request, EndpointFields)
    change = endpoints.create_endpoint(ingest.pool, ingest.webhook_targets, caller.tenant.id, body)
    return _with_secret(await _found("", change))


@router.get("/{endpoint_id}", response_model=Endpoint, responses=problems(401, 403, 404))
async def get_webhook(endpoint_id: str, ingest: IngestDep, caller: ReadCaller) -> Endpoint:
    """An endpoint, and why it was disabled if it was."""
    change = endpoints.get_endpoint(ingest.pool, caller.tenant.id, endpoint_id)
    return await _found(endpoint_id, change)


@router.patch(
    "/{endpoint_id}",
    response_model=Endpoint,
    responses=problems(400, 401, 403, 404, 415, 422),
    summary="Change an endpoint (enabled: true re-enables a disabled one)",
    openapi_extra=json_body_doc(EndpointPatch),
)
async def patch_webhook(
    endpoint_id: str, request: Request, ingest: IngestDep, caller: AdminCaller
) -> Endpoint:
    body = await parsed_body(request, EndpointPatch)
    change = endpoints.update_endpoint(
        ingest.pool, ingest.webhook_targets, caller.tenant.id, endpoint_id, body
    )
    return await _found(endpoint_id, change)


@router.delete("/{endpoint_id}", response_model=Endpoint, responses=problems(401, 403, 404))
async def delete_webhook(endpoint_id: str, ingest: IngestDep, caller: AdminCaller) -> Endpoint:
    """The endpoint, its queue and its attempt log go."""
    change = endpoints.delete_endpoint(ingest.pool, caller.tenant.id, endpoint_id)
    return await _found(endpoint_id, change)


@router.post(
    "/{endpoint_id}/rotate-secret",
    response_model=EndpointWithSecret,
    responses=problems(400, 401, 403, 404, 415, 422),
    summary="Replace the signing secret; posts carry both signatures for the overlap (24 h)",
    openapi_extra=json_body_doc(Rotation, required=False),
)
async def rotate_webhook_secret(
    endpoint_id: str, request: Request, ingest: IngestDep, caller: AdminCaller
) -> EndpointWithSecret:
    body = await optional_body(request, Rotation)
    overlap = timedelta(seconds=body.overlap_seconds)
    change = endpoints.rotate_secret(ingest.pool, caller.tenant.id, endpoint_id, overlap)
    return _with_secret(await _found(endpoint_id, change))


@router.get(
    "/{endpoint_id}/attempts",
    response_model=AttemptPage,
    responses=problems(401, 403, 404, 422),
    summary="The endpoint's posts, newest first",
)
async def webhook_attempts(
    endpoint_id: str,
    ingest: IngestDep,
    caller: ReadCaller,
    cursor: str | None = None,
    limit: str | None = None,
) -> AttemptPage:
    """``limit``: 1 to 500 (default 50); ``cursor``: ``next_cursor`` as it is."""
    size = parse_limit(limit or str(DEFAULT_ATTEMPTS_PAGE), MAX_ATTEMPTS_PAGE)
    if isinstance(size, Violation):
        raise ProblemError.of([size])
    digits = cursor is not None and len(cursor) <= 18 and cursor.isascii() and cursor.isdigit()
    before = int(cursor) if cursor and digits else None
    if cursor and before is None:
        bad = bad_parameter("cursor", "not a cursor this API gave (pass next_cursor as it is)")
        raise ProblemError.of([bad])
    change = list_attempts(ingest.pool, caller.tenant.id, endpoint_id, before, size)
    found = await _found(endpoint_id, change)
    last = str(found[-1].id) if len(found) == size else None
    return AttemptPage(attempts=found, next_cursor=last)


@router.post(
    "/{endpoint_id}/replay",
    status_code=202,
    response_model=Replayed,
    responses=problems(400, 401, 403, 404, 415, 422),
    summary=f"Post events again: one, or a time range (at most {MAX_REPLAY})",
    openapi_extra=json_body_doc(Replay),
)
async def replay_webhook(
    endpoint_id: str, request: Request, ingest: IngestDep, caller: AdminCaller
) -> Replayed:
    body = await parsed_body(request, Replay)
    endpoint = await _found(
        endpoint_id, endpoints.get_endpoint(ingest.pool, caller.tenant.id, endpoint_id)
    )
    until = body.until or datetime.now(UTC) if body.since else None
    try:
        queued = await replay(ingest.pool, endpoint, body.event_id, body.since, until)
    except ReplayRefused as refused:
        raise ProblemError("replay_too_large", str(refused)) from None
    return Replayed(queued=queued)
