"""``/v1/routes``, ``/v1/pools`` and ``/v1/retry-windows``: how a tenant's mail leaves
(``libs.routes``, ``libs.ip_pools``, ``libs.retry_windows``).

Always the caller's tenant's: another tenant's route or pool is not found (404). Reading needs
the ``read`` scope, writing ``admin``. The built-in routes and pools are listed with
``built_in: true`` and cannot be changed (409 ``built_in``). A relay's password is write-only:
a route says ``has_password``, never the password. The router applies a change within
``libs.routes.ROUTES_TTL_SECONDS``.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from libs import ip_pools, retry_windows, routes
from libs.ip_pools import IpPool, NewPool, PoolAddress, RoutingRefused
from libs.relay_presets import PRESETS, Preset
from libs.retry_windows import RetryWindowFields, RetryWindows
from libs.routes import NewRoute, TenantRoute
from schemas.pipeline import AuthMethod, RouteKind, TlsMode
from services.ingest.http_deps import AdminCaller, IngestDep, ReadCaller, parsed_body, problems
from services.ingest.problems import ProblemError
from services.ingest.routes_keys import json_body_doc
from services.ingest.validate import Violation

router = APIRouter(tags=["routes"])
T = TypeVar("T")


class RoutePatch(BaseModel):
    """``PATCH /v1/routes/{name}``: only the fields given change (null clears one); the route
    is checked again whole. A new ``preset`` replaces the host, port, TLS and AUTH method."""

    model_config = ConfigDict(extra="forbid")

    kind: RouteKind | None = None
    host: str | None = None
    port: int | None = None
    tls: TlsMode | None = None
    auth: AuthMethod | None = None
    username: str | None = None
    password: SecretStr | None = None
    preset: str | None = None
    fallback: str | None = None
    pool: str | None = None
    is_default: bool | None = None
    timeout_seconds: float | None = None

    def changes(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.model_fields_set}


class PoolPatch(BaseModel):
    """``PATCH /v1/pools/{name}``: only the fields given change."""

    model_config = ConfigDict(extra="forbid")

    addresses: list[PoolAddress] | None = None
    return_path_domain: str | None = None

    def changes(self) -> dict[str, Any]:
        return self.model_dump(include=self.model_fields_set, mode="json")


class RouteList(BaseModel):
    """The routes a tenant's mail can take: the built-in ones, then its own."""

    routes: list[TenantRoute]


class PresetList(BaseModel):
    """The relay presets: a route with ``"preset": name`` gets the provider's settings."""

    presets: list[Preset] = Field(default_factory=lambda: list(PRESETS.values()))


class PoolList(BaseModel):
    """The IP pools a tenant's mail can be sent from: the built-in ones, then its own."""

    pools: list[IpPool]


async def _answer(what: str, change: Awaitable[T | None]) -> T:
    """What a look-up or change returned: 404 when the tenant has no such thing, the problem
    when it was refused."""
    try:
        result = await change
    except RoutingRefused as error:
        violations = [Violation(error.code, error.field, error.detail)] if error.field else []
        raise ProblemError(error.code, error.detail, violations, status=error.status) from error
    if result is None:
        raise ProblemError("not_found", f"no {what}")
    return result


@router.get(
    "/v1/routes", response_model=RouteList, responses=problems(401, 403), summary="List routes"
)
async def list_routes(ingest: IngestDep, caller: ReadCaller) -> RouteList:
    found = await routes.list_routes(ingest.pool, ingest.settings, caller.tenant.id)
    return RouteList(routes=found)


@router.get("/v1/routes/presets", response_model=PresetList, summary="The relay presets")
async def list_presets(caller: ReadCaller) -> PresetList:
    """Gmail, Google Workspace, Outlook.com, Yahoo and Office 365: server, port, TLS, AUTH
    method and each provider's documented sending limits."""
    return PresetList()


@router.post(
    "/v1/routes",
    status_code=201,
    response_model=TenantRoute,
    responses=problems(400, 401, 403, 409, 415, 422),
    summary="Add a route",
    openapi_extra=json_body_doc(NewRoute),
)
async def create_route(request: Request, ingest: IngestDep, caller: AdminCaller) -> TenantRoute:
    body = await parsed_body(request, NewRoute)
    change = routes.create_route(ingest.pool, ingest.settings, caller.tenant.id, body)
    return await _answer("route", change)


