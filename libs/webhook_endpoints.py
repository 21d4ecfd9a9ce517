"""Webhook endpoints as data: where a tenant's events are posted, which ones, and with what secret.

A tenant has any number of endpoints, each with its own URL, filters (CloudEvent types,
streams; empty = all), signing secret and enabled flag. Rotating a secret keeps the previous
one for an overlap, during which every post carries both signatures, so receivers can switch
without losing a post. An endpoint that stays down is disabled by the webhook service, with
the reason kept here; setting ``enabled`` again re-enables it. The ``/v1/webhooks`` routes,
``sendarix webhook`` and the webhook service are clients of these functions.
"""

from __future__ import annotations

import base64
import secrets
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import asyncpg
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from libs.database import Connection
from libs.webhook_targets import TargetGuard, TargetRefused
from schemas.common import Stream
from schemas.events import MessageState
from schemas.notices import NoticeType

WEBHOOK_SECRET_PREFIX = "whsec_"
CHANGES_CHANNEL = "webhook_endpoints"
"""Where PostgreSQL announces (a trigger, payload = tenant id) that a tenant's endpoints changed."""
DEFAULT_OVERLAP = timedelta(hours=24)
MAX_OVERLAP = timedelta(days=7)
MAX_ENDPOINTS_PER_TENANT = 50
EVENT_TYPES = frozenset(
    [state.event_type for state in MessageState] + [kind.value for kind in NoticeType]
)
"""The CloudEvent types an endpoint may ask for: every message state and every notice."""

Description = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=500, pattern=r"^[^\x00-\x1f\x7f]*$")
]
Url = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2048)]


class EndpointRefused(ValueError):
    """An endpoint the platform will not save; ``code`` says why (a 422 problem at the API)."""

    def __init__(self, code: str, detail: str, field: str = "") -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.field = field


def new_webhook_secret() -> str:
    """A Standard Webhooks signing secret: ``whsec_`` and 32 random bytes in base64."""
    return WEBHOOK_SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


class EndpointFields(BaseModel):
    """``POST /v1/webhooks``: an endpoint as its tenant describes it."""

    model_config = ConfigDict(extra="forbid")

    url: Url
    description: Description = ""
    event_types: list[str] = Field(default_factory=list, max_length=len(EVENT_TYPES))
    """CloudEvent types posted (empty: all), e.g. ``sendarix.message.delivered``."""
    streams: list[Stream] = Field(default_factory=list)
    """Message streams posted (empty: all); notices are about a tenant and always match."""
    enabled: bool = True


class EndpointPatch(BaseModel):
    """``PATCH /v1/webhooks/{id}``: only the fields given change. ``enabled: true`` re-enables
    an endpoint the webhook service disabled."""

    model_config = ConfigDict(extra="forbid")

    url: Url | None = None
    description: Description | None = None
    event_types: list[str] | None = Field(None, max_length=len(EVENT_TYPES))
    streams: list[Stream] | None = None
    enabled: bool | None = None

    def changes(self) -> dict[str, Any]:
        return {
            k: v for k, v in self.model_dump(include=self.model_fields_set).items() if v is not None
        }


class Endpoint(BaseModel):
    """A stored endpoint; its secrets are never part of what is shown."""

    id: str
    tenant_id: str
    url: str
    description: str
    event_types: list[str]
    streams: list[Stream]
    enabled: bool
    disabled_reason: str | None
    disabled_at: datetime | None
    previous_secret_expires_at: datetime | None
    """Until when posts carry the previous secret's signature too (a rotation's overlap)."""
    created_at: datetime
    updated_at: datetime
    secret: str = Field(exclude=True, repr=False)
    previous_secret: str | None = Field(None, exclude=True, repr=False)

    def secrets(self, now: datetime) -> list[str]:
        """The secrets a post is signed with now: the current one, and the previous one
        while the rotation's overlap lasts."""
        expires = self.previous_secret_expires_at
        if self.previous_secret and expires is not None and expires > now:
            return [self.secret, self.previous_secret]
        return [self.secret]

    def wants(self, event_type: str, stream: str | None) -> bool:
        """Whether an event of ``event_type`` (about a message of ``stream``) is posted here."""
        if self.event_types and event_type not in self.event_types:
            return False
        return not self.streams or stream is None or stream in self.streams


