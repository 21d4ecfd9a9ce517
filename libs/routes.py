"""Routes as data: how a tenant's mail leaves the platform.

A route is ``mx`` (direct delivery to the recipient domain's MX hosts), ``relay`` (a smarthost:
host, port, TLS, SMTP AUTH) or ``sandbox`` (the mailbox simulator). Every tenant has the
built-in ``simulator`` and ``default-relay`` (from the settings, no rows) and may add its own
(``/v1/routes``, ``sendarix route``), one of which may be its default. A route may name a
fallback route, which takes its mail when it cannot (the router resolves the chain; no cycles).

A relay's password is written here, encrypted (``libs.route_secrets``), and never read back
through the API: only the sender decrypts it. AUTH is refused without required TLS, so
credentials never cross the network in clear. A ``preset`` (``libs.relay_presets``) fills in a
big provider's settings.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from libs.cache import TtlCache
from libs.database import Connection
from libs.ip_pools import (
    IpPool,
    Name,
    RoutingRefused,
    built_in_pools,
    built_in_refusal,
    lock_routing,
    refuse_if_used,
    server_host,
    tenant_pools,
    validated,
)
from libs.relay_presets import PRESETS
from libs.retry_windows import read_windows
from libs.route_secrets import delete_secret, store_secret
from libs.settings import Settings
from libs.webhook_targets import TargetGuard, TargetRefused
from schemas.common import Lane
from schemas.pipeline import AuthMethod, Pool, RouteKind, RouteName, TlsMode

ROUTES_TTL_SECONDS = 10.0
"""How long the router keeps a tenant's routes, pools and windows: a change applies to the
messages routed that long after it at most."""
MAX_TENANTS = 100_000
MAX_ROUTES_PER_TENANT = 100
SMTP_PORT = 25
"""A relay's port when its route names none."""
REQUIRED_TLS = frozenset({TlsMode.STARTTLS, TlsMode.IMPLICIT})
"""The TLS modes under which credentials may be sent: a server without TLS is not sent to."""


class RouteFields(BaseModel):
    """A route as its tenant writes it (``POST /v1/routes``). A ``preset`` fills in the host,
    port, TLS and AUTH method the request leaves out."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: RouteKind = RouteKind.RELAY
    host: str = ""
    """relay: the server; mx and sandbox have none (MX hosts, the simulator)."""
    port: int | None = Field(None, ge=1, le=65535)
    """None: 25 for a relay, the MX port for mx (``settings.mx_port``), the simulator's."""
    tls: TlsMode | None = None
    """None: opportunistic for mx, none otherwise."""
    auth: AuthMethod | None = None
    username: str | None = Field(None, min_length=1, max_length=320)
    password: SecretStr | None = Field(None, min_length=1, max_length=1024, exclude=True)
    """Write-only: stored encrypted, never returned."""
    preset: str | None = None
    fallback: str | None = None
    """The route that takes this one's mail when it cannot (a route of the tenant or a built-in
    one)."""
    pool: str | None = None
    """The IP pool its mail goes out from unless a rule or the lane says otherwise."""
    is_default: bool = False
    """The tenant's mail goes through it unless a rule says otherwise (one route at most)."""
    timeout_seconds: float = Field(30.0, ge=1, le=600)

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(name := data.get("preset"), str):
            return data
        preset = PRESETS.get(name)
        if preset is None:
            return data  # refused by the field's own check
        filled = {"kind": "relay", "host": preset.host, "port": preset.port}
        filled |= {"tls": preset.tls.value, "auth": preset.auth.value}
        return filled | {k: v for k, v in data.items() if v is not None}

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, value: str | None) -> str | None:
        if value is not None and value not in PRESETS:
            raise ValueError(f"presets: {', '.join(PRESETS)}")
        return value

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        return server_host(value) if value.strip() else ""

    @property
    def tls_mode(self) -> TlsMode:
        """The TLS the sender uses to this route."""
        if self.tls is not None:
            return self.tls
        return TlsMode.OPPORTUNISTIC if self.kind is RouteKind.MX else TlsMode.NONE