@router.get(
    "/v1/routes/{name}",
    response_model=TenantRoute,
    responses=problems(401, 403, 404),
    summary="A route",
)
async def get_route(name: str, ingest: IngestDep, caller: ReadCaller) -> TenantRoute:
    found = routes.get_route(ingest.pool, ingest.settings, caller.tenant.id, name)
    return await _answer(f"route {name!r}", found)


@router.patch(
    "/v1/routes/{name}",
    response_model=TenantRoute,
    responses=problems(400, 401, 403, 404, 409, 415, 422),
    summary="Change a route",
    openapi_extra=json_body_doc(RoutePatch),
)
async def patch_route(
    name: str, request: Request, ingest: IngestDep, caller: AdminCaller
) -> TenantRoute:
    body = await parsed_body(request, RoutePatch)
    change = routes.update_route(
        ingest.pool, ingest.settings, caller.tenant.id, name, body.changes()
    )
    return await _answer(f"route {name!r}", change)


@router.delete(
    "/v1/routes/{name}",
    response_model=TenantRoute,
    responses=problems(401, 403, 404, 409),
    summary="Remove a route",
)
async def delete_route(name: str, ingest: IngestDep, caller: AdminCaller) -> TenantRoute:
    """Refused (409 ``route_in_use``) while another route falls back to it or a rule forces
    it."""
    return await _answer(
        f"route {name!r}", routes.delete_route(ingest.pool, caller.tenant.id, name)
    )


@router.get(
    "/v1/pools", response_model=PoolList, responses=problems(401, 403), summary="List pools"
)
async def list_pools(ingest: IngestDep, caller: ReadCaller) -> PoolList:
    found = await ip_pools.list_pools(ingest.pool, ingest.settings, caller.tenant.id)
    return PoolList(pools=found)


@router.post(
    "/v1/pools",
    status_code=201,
    response_model=IpPool,
    responses=problems(400, 401, 403, 409, 415, 422),
    summary="Add an IP pool",
    openapi_extra=json_body_doc(NewPool),
)
async def create_pool(request: Request, ingest: IngestDep, caller: AdminCaller) -> IpPool:
    body = await parsed_body(request, NewPool)
    return await _answer("pool", ip_pools.create_pool(ingest.pool, caller.tenant.id, body))


@router.get(
    "/v1/pools/{name}", response_model=IpPool, responses=problems(401, 403, 404), summary="A pool"
)
async def get_pool(name: str, ingest: IngestDep, caller: ReadCaller) -> IpPool:
    found = ip_pools.get_pool(ingest.pool, ingest.settings, caller.tenant.id, name)
    return await _answer(f"pool {name!r}", found)


@router.patch(
    "/v1/pools/{name}",
    response_model=IpPool,
    responses=problems(400, 401, 403, 404, 409, 415, 422),
    summary="Change an IP pool",
    openapi_extra=json_body_doc(PoolPatch),
)
async def patch_pool(name: str, request: Request, ingest: IngestDep, caller: AdminCaller) -> IpPool:
    body = await parsed_body(request, PoolPatch)
    change = ip_pools.update_pool(ingest.pool, caller.tenant.id, name, body.changes())
    return await _answer(f"pool {name!r}", change)


@router.delete(
    "/v1/pools/{name}",
    response_model=IpPool,
    responses=problems(401, 403, 404, 409),
    summary="Remove an IP pool",
)
async def delete_pool(name: str, ingest: IngestDep, caller: AdminCaller) -> IpPool:
    """Refused (409 ``pool_in_use``) while a route or a rule names it."""
    return await _answer(
        f"pool {name!r}", ip_pools.delete_pool(ingest.pool, caller.tenant.id, name)
    )


@router.get(
    "/v1/retry-windows",
    response_model=RetryWindows,
    responses=problems(401, 403),
    summary="The retry window of each lane",
)
async def get_retry_windows(ingest: IngestDep, caller: ReadCaller) -> RetryWindows:
    """Seconds after sending began that a message of each lane is still retried."""
    return RetryWindows.of(await retry_windows.read_windows(ingest.pool, caller.tenant.id))


@router.put(
    "/v1/retry-windows",
    response_model=RetryWindows,
    responses=problems(400, 401, 403, 415, 422),
    summary="Set the retry windows",
    openapi_extra=json_body_doc(RetryWindowFields),
)
async def put_retry_windows(
    request: Request, ingest: IngestDep, caller: AdminCaller
) -> RetryWindows:
    """``{"critical": 900, ...}``: a lane left out goes back to the platform's default."""
    body = await parsed_body(request, RetryWindowFields)
    windows = await retry_windows.set_windows(ingest.pool, caller.tenant.id, body)
    return RetryWindows.of(windows)