COLUMNS = (
    "id, tenant_id, url, description, event_types, streams, enabled, disabled_reason,"
    " disabled_at, previous_expires_at AS previous_secret_expires_at, created_at, updated_at,"
    " secret, previous_secret"
)


def endpoint_of(row: asyncpg.Record) -> Endpoint:
    values = dict(row)
    values["id"], values["tenant_id"] = str(row["id"]), str(row["tenant_id"])
    return Endpoint.model_validate(values)


def key_of(text: str) -> uuid.UUID | None:
    """``text`` as a UUID, or None when it is not one (an id that cannot exist)."""
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


def _checked_types(event_types: Sequence[str]) -> list[str]:
    unknown = sorted(set(event_types) - EVENT_TYPES)
    if unknown:
        raise EndpointRefused(
            "unknown_event_type", f"no such event type: {', '.join(unknown)}", "event_types"
        )
    return sorted(set(event_types))


async def _checked_url(guard: TargetGuard, url: str) -> str:
    try:
        return await guard.check(url)
    except TargetRefused as refused:
        raise EndpointRefused(refused.code, refused.detail, "url") from None


async def insert_endpoint(
    connection: Connection, tenant_id: str, url: str, fields: EndpointFields | None = None
) -> Endpoint:
    """Store an endpoint whose URL was checked; it gets a fresh secret."""
    given = fields or EndpointFields(url=url)
    row = await connection.fetchrow(
        "INSERT INTO webhook_endpoints (id, tenant_id, url, description, event_types, streams,"
        f" enabled, secret) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {COLUMNS}",
        uuid.uuid4(),
        uuid.UUID(tenant_id),
        url,
        given.description,
        _checked_types(given.event_types),
        sorted({s.value for s in given.streams}),
        given.enabled,
        new_webhook_secret(),
    )
    assert row is not None, "INSERT … RETURNING has a row"
    return endpoint_of(row)


async def create_endpoint(
    pool: asyncpg.Pool, guard: TargetGuard, tenant_id: str, fields: EndpointFields
) -> Endpoint:
    """A new endpoint of the tenant; ``EndpointRefused`` for a URL it may not post to, an
    unknown event type, or a tenant with as many endpoints as it may have."""
    url = await _checked_url(guard, fields.url)
    async with pool.acquire() as connection, connection.transaction():
        if not await connection.fetchval(
            "SELECT 1 FROM tenants WHERE id = $1 FOR UPDATE", uuid.UUID(tenant_id)
        ):
            raise EndpointRefused("not_found", f"no tenant {tenant_id}")
        count = await connection.fetchval(
            "SELECT count(*) FROM webhook_endpoints WHERE tenant_id = $1", uuid.UUID(tenant_id)
        )
        if count >= MAX_ENDPOINTS_PER_TENANT:
            raise EndpointRefused(
                "endpoint_limit_reached", f"a tenant may have {MAX_ENDPOINTS_PER_TENANT} endpoints"
            )
        return await insert_endpoint(connection, tenant_id, url, fields)


async def list_endpoints(pool: asyncpg.Pool, tenant_id: str) -> list[Endpoint]:
    """The tenant's endpoints, oldest first."""
    tenant = key_of(tenant_id)
    rows = await pool.fetch(
        f"SELECT {COLUMNS} FROM webhook_endpoints WHERE tenant_id = $1 ORDER BY created_at, id",
        tenant,
    )
    return [endpoint_of(row) for row in rows]


async def _one(
    pool: asyncpg.Pool, tenant_id: str, endpoint_id: str, statement: str, *more: Any
) -> Endpoint | None:
    """The endpoint ``statement`` (given tenant $1 and id $2) returns; None without one."""
    tenant, key = key_of(tenant_id), key_of(endpoint_id)
    if tenant is None or key is None:
        return None
    row = await pool.fetchrow(statement, tenant, key, *more)
    return endpoint_of(row) if row else None


async def get_endpoint(pool: asyncpg.Pool, tenant_id: str, endpoint_id: str) -> Endpoint | None:
    """One endpoint of the tenant (None: no such endpoint, or another tenant's)."""
    statement = f"SELECT {COLUMNS} FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2"
    return await _one(pool, tenant_id, endpoint_id, statement)