class NewRoute(RouteFields):
    """A route to add, with its name."""

    name: Name


def shape_refusal(fields: RouteFields) -> RoutingRefused | None:
    """Why a route could never work as written (None: it could)."""
    if fields.kind is RouteKind.RELAY and not fields.host:
        return RoutingRefused("host_required", "a relay route needs a host", "/host")
    if fields.kind is not RouteKind.RELAY and fields.host:
        where = "the MX hosts" if fields.kind is RouteKind.MX else "the simulator"
        return RoutingRefused(
            "host_not_allowed", f"an {fields.kind} route goes to {where}", "/host"
        )
    if fields.kind is RouteKind.SANDBOX and fields.port is not None:
        return RoutingRefused("port_not_allowed", "a sandbox route uses the simulator's", "/port")
    if fields.auth is not None and fields.kind is not RouteKind.RELAY:
        return RoutingRefused("auth_not_allowed", "only a relay logs in", "/auth")
    if fields.auth is not None and fields.tls_mode not in REQUIRED_TLS:
        return RoutingRefused(
            "auth_requires_tls",
            "AUTH needs tls starttls or implicit: credentials never go in clear",
            "/tls",
        )
    if fields.auth is not None and fields.username is None:
        return RoutingRefused("username_required", "AUTH needs a username", "/username")
    if fields.auth is None and (fields.username is not None or fields.password is not None):
        field = "/username" if fields.username is not None else "/password"
        return RoutingRefused("auth_required", "credentials are for a route with auth", field)
    return None


class TenantRoute(BaseModel):
    """A route a tenant's mail can take: one of its own, or a built-in one. Its password is
    never part of it (``has_password`` says whether it has one)."""

    model_config = ConfigDict(frozen=True)

    name: str
    kind: RouteKind
    host: str
    port: int | None
    tls: TlsMode
    auth: AuthMethod | None = None
    username: str | None = None
    has_password: bool = False
    preset: str | None = None
    fallback: str | None = None
    pool: str | None = None
    is_default: bool = False
    timeout_seconds: float
    built_in: bool = False
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def server(self, settings: Settings) -> tuple[str, int]:
        """Where the sender connects: the relay; the simulator; for mx no host (the recipient
        domain's MX hosts) on the MX port unless the route names one."""
        if self.kind is RouteKind.MX:
            return "", self.port or settings.mx_port
        if self.kind is RouteKind.SANDBOX:
            return settings.simulator_host, settings.simulator_port
        return self.host, self.port or SMTP_PORT

    def fields(self) -> dict[str, Any]:
        """What its tenant wrote, to patch and check again whole."""
        written = self.model_dump(include=set(RouteFields.model_fields), mode="json")
        written["tls"] = self.tls.value
        return written


def built_in_routes(settings: Settings) -> dict[str, TenantRoute]:
    """The routes every tenant has, from the settings."""
    common = {"tls": TlsMode.NONE, "timeout_seconds": settings.smtp_timeout_seconds}
    return {
        RouteName.SIMULATOR.value: TenantRoute(
            name=RouteName.SIMULATOR.value,
            kind=RouteKind.SANDBOX,
            host=settings.simulator_host,
            port=settings.simulator_port,
            built_in=True,
            **common,
        ),
        RouteName.DEFAULT_RELAY.value: TenantRoute(
            name=RouteName.DEFAULT_RELAY.value,
            kind=RouteKind.RELAY,
            host=settings.relay_host,
            port=settings.relay_port,
            built_in=True,
            **common,
        ),
    }


BUILT_IN_NAMES = frozenset(RouteName)
RESERVED_NAMES = BUILT_IN_NAMES | {"presets"}
"""Names a tenant's route may not take (``/v1/routes/presets`` lists the presets)."""


