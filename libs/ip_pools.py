"""IP pools as data: named sets of source addresses, each with its EHLO name and weight.

A pool keeps a reputation apart: the router picks one of its addresses for each message and the
sender binds the connection to it (``Route.source``). The built-in pools ``security``,
``transactional`` and ``bulk`` have no rows: their addresses come from ``settings.ip_pools`` and
``security``'s return-path domain from ``settings.critical_return_path_domain``. A tenant adds
pools of its own (``/v1/pools``, ``sendarix pool``); ``security`` stays the critical and high
lanes' alone.

A new address is warmed up: from ``warmup_start`` its effective weight ramps linearly from 1 %
to its full weight over ``warmup_days``, so receivers see its volume grow rather than jump.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Self, TypeVar

import asyncpg
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from libs.database import Connection
from libs.sending_domains import InvalidDomain, normalise_domain
from libs.settings import Settings
from schemas.pipeline import Pool, SourceAddress

NAME = r"^[a-z0-9][a-z0-9-]{0,62}$"
"""A tenant's route or pool name: what rules and routes refer to it by."""
Name = Annotated[str, Field(pattern=NAME)]

MAX_ADDRESSES = 64
MAX_WEIGHT = 1000
WARMUP_FLOOR = 0.01
"""The share of its weight an address starts its warm-up with."""
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


class RoutingRefused(ValueError):
    """A route, pool or retry window the platform will not store; ``code`` says why, ``field``
    is the JSON pointer of the field at fault and ``status`` the HTTP status to answer with."""

    def __init__(self, code: str, detail: str, field: str = "", status: int = 422) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.field = field
        self.status = status


ModelT = TypeVar("ModelT", bound=BaseModel)


def validated(model: type[ModelT], values: Mapping[str, Any]) -> ModelT:
    """``values`` as ``model`` (a stored object with a patch applied), or ``RoutingRefused``
    naming the first bad field."""
    try:
        return model.model_validate(values)
    except ValidationError as error:
        first = error.errors()[0]
        where = "".join(f"/{part}" for part in first["loc"])
        raise RoutingRefused("invalid_request", first["msg"], where) from None


async def lock_routing(connection: Connection, tenant_id: str) -> None:
    """Serialise the changes to one tenant's routes and pools until the transaction ends: a
    check that a fallback or pool exists, or that no route uses one, stays true until commit."""
    await connection.execute(
        "SELECT pg_advisory_xact_lock(hashtext('sendarix routing'), hashtext($1))", tenant_id
    )


def server_host(text: str) -> str:
    """A server's host as stored: an IP address, or a lower-case (IDNA) host name."""
    candidate = text.strip().rstrip(".").lower()
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        pass
    if "." not in candidate and _LABEL.match(candidate):
        return candidate  # a single-label name (localhost, a container's name)
    try:
        return normalise_domain(candidate)
    except InvalidDomain as error:
        raise ValueError(str(error)) from None


