"""Routes as data: how a tenant's mail leaves the platform.

A route is ``mx`` (direct delivery to the recipient domain's MX hosts), ``relay`` (a smarthost:
host, port, TLS, SMTP AUTH) or ``sandbox`` (the mailbox simulator). Every tenant has the
built-in ``simulator`` and ``default-relay`` (from the settings, no rows) and may add its own
(``/v1/routes``, ``sendarix route``), one of which may be its default. A route may name a
fallback route, which takes its mail when it cannot (the router resolves the chain; no cycles).

A relay's password is written here, encrypted (``libs.route_secrets``), and never read back
through the API: only the sender decrypts it. AUTH is refused without required TLS, so
credentials never cross the network in clear. ``PRESETS`` fill in the big providers' settings.
"""

from __future__ import annotations

from collections.abc import Mapping
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
    lock_routing,
    server_host,
    tenant_pools,
    validated,
)
from libs.retry_windows import read_windows
from libs.route_secrets import delete_secret, store_secret
from libs.settings import Settings
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


class ProviderLimits(BaseModel):
    """A provider's documented sending limits for one account (None: not published)."""

    recipients_per_day: int | None = None
    recipients_per_message: int | None = None
    messages_per_minute: int | None = None
    concurrent_connections: int | None = None


class Preset(BaseModel):
    """A provider's submission settings, filled in for a relay route that names it."""

    model_config = ConfigDict(frozen=True)

    name: str
    provider: str
    host: str
    port: int
    tls: TlsMode
    auth: AuthMethod
    username: str
    """What the provider takes as the AUTH user name."""
    password: str
    """What the provider takes as the AUTH password."""
    limits: ProviderLimits
    notes: str
    sources: tuple[str, ...]


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset(
            name="gmail",
            provider="Gmail (personal Google account)",
            host="smtp.gmail.com",
            port=587,
            tls=TlsMode.STARTTLS,
            auth=AuthMethod.PLAIN,
            username="the full Gmail address",
            password="a 16-character app password (needs 2-Step Verification); Google stopped"
            " accepting the account password over SMTP in 2025",
            limits=ProviderLimits(recipients_per_day=500, recipients_per_message=100),
            notes="About 500 recipients a day over a rolling 24 h; over the limit Gmail refuses"
            " mail for up to a day. For testing and very small volumes only.",
            sources=(
                "https://support.google.com/mail/answer/22839 (Gmail sending limits)",
                "https://support.google.com/accounts/answer/185833 (app passwords)",
            ),
        ),
        Preset(
            name="google-workspace",
            provider="Google Workspace SMTP relay service",
            host="smtp-relay.gmail.com",
            port=587,
            tls=TlsMode.STARTTLS,
            auth=AuthMethod.PLAIN,
            username="a registered Workspace user's address (or none with IP authentication,"
            " configured by the Workspace admin)",
            password="that user's app password",
            limits=ProviderLimits(recipients_per_day=10_000),
            notes="Per registered user: 10,000 messages and 10,000 unique recipients in 24 h"
            " (550 5.4.5 beyond); the admin must turn the relay service on, and SMTP AUTH there"
            " requires TLS.",
            sources=("https://support.google.com/a/answer/2956491 (SMTP relay limits)",),
        ),
        Preset(
            name="outlook",
            provider="Outlook.com (personal Microsoft account)",
            host="smtp-mail.outlook.com",
            port=587,
            tls=TlsMode.STARTTLS,
            auth=AuthMethod.LOGIN,
            username="the full Outlook.com / Hotmail / Live address",
            password="an app password when two-step verification is on, else the account's",
            limits=ProviderLimits(recipients_per_day=300, recipients_per_message=100),
            notes="About 300 recipients a day for a free account, less while an account is new;"
            " Microsoft 365 subscribers get up to 5,000 a day and 500 per message.",
            sources=(
                "https://support.microsoft.com/office/sending-limits-in-outlook-com-"
                "279ee200-594c-40f0-9ec8-bb6af7735c2e",
                "https://www.msoutlook.info/question/235 (free account limits)",
            ),
        ),
        Preset(
            name="yahoo",
            provider="Yahoo Mail",
            host="smtp.mail.yahoo.com",
            port=465,
            tls=TlsMode.IMPLICIT,
            auth=AuthMethod.PLAIN,
            username="the full Yahoo address",
            password="an app password (Yahoo refuses the account password over SMTP)",
            limits=ProviderLimits(recipients_per_day=500, recipients_per_message=100),
            notes="Yahoo does not publish consumer limits; its small-business SMTP help gives"
            " 500 recipients a day and 100 per message, which is what to plan for.",
            sources=(
                "https://help.yahoo.com/kb/SLN4075.html (server settings)",
                "https://help.yahoo.com/kb/SLN17518.html (SMTP sending limits)",
            ),
        ),
        Preset(
            name="office365",
            provider="Microsoft 365 / Exchange Online (SMTP AUTH client submission)",
            host="smtp.office365.com",
            port=587,
            tls=TlsMode.STARTTLS,
            auth=AuthMethod.LOGIN,
            username="the mailbox's address",
            password="its password or app password (the tenant admin must enable SMTP AUTH for"
            " the mailbox; Microsoft is retiring Basic auth for client submission)",
            limits=ProviderLimits(
                recipients_per_day=10_000,
                recipients_per_message=500,
                messages_per_minute=30,
                concurrent_connections=3,
            ),
            notes="Per mailbox: 10,000 recipients a day, 30 messages a minute, 3 concurrent"
            " connections (432 4.3.2 beyond).",
            sources=(
                "https://learn.microsoft.com/office365/servicedescriptions/"
                "exchange-online-service-description/exchange-online-limits",
                "https://techcommunity.microsoft.com/t5/exchange-team-blog/changes-coming-to-"
                "the-smtp-authenticated-submission-client/ba-p/607825",
            ),
        ),
    )
}
"""The relay presets. The figures were checked against the providers' pages named in each
``sources`` (through copies and third-party summaries of them) when written; providers change
them without notice, so they are guidance for shaping, not guarantees."""


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


def _read_only(name: str) -> RoutingRefused | None:
    if name in BUILT_IN_NAMES:
        detail = f"{name!r} is built in: the platform's settings say what it is"
        return RoutingRefused("built_in", detail, status=409)
    return None


async def update_route(
    pool: asyncpg.Pool, settings: Settings, tenant_id: str, name: str, changes: Mapping[str, Any]
) -> TenantRoute | None:
    """Change the fields in ``changes`` (the route is checked again whole; a new ``preset``
    fills what the patch leaves out); None when the tenant has no such route."""
    if (refused := _read_only(name)) is not None:
        raise refused
    async with pool.acquire() as connection, connection.transaction():
        await lock_routing(connection, tenant_id)
        current = await _one(connection, tenant_id, name)
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
    if (refused := _read_only(name)) is not None:
        raise refused
    async with pool.acquire() as connection, connection.transaction():
        await lock_routing(connection, tenant_id)
        current = await _one(connection, tenant_id, name)
        if current is None:
            return None
        users = await connection.fetch(
            "SELECT 'route ' || name AS user FROM routes WHERE tenant_id = $1 AND fallback = $2"
            " UNION ALL SELECT 'rule ' || id::text FROM rules"
            " WHERE tenant_id::text = $1 AND route = $2",
            tenant_id,
            name,
        )
        if users:
            named = ", ".join(row["user"] for row in users)
            raise RoutingRefused("route_in_use", f"{named} use route {name!r}", status=409)
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