def fallback_chain(start: str, routes: Mapping[str, TenantRoute | RouteFields]) -> list[str]:
    """The names ``start``'s fallbacks lead through, in order, stopping before a cycle would
    close or at a name ``routes`` lacks."""
    chain: list[str] = []
    seen = {start}
    current = routes.get(start)
    while current is not None and (name := current.fallback) is not None and name not in seen:
        if name not in routes:
            break
        chain.append(name)
        seen.add(name)
        current = routes[name]
    return chain


def reference_refusal(
    name: str,
    fields: RouteFields,
    routes: Mapping[str, TenantRoute | RouteFields],
    pools: Mapping[str, IpPool],
) -> RoutingRefused | None:
    """Why ``fields`` may not be stored as ``name`` among the tenant's ``routes`` (built-ins
    included) and ``pools``: it could not work (``shape_refusal``), a built-in's name, a
    fallback or pool it lacks, a fallback that leads back to the route, the security pool."""
    if (refused := shape_refusal(fields)) is not None:
        return refused
    if name in RESERVED_NAMES:
        return RoutingRefused("reserved_name", f"{name!r} is reserved for the platform", "/name")
    if (fallback := fields.fallback) is not None:
        if fallback not in routes or fallback == name:
            detail = f"no route {fallback!r} to fall back to"
            if fallback == name:
                detail = "a route cannot be its own fallback"
            code = "fallback_cycle" if fallback == name else "unknown_route"
            return RoutingRefused(code, detail, "/fallback")
        if name in [fallback, *fallback_chain(fallback, {**routes, name: fields})]:
            return RoutingRefused(
                "fallback_cycle", f"{fallback!r}'s fallbacks lead back to {name!r}", "/fallback"
            )
    if fields.pool is not None:
        if fields.pool not in pools:
            return RoutingRefused("unknown_pool", f"no pool {fields.pool!r}", "/pool")
        if fields.pool == Pool.SECURITY:
            return RoutingRefused(
                "pool_not_allowed", "the security pool carries critical and high mail only", "/pool"
            )
    return None


COLUMNS = (
    "r.name, r.kind, r.host, r.port, r.tls, r.auth, r.username, r.preset, r.fallback, r.pool,"
    " r.is_default, r.timeout_seconds, r.created_at, r.updated_at,"
    " s.route IS NOT NULL AS has_password"
)
ROUTE_USERS = (
    "SELECT 'route ' || name AS user FROM routes WHERE tenant_id = $1 AND fallback = $2"
    " UNION ALL SELECT 'rule ' || id::text FROM rules WHERE tenant_id::text = $1 AND route = $2"
)
FROM = "FROM routes r LEFT JOIN route_secrets s ON s.tenant_id = r.tenant_id AND s.route = r.name"


def _route(row: asyncpg.Record) -> TenantRoute:
    return TenantRoute.model_validate(dict(row))


async def tenant_routes(executor: asyncpg.Pool | Connection, tenant_id: str) -> list[TenantRoute]:
    """The tenant's own routes, by name."""
    rows = await executor.fetch(
        f"SELECT {COLUMNS} {FROM} WHERE r.tenant_id = $1 ORDER BY r.name", tenant_id
    )
    return [_route(row) for row in rows]


async def list_routes(pool: asyncpg.Pool, settings: Settings, tenant_id: str) -> list[TenantRoute]:
    """The routes the tenant's mail can take: the built-in ones, then its own."""
    return [*built_in_routes(settings).values(), *await tenant_routes(pool, tenant_id)]


async def _one(
    executor: asyncpg.Pool | Connection, tenant_id: str, name: str
) -> TenantRoute | None:
    row = await executor.fetchrow(
        f"SELECT {COLUMNS} {FROM} WHERE r.tenant_id = $1 AND r.name = $2", tenant_id, name
    )
    return _route(row) if row else None


async def get_route(
    pool: asyncpg.Pool, settings: Settings, tenant_id: str, name: str
) -> TenantRoute | None:
    """One route of the tenant, or a built-in one (None: no such route)."""
    return built_in_routes(settings).get(name) or await _one(pool, tenant_id, name)


