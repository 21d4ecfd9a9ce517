"""API keys: who may call the platform, for what, from which domains and in which streams.

A key's secret is shown once and stored as its sha256; its id is the public handle the admin
API, the CLI and the message log use. Every write goes through these functions — the ``/v1/keys``
routes and ``sendarix key`` are two clients of the same code. A tenant never loses its last
lasting admin key by accident: revoking or narrowing it is refused (``KeyConflict``).
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from schemas.common import Stream

API_KEY_PREFIX = "sx_"
SHOWN_PREFIX_CHARS = 8
DEFAULT_ROTATION_OVERLAP = timedelta(hours=24)
"""How long the old secret of a rotated key keeps working unless the rotation says otherwise."""

Database = asyncpg.Pool | asyncpg.Connection | PoolConnectionProxy


class Scope(StrEnum):
    """What a key may do: send mail, read messages and logs, administer the tenant."""

    SEND = "send"
    READ = "read"
    ADMIN = "admin"


ALL_SCOPES = frozenset(Scope)


@dataclass(frozen=True)
class KeySettings:
    """What a key may do, as its creator chose it (kept by a rotation)."""

    name: str = "default"
    scopes: frozenset[Scope] = ALL_SCOPES
    domains: tuple[str, ...] | None = None
    """Sending domains it may use (and their subdomains); None: any of the tenant's."""
    streams: tuple[Stream, ...] | None = None
    """Streams it may send in; None: any."""
    rate_per_second: float | None = None
    rate_burst: int | None = None
    """The key's own send rate, within its tenant's; None: only the tenant's applies."""


@dataclass(frozen=True)
class ApiKey:
    """A stored key (never its secret)."""

    id: str
    tenant_id: str
    prefix: str
    settings: KeySettings
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    def usable(self, now: datetime) -> bool:
        """Not revoked and not past its expiry."""
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)

    def lasting_admin(self, now: datetime) -> bool:
        """An admin key that is usable and set to expire at no time."""
        return Scope.ADMIN in self.settings.scopes and self.usable(now) and not self.expires_at


def described(key: ApiKey) -> dict[str, Any]:
    """A key as the admin API and the CLI show it: everything but its secret."""
    settings = key.settings
    return {
        "id": key.id,
        "name": settings.name,
        "prefix": key.prefix,
        "scopes": sorted(settings.scopes),
        "domains": list(settings.domains) if settings.domains is not None else None,
        "streams": list(settings.streams) if settings.streams is not None else None,
        "rate_per_second": settings.rate_per_second,
        "rate_burst": settings.rate_burst,
        "created_at": key.created_at,
        "last_used_at": key.last_used_at,
        "expires_at": key.expires_at,
        "revoked_at": key.revoked_at,
    }


class KeyConflict(Exception):
    """The change would leave the tenant in a state it did not mean to reach."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def hash_api_key(api_key: str) -> bytes:
    """The stored form of an API key."""
    return hashlib.sha256(api_key.encode()).digest()


def new_api_key() -> str:
    """A fresh random API key."""
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def normalised_domains(domains: Iterable[str]) -> tuple[str, ...]:
    """Domains as keys and tenants store them: lower-case, stripped, sorted, once each."""
    return tuple(sorted({d.strip().lower() for d in domains if d.strip()}))


def _api_key(row: asyncpg.Record) -> ApiKey:
    return ApiKey(
        id=str(row["id"]),
        tenant_id=str(row["tenant_id"]),
        prefix=row["prefix"],
        settings=KeySettings(
            name=row["name"],
            scopes=frozenset(Scope(s) for s in row["scopes"]),
            domains=tuple(row["domains"]) if row["domains"] is not None else None,
            streams=tuple(Stream(s) for s in row["streams"])
            if row["streams"] is not None
            else None,
            rate_per_second=row["rate_per_second"],
            rate_burst=row["rate_burst"],
        ),
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
        last_used_at=row["last_used_at"],
    )


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


async def insert_key(
    db: Database, tenant_id: str, settings: KeySettings, secret: str | None = None
) -> tuple[ApiKey, str]:
    """Store a new key of a tenant; return it and its secret (shown this once)."""
    key = secret or new_api_key()
    row = await db.fetchrow(
        "INSERT INTO api_keys (key_hash, prefix, tenant_id, name, scopes, domains, streams,"
        " rate_per_second, rate_burst) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING *",
        hash_api_key(key),
        key[:SHOWN_PREFIX_CHARS],
        uuid.UUID(tenant_id),
        settings.name,
        sorted(settings.scopes),
        list(settings.domains) if settings.domains is not None else None,
        [s.value for s in settings.streams] if settings.streams is not None else None,
        settings.rate_per_second,
        settings.rate_burst,
    )
    assert row is not None, "INSERT … RETURNING returns the row"
    return _api_key(row), key


async def key_by_secret(db: Database, api_key: str) -> ApiKey | None:
    """The usable key whose secret is ``api_key``."""
    row = await db.fetchrow(
        "SELECT * FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL"
        " AND (expires_at IS NULL OR expires_at > now())",
        hash_api_key(api_key),
    )
    return _api_key(row) if row else None


async def list_keys(db: Database, tenant_id: str) -> list[ApiKey]:
    """A tenant's keys, oldest first, revoked and expired ones included."""
    rows = await db.fetch(
        "SELECT * FROM api_keys WHERE tenant_id = $1 ORDER BY created_at, id",
        uuid.UUID(tenant_id),
    )
    return [_api_key(row) for row in rows]