async def update_endpoint(
    pool: asyncpg.Pool, guard: TargetGuard, tenant_id: str, endpoint_id: str, patch: EndpointPatch
) -> Endpoint | None:
    """Change what ``patch`` gives; re-enabling clears the reason and the failure count."""
    changes = patch.changes()
    url = await _checked_url(guard, changes["url"]) if "url" in changes else None
    types = _checked_types(changes["event_types"]) if "event_types" in changes else None
    streams = (
        sorted({Stream(s).value for s in changes["streams"]}) if "streams" in changes else None
    )
    statement = (
        "UPDATE webhook_endpoints SET url = coalesce($3, url),"
        " description = coalesce($4, description), event_types = coalesce($5, event_types),"
        " streams = coalesce($6, streams), enabled = coalesce($7, enabled),"
        " disabled_reason = CASE WHEN $7 THEN NULL ELSE disabled_reason END,"
        " disabled_at = CASE WHEN $7 THEN NULL ELSE disabled_at END,"
        " failures = CASE WHEN $7 THEN 0 ELSE failures END,"
        " failing_since = CASE WHEN $7 THEN NULL ELSE failing_since END,"
        f" updated_at = now() WHERE tenant_id = $1 AND id = $2 RETURNING {COLUMNS}"
    )
    return await _one(
        pool,
        tenant_id,
        endpoint_id,
        statement,
        url,
        changes.get("description"),
        types,
        streams,
        changes.get("enabled"),
    )


async def delete_endpoint(pool: asyncpg.Pool, tenant_id: str, endpoint_id: str) -> Endpoint | None:
    """Remove an endpoint, its queue and its attempt log."""
    statement = (
        f"DELETE FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2 RETURNING {COLUMNS}"
    )
    return await _one(pool, tenant_id, endpoint_id, statement)


async def rotate_secret(
    pool: asyncpg.Pool, tenant_id: str, endpoint_id: str, overlap: timedelta = DEFAULT_OVERLAP
) -> Endpoint | None:
    """Give the endpoint a new secret; the current one keeps signing posts for ``overlap``."""
    if not timedelta(0) <= overlap <= MAX_OVERLAP:
        raise EndpointRefused(
            "invalid_overlap",
            f"the overlap must be 0 to {int(MAX_OVERLAP.total_seconds())} s",
            "overlap_seconds",
        )
    statement = (
        "UPDATE webhook_endpoints SET previous_secret = secret, secret = $3,"
        " previous_expires_at = $4, updated_at = now()"
        f" WHERE tenant_id = $1 AND id = $2 RETURNING {COLUMNS}"
    )
    expires = datetime.now(UTC) + overlap
    return await _one(pool, tenant_id, endpoint_id, statement, new_webhook_secret(), expires)


async def enabled_endpoints(
    pool: asyncpg.Pool, tenant_ids: Sequence[str]
) -> dict[str, list[Endpoint]]:
    """The enabled endpoints of each of ``tenant_ids`` (every one of them a key, maybe empty)."""
    keys = [key for key in map(key_of, tenant_ids) if key is not None]
    rows = await pool.fetch(
        f"SELECT {COLUMNS} FROM webhook_endpoints WHERE tenant_id = ANY($1::uuid[]) AND enabled",
        keys,
    )
    found: dict[str, list[Endpoint]] = {tenant: [] for tenant in tenant_ids}
    for row in rows:
        endpoint = endpoint_of(row)
        found[endpoint.tenant_id].append(endpoint)
    return found


async def endpoint_by_id(pool: asyncpg.Pool, endpoint_id: uuid.UUID) -> Endpoint | None:
    """An endpoint by id alone (the webhook service posting for it)."""
    row = await pool.fetchrow(f"SELECT {COLUMNS} FROM webhook_endpoints WHERE id = $1", endpoint_id)
    return endpoint_of(row) if row else None


async def disable_endpoint(
    pool: asyncpg.Pool, endpoint_id: uuid.UUID, reason: str
) -> Endpoint | None:
    """Disable an enabled endpoint for ``reason``; None when it was not enabled (so only one
    process announces it)."""
    row = await pool.fetchrow(
        "UPDATE webhook_endpoints SET enabled = false, disabled_reason = $2, disabled_at = now(),"
        f" updated_at = now() WHERE id = $1 AND enabled RETURNING {COLUMNS}",
        endpoint_id,
        reason,
    )
    return endpoint_of(row) if row else None