async def _check_relay_host(settings: Settings, host: str, port: int) -> None:
    """A relay is a server of the tenant's provider, never one inside the platform's network
    (a private address, one of its own ports): the sender would connect there for them."""
    try:
        await TargetGuard(settings).check_host(host, port)
    except TargetRefused as refused:
        raise RoutingRefused("host_refused", refused.detail, "/host") from refused


async def _checked(
    connection: Connection, settings: Settings, tenant_id: str, name: str, fields: RouteFields
) -> None:
    routes = built_in_routes(settings) | {
        r.name: r for r in await tenant_routes(connection, tenant_id) if r.name != name
    }
    pools = built_in_pools(settings) | {
        p.name: p for p in await tenant_pools(connection, tenant_id)
    }
    if (refused := reference_refusal(name, fields, routes, pools)) is not None:
        raise refused
    if fields.kind is RouteKind.RELAY and fields.host:
        await _check_relay_host(settings, fields.host, fields.port or SMTP_PORT)
    if name not in routes and len(routes) - len(BUILT_IN_NAMES) >= MAX_ROUTES_PER_TENANT:
        detail = f"a tenant may have {MAX_ROUTES_PER_TENANT} routes"
        raise RoutingRefused("route_limit_reached", detail, status=409)


def _values(fields: RouteFields) -> list[Any]:
    return [
        fields.kind.value,
        fields.host,
        fields.port,
        fields.tls_mode.value,
        fields.auth.value if fields.auth else None,
        fields.username,
        fields.preset,
        fields.fallback,
        fields.pool,
        fields.is_default,
        fields.timeout_seconds,
    ]


async def _keep_secret(
    connection: Connection, settings: Settings, tenant_id: str, name: str, fields: RouteFields
) -> None:
    """Store a new password; forget the old one when the route no longer logs in."""
    if fields.password is not None:
        await store_secret(
            connection, settings, tenant_id, name, fields.password.get_secret_value()
        )
    elif fields.auth is None:
        await delete_secret(connection, tenant_id, name)


async def _only_default(
    connection: Connection, tenant_id: str, name: str, fields: RouteFields
) -> None:
    if fields.is_default:
        await connection.execute(
            "UPDATE routes SET is_default = false, updated_at = now()"
            " WHERE tenant_id = $1 AND is_default AND name <> $2",
            tenant_id,
            name,
        )


async def create_route(
    pool: asyncpg.Pool, settings: Settings, tenant_id: str, fields: NewRoute
) -> TenantRoute:
    """Store a new route (and its password, encrypted, in the same transaction); a default
    route takes over from the tenant's previous one. ``RoutingRefused`` when it names what the
    tenant lacks, closes a fallback cycle or takes a name that is taken."""
    name = fields.name
    async with pool.acquire() as connection, connection.transaction():
        await lock_routing(connection, tenant_id)
        await _checked(connection, settings, tenant_id, name, fields)
        await _only_default(connection, tenant_id, name, fields)
        inserted = await connection.fetchval(
            "INSERT INTO routes (tenant_id, name, kind, host, port, tls, auth, username, preset,"
            " fallback, pool, is_default, timeout_seconds)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
            " ON CONFLICT DO NOTHING RETURNING true",
            tenant_id,
            name,
            *_values(fields),
        )
        if not inserted:
            raise RoutingRefused("route_exists", f"the tenant has a route {name!r}", "/name", 409)
        await _keep_secret(connection, settings, tenant_id, name, fields)
        created = await _one(connection, tenant_id, name)
    assert created is not None, "inserted in this transaction"
    return created


@asynccontextmanager
async def _locked(
    pool: asyncpg.Pool, tenant_id: str, name: str
) -> AsyncIterator[tuple[Connection, TenantRoute | None]]:
    """A transaction holding the tenant's routing lock, and the route ``name`` as it stands
    (None: the tenant has none); a built-in route is refused."""
    if (refused := built_in_refusal(name, BUILT_IN_NAMES)) is not None:
        raise refused
    async with pool.acquire() as connection, connection.transaction():
        await lock_routing(connection, tenant_id)
        yield connection, await _one(connection, tenant_id, name)