async def get_key(db: Database, tenant_id: str, key_id: str) -> ApiKey | None:
    """One of a tenant's keys (None: no such key, or another tenant's)."""
    key = _uuid(key_id)
    if key is None:
        return None
    row = await db.fetchrow(
        "SELECT * FROM api_keys WHERE id = $1 AND tenant_id = $2", key, uuid.UUID(tenant_id)
    )
    return _api_key(row) if row else None


def keeps_an_admin(keys: Sequence[ApiKey], changed: ApiKey, now: datetime) -> bool:
    """True unless replacing one of ``keys`` with ``changed`` would take the tenant's last
    lasting admin key away (a tenant that had none is left to repair itself)."""
    before = [k for k in keys if k.lasting_admin(now)]
    after = [k for k in keys if k.id != changed.id and k.lasting_admin(now)]
    return not before or bool(after) or changed.lasting_admin(now)


@dataclass(frozen=True)
class _Locked:
    """A key and its tenant's other keys, locked until the transaction ends."""

    key: ApiKey
    keys: list[ApiKey]
    now: datetime


async def _locked(connection: Database, tenant_id: str, key_id: str) -> _Locked | None:
    """Lock a tenant's keys (in id order, so two writers never wait on each other in a circle)
    and find one of them."""
    target = _uuid(key_id)
    if target is None:
        return None
    rows = await connection.fetch(
        "SELECT *, now() AS at FROM api_keys WHERE tenant_id = $1 ORDER BY id FOR UPDATE",
        uuid.UUID(tenant_id),
    )
    keys = [_api_key(row) for row in rows]
    found = next((k for k in keys if k.id == str(target)), None)
    return _Locked(found, keys, rows[0]["at"]) if found else None


async def _change(
    pool: asyncpg.Pool, tenant_id: str, key_id: str, fields: dict[str, Any], revoke: bool = False
) -> ApiKey | None:
    """Set ``fields`` of a tenant's key (and revoke it) unless that takes its last admin key
    away."""
    async with pool.acquire() as connection, connection.transaction():
        locked = await _locked(connection, tenant_id, key_id)
        if locked is None:
            return None
        if revoke:
            fields = fields | {"revoked_at": locked.now}
        changed = _with_fields(locked.key, fields)
        if not keeps_an_admin(locked.keys, changed, locked.now):
            raise KeyConflict(
                "last_admin_key",
                "this is the tenant's last admin key: create another admin key first",
            )
        assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(fields, start=3))
        row = await connection.fetchrow(
            f"UPDATE api_keys SET {assignments} WHERE id = $1 AND tenant_id = $2 RETURNING *",
            uuid.UUID(locked.key.id),
            uuid.UUID(tenant_id),
            *fields.values(),
        )
    return _api_key(row) if row else None


def _with_fields(key: ApiKey, fields: dict[str, Any]) -> ApiKey:
    """The key as it will be once ``fields`` are stored."""
    settings = key.settings
    if "scopes" in fields:
        settings = replace(settings, scopes=frozenset(Scope(s) for s in fields["scopes"]))
    return replace(key, settings=settings, revoked_at=fields.get("revoked_at", key.revoked_at))


async def update_key(
    pool: asyncpg.Pool, tenant_id: str, key_id: str, changes: dict[str, Any]
) -> ApiKey | None:
    """Change a key's ``name``, ``scopes``, ``domains`` or ``streams`` (the keys of
    ``changes``; None for domains or streams lifts that restriction)."""
    fields: dict[str, Any] = {}
    if "name" in changes:
        fields["name"] = changes["name"]
    if "scopes" in changes:
        fields["scopes"] = sorted(Scope(s) for s in changes["scopes"])
    if "domains" in changes:
        domains = changes["domains"]
        fields["domains"] = list(normalised_domains(domains)) if domains is not None else None
    if "streams" in changes:
        streams = changes["streams"]
        fields["streams"] = [Stream(s).value for s in streams] if streams is not None else None
    if not fields:
        return await get_key(pool, tenant_id, key_id)
    return await _change(pool, tenant_id, key_id, fields)


async def revoke_key(pool: asyncpg.Pool, tenant_id: str, key_id: str) -> ApiKey | None:
    """Revoke a key now (revoking it again keeps the first time)."""
    key = await get_key(pool, tenant_id, key_id)
    if key is None or key.revoked_at is not None:
        return key
    return await _change(pool, tenant_id, key_id, {}, revoke=True)


async def rotate_key(
    pool: asyncpg.Pool,
    tenant_id: str,
    key_id: str,
    overlap: timedelta = DEFAULT_ROTATION_OVERLAP,
) -> tuple[ApiKey, str, ApiKey] | None:
    """Replace a usable key by a new one with the same settings: return the new key, its
    secret, and the old key, which keeps working for ``overlap`` (zero: not at all)."""
    async with pool.acquire() as connection, connection.transaction():
        locked = await _locked(connection, tenant_id, key_id)
        if locked is None:
            return None
        old, now = locked.key, locked.now
        if not old.usable(now):
            raise KeyConflict("key_not_usable", "a revoked or expired key cannot be rotated")
        new, secret = await insert_key(connection, tenant_id, old.settings)
        until = now + overlap
        row = await connection.fetchrow(
            "UPDATE api_keys SET expires_at = least(expires_at, $2) WHERE id = $1 RETURNING *",
            uuid.UUID(old.id),
            until,
        )
    assert row is not None, "the key was read in this transaction"
    return new, secret, _api_key(row)


async def mark_used(pool: asyncpg.Pool, key_ids: Sequence[str]) -> None:
    """Note that these keys were used just now."""
    await pool.execute(
        "UPDATE api_keys SET last_used_at = now() WHERE id = ANY($1::uuid[])",
        [uuid.UUID(k) for k in key_ids],
    )