class PoolAddress(BaseModel):
    """One source address of a pool."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    address: str
    """IPv4 or IPv6; the sender binds its connections to it."""
    ehlo: str
    """The host name it greets with: its reverse DNS, or receivers distrust it."""
    weight: int = Field(100, ge=0, le=MAX_WEIGHT)
    """Its share of the pool's mail against the others' (0: none)."""
    warmup_start: date | None = None
    warmup_days: int | None = Field(None, ge=1, le=365)

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        return str(ipaddress.ip_address(value.strip()))

    @field_validator("ehlo")
    @classmethod
    def _ehlo(cls, value: str) -> str:
        try:
            return normalise_domain(value)
        except InvalidDomain as error:
            raise ValueError(str(error)) from None

    @model_validator(mode="after")
    def _warmup_whole(self) -> Self:
        if (self.warmup_start is None) != (self.warmup_days is None):
            raise ValueError("a warm-up needs both warmup_start and warmup_days")
        return self

    def weight_at(self, now: datetime) -> float:
        """Its effective weight at ``now``: none before its warm-up starts, then a linear ramp
        from 1 % to its full weight over ``warmup_days``."""
        if self.warmup_start is None or self.warmup_days is None:
            return float(self.weight)
        started = datetime.combine(self.warmup_start, time(), UTC)
        elapsed = now - started
        if elapsed < timedelta(0):
            return 0.0
        share = min(1.0, elapsed / timedelta(days=self.warmup_days))
        return self.weight * (WARMUP_FLOOR + (1 - WARMUP_FLOOR) * share)


class PoolFields(BaseModel):
    """A pool as its tenant writes it (``POST /v1/pools``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    addresses: list[PoolAddress] = Field(default_factory=list, max_length=MAX_ADDRESSES)
    """None: the operating system picks the source address."""
    return_path_domain: str | None = None
    """The domain its mail's bounces come back to (None: the sender domain's own)."""

    @field_validator("return_path_domain")
    @classmethod
    def _domain(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return normalise_domain(value)
        except InvalidDomain as error:
            raise ValueError(str(error)) from None

    @field_validator("addresses")
    @classmethod
    def _distinct(cls, value: list[PoolAddress]) -> list[PoolAddress]:
        if len({a.address for a in value}) != len(value):
            raise ValueError("each address appears once")
        return value


class NewPool(PoolFields):
    """A pool to add, with its name."""

    name: Name


class IpPool(PoolFields):
    """A pool a tenant's mail can be sent from: one of its own, or a built-in one."""

    name: str
    built_in: bool = False
    created_at: datetime | None = None
    updated_at: datetime | None = None


_BUILT_IN_ADDRESSES = TypeAdapter(dict[Pool, list[PoolAddress]])


def built_in_pools(settings: Settings) -> dict[str, IpPool]:
    """The pools every tenant has, from the settings."""
    addresses = _BUILT_IN_ADDRESSES.validate_json(settings.ip_pools) if settings.ip_pools else {}
    return {
        pool.value: IpPool(
            name=pool.value,
            built_in=True,
            addresses=addresses.get(pool, []),
            return_path_domain=(
                settings.critical_return_path_domain or None if pool is Pool.SECURITY else None
            ),
        )
        for pool in Pool
    }


def _score(message_id: str, address: PoolAddress, weight: float) -> float:
    """Weighted rendezvous hashing: the lowest score wins. The same message always picks the
    same address, and adding or removing one moves only the mail that address wins or won."""
    digest = hashlib.blake2b(f"{message_id}|{address.address}".encode(), digest_size=8).digest()
    uniform = (int.from_bytes(digest) + 1) / (2**64 + 1)  # in (0, 1)
    return -math.log(uniform) / weight


def choose_source(pool: IpPool, message_id: str, now: datetime) -> SourceAddress | None:
    """The address ``message_id`` is sent from (None: the pool has no address in service, the
    system picks): chosen by weight at ``now``, the same for every redelivery of the message
    while the weights stand."""
    candidates = [(a, w) for a in pool.addresses if (w := a.weight_at(now)) > 0]
    if not candidates:
        return None
    chosen, _ = min(candidates, key=lambda pair: _score(message_id, *pair))
    return SourceAddress(address=chosen.address, ehlo=chosen.ehlo)


async def refuse_if_used(
    connection: Connection, users: str, tenant_id: str, name: str, code: str
) -> None:
    """Refuse (409 ``code``) to remove ``name`` while the statement ``users`` (given the
    tenant $1 and the name $2) finds a route or rule that names it."""
    found = await connection.fetch(users, tenant_id, name)
    if found:
        named = ", ".join(row["user"] for row in found)
        raise RoutingRefused(code, f"{name!r} is in use by {named}", status=409)


POOL_USERS = (
    "SELECT 'route ' || name AS user FROM routes WHERE tenant_id = $1 AND pool = $2"
    " UNION ALL SELECT 'rule ' || id::text FROM rules WHERE tenant_id::text = $1 AND pool = $2"
)
COLUMNS = "name, addresses, return_path_domain, created_at, updated_at"


def _pool(row: asyncpg.Record) -> IpPool:
    return IpPool.model_validate(dict(row))


def _stored(fields: PoolFields) -> list[Any]:
    return [fields.model_dump(mode="json")["addresses"], fields.return_path_domain]


def _reserved(name: str) -> RoutingRefused | None:
    if name in {pool.value for pool in Pool}:
        return RoutingRefused("reserved_name", f"{name!r} is a built-in pool", "/name")
    return None


async def tenant_pools(executor: asyncpg.Pool | Connection, tenant_id: str) -> list[IpPool]:
    """The tenant's own pools, by name."""
    rows = await executor.fetch(
        f"SELECT {COLUMNS} FROM ip_pools WHERE tenant_id = $1 ORDER BY name", tenant_id
    )
    return [_pool(row) for row in rows]


async def list_pools(pool: asyncpg.Pool, settings: Settings, tenant_id: str) -> list[IpPool]:
    """The pools the tenant's mail can be sent from: the built-in ones, then its own."""
    return [*built_in_pools(settings).values(), *await tenant_pools(pool, tenant_id)]


async def get_pool(
    pool: asyncpg.Pool, settings: Settings, tenant_id: str, name: str
) -> IpPool | None:
    """One pool of the tenant, or a built-in one (None: no such pool)."""
    if (built_in := built_in_pools(settings).get(name)) is not None:
        return built_in
    row = await pool.fetchrow(
        f"SELECT {COLUMNS} FROM ip_pools WHERE tenant_id = $1 AND name = $2", tenant_id, name
    )
    return _pool(row) if row else None


async def create_pool(pool: asyncpg.Pool, tenant_id: str, fields: NewPool) -> IpPool:
    """Store a new pool; ``RoutingRefused`` for a built-in's name or one the tenant has."""
    name = fields.name
    if (refused := _reserved(name)) is not None:
        raise refused
    row = await pool.fetchrow(
        "INSERT INTO ip_pools (tenant_id, name, addresses, return_path_domain)"
        " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING"
        f" RETURNING {COLUMNS}",
        tenant_id,
        name,
        *_stored(fields),
    )
    if row is None:
        raise RoutingRefused("pool_exists", f"the tenant has a pool {name!r}", "/name", 409)
    return _pool(row)


def built_in_refusal(name: str, built_ins: Iterable[str]) -> RoutingRefused | None:
    """Why ``name`` may not be changed or removed: it is one of the ``built_ins``."""
    if name in built_ins:
        detail = f"{name!r} is built in: the platform's settings say what it is"
        return RoutingRefused("built_in", detail, status=409)
    return None


async def update_pool(
    pool: asyncpg.Pool, tenant_id: str, name: str, changes: Mapping[str, Any]
) -> IpPool | None:
    """Change the fields in ``changes`` (checked with the rest of the pool); None when the
    tenant has no such pool."""
    if (refused := built_in_refusal(name, set(Pool))) is not None:
        raise refused
    async with pool.acquire() as connection, connection.transaction():
        row = await connection.fetchrow(
            f"SELECT {COLUMNS} FROM ip_pools WHERE tenant_id = $1 AND name = $2 FOR UPDATE",
            tenant_id,
            name,
        )
        if row is None:
            return None
        current = _pool(row).model_dump(include=set(PoolFields.model_fields), mode="json")
        fields = validated(PoolFields, current | dict(changes))
        row = await connection.fetchrow(
            "UPDATE ip_pools SET addresses = $3, return_path_domain = $4, updated_at = now()"
            f" WHERE tenant_id = $1 AND name = $2 RETURNING {COLUMNS}",
            tenant_id,
            name,
            *_stored(fields),
        )
    assert row is not None, "the row is locked"
    return _pool(row)


async def delete_pool(pool: asyncpg.Pool, tenant_id: str, name: str) -> IpPool | None:
    """Remove a pool no route or rule of the tenant names (409 ``pool_in_use`` otherwise);
    None when the tenant has no such pool."""
    if (refused := built_in_refusal(name, set(Pool))) is not None:
        raise refused
    async with pool.acquire() as connection, connection.transaction():
        await lock_routing(connection, tenant_id)
        await refuse_if_used(connection, POOL_USERS, tenant_id, name, "pool_in_use")
        row = await connection.fetchrow(
            f"DELETE FROM ip_pools WHERE tenant_id = $1 AND name = $2 RETURNING {COLUMNS}",
            tenant_id,
            name,
        )
    return _pool(row) if row else None


async def return_path_domains(pool: asyncpg.Pool, settings: Settings) -> frozenset[str]:
    """Every domain a return path may point at besides the bounce domain: the ``security``
    pool's and those of the tenants' pools (the feedback listener answers them all)."""
    rows = await pool.fetch(
        "SELECT DISTINCT lower(return_path_domain) AS domain FROM ip_pools"
        " WHERE return_path_domain IS NOT NULL"
    )
    domains = {row["domain"] for row in rows}
    if settings.critical_return_path_domain:
        domains.add(settings.critical_return_path_domain.lower())
    return frozenset(domains)