async def update_route(
    pool: asyncpg.Pool, settings: Settings, tenant_id: str, name: str, changes: Mapping[str, Any]
) -> TenantRoute | None:
    """Change the fields in ``changes`` (the route is checked again whole; a new ``preset``
    fills what the patch leaves out); None when the tenant has no such route."""
    async with _locked(pool, tenant_id, name) as (connection, current):
        if current is None:
            return None
        written = current.fields()
        if changes.get("preset"):  # another provider: its settings replace the old ones
            written = {k: v for k, v in written.items() if k not in ("host", "port", "tls", "auth")}
        fields = validated(RouteFields, written | dict(changes))
        await _checked(connection, settings, tenant_id, name, fields)
        await _only_default(connection, tenant_id, name, fields)
        await connection.execute(
            "UPDATE routes SET kind = $3, host = $4, port = $5, tls = $6, auth = $7,"
            " username = $8, preset = $9, fallback = $10, pool = $11, is_default = $12,"
            " timeout_seconds = $13, updated_at = now() WHERE tenant_id = $1 AND name = $2",
            tenant_id,
            name,
            *_values(fields),
        )
        await _keep_secret(connection, settings, tenant_id, name, fields)
        return await _one(connection, tenant_id, name)


async def delete_route(pool: asyncpg.Pool, tenant_id: str, name: str) -> TenantRoute | None:
    """Remove a route (and its password) that no other route falls back to and no rule forces
    (409 ``route_in_use`` otherwise); None when the tenant has no such route."""
    async with _locked(pool, tenant_id, name) as (connection, current):
        if current is None:
            return None
        await refuse_if_used(connection, ROUTE_USERS, tenant_id, name, "route_in_use")
        await connection.execute(
            "DELETE FROM routes WHERE tenant_id = $1 AND name = $2", tenant_id, name
        )
    return current


@dataclass(frozen=True)
class RoutingBook:
    """What the router reads for one tenant: its routes and pools (built-ins included) and its
    retry window of each lane."""

    routes: Mapping[str, TenantRoute]
    pools: Mapping[str, IpPool]
    windows: Mapping[Lane, timedelta]

    @property
    def default_route(self) -> TenantRoute | None:
        """The tenant's own default route, if it chose one."""
        return next((r for r in self.routes.values() if r.is_default), None)


async def routing_book(pool: asyncpg.Pool, settings: Settings, tenant_id: str) -> RoutingBook:
    """The tenant's routing book, read now."""
    async with pool.acquire() as connection:
        routes = await tenant_routes(connection, tenant_id)
        pools = await tenant_pools(connection, tenant_id)
        windows = await read_windows(connection, tenant_id)
    return RoutingBook(
        routes=built_in_routes(settings) | {r.name: r for r in routes},
        pools=built_in_pools(settings) | {p.name: p for p in pools},
        windows=windows,
    )


class RouteCatalogue:
    """Each tenant's routing book, kept ``ROUTES_TTL_SECONDS``: the router asks the database
    nothing per message."""

    def __init__(
        self, pool: asyncpg.Pool, settings: Settings, ttl: float = ROUTES_TTL_SECONDS
    ) -> None:
        self._pool = pool
        self._settings = settings
        self._books: TtlCache[str, RoutingBook] = TtlCache(ttl, MAX_TENANTS)

    async def book(self, tenant_id: str) -> RoutingBook:
        """The tenant's routes, pools and retry windows."""
        found = await self._books.get(
            tenant_id, lambda: routing_book(self._pool, self._settings, tenant_id)
        )
        assert found is not None, "a tenant without rows still has the built-ins"
        return found

    def discard(self, tenant_id: str) -> None:
        """Forget the tenant's book (this process just changed it)."""
        self._books.discard(tenant_id)
