"""``/v1/keys``: a tenant's API keys, administered with a key of scope ``admin``.

Always the caller's tenant's keys: another tenant's key is not found (404). A secret is shown
once, when its key is created or rotated; listings show its first characters only. The writes
are ``libs.keys``'s, which ``sendarix key`` uses too.
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import datetime, timedelta
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from libs import keys
from libs.keys import DEFAULT_ROTATION_OVERLAP, ApiKey, KeyConflict, KeySettings, Scope
from schemas.common import Stream
from services.ingest.http_deps import AdminCaller, IngestDep, optional_body, parsed_body, problems
from services.ingest.problems import ProblemError

MAX_OVERLAP_SECONDS = 30 * 24 * 3600

DomainName = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        max_length=253,
        pattern=r"^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z0-9-]{2,63}$",
    ),
]
KeyName = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$"
    ),
]
MAX_RATE_PER_SECOND = 1_000_000.0
MAX_BURST = 10_000_000

T = TypeVar("T")
router = APIRouter(prefix="/v1/keys", tags=["keys"])


class KeyRestrictions(BaseModel):
    """What a key may be limited to; a list left out or null means any."""

    model_config = ConfigDict(extra="forbid")

    domains: list[DomainName] | None = Field(None, max_length=100)
    """Sending domains (and their subdomains) its messages may come ``from``."""
    streams: list[Stream] | None = None
    """Streams it may send in."""


class KeyCreate(KeyRestrictions):
    """``POST /v1/keys``: a new key of the caller's tenant."""

    name: KeyName
    scopes: list[Scope] = Field(min_length=1)
    rate_per_second: float | None = Field(None, gt=0, le=MAX_RATE_PER_SECOND)
    """The key's own send rate (messages/s), within its tenant's; null: the tenant's only."""
    rate_burst: int | None = Field(None, ge=1, le=MAX_BURST)
    """How many messages it may send at once (default: one second's worth)."""

    def settings(self) -> KeySettings:
        return KeySettings(
            name=self.name,
            scopes=frozenset(self.scopes),
            domains=keys.normalised_domains(self.domains) if self.domains is not None else None,
            streams=tuple(dict.fromkeys(self.streams)) if self.streams is not None else None,
            rate_per_second=self.rate_per_second,
            rate_burst=self.rate_burst,
        )


class KeyPatch(KeyRestrictions):
    """``PATCH /v1/keys/{id}``: only the fields given change (null domains/streams: any)."""

    name: KeyName | None = None
    scopes: list[Scope] | None = Field(None, min_length=1)

    def changes(self) -> dict[str, Any]:
        given = self.model_dump(include=self.model_fields_set)
        return {k: v for k, v in given.items() if v is not None or k in ("domains", "streams")}


class Rotation(BaseModel):
    """``POST /v1/keys/{id}/rotate``: how long the old secret keeps working (0: not at all)."""

    model_config = ConfigDict(extra="forbid")

    overlap_seconds: int = Field(
        int(DEFAULT_ROTATION_OVERLAP.total_seconds()), ge=0, le=MAX_OVERLAP_SECONDS
    )


class KeyView(BaseModel):
    """A key as the admin API shows it: never its secret."""

    id: str
    name: str
    prefix: str
    scopes: list[Scope]
    domains: list[str] | None
    streams: list[Stream] | None
    rate_per_second: float | None
    rate_burst: int | None
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, key: ApiKey) -> KeyView:
        return cls.model_validate(keys.described(key))


class CreatedKey(KeyView):
    """A new key and its secret, shown this once."""

    secret: str


class RotatedKey(BaseModel):
    """The key that replaces a rotated one, and the old one with the end of its overlap."""

    key: CreatedKey
    previous: KeyView


class KeyList(BaseModel):
    """A tenant's keys, oldest first."""

    keys: list[KeyView]


def _inlined(value: Any, definitions: dict[str, Any]) -> Any:
    if isinstance(value, dict):
        if "$ref" in value:
            return _inlined(definitions[value["$ref"].rsplit("/", 1)[-1]], definitions)
        return {k: _inlined(v, definitions) for k, v in value.items()}
    if isinstance(value, list):
        return [_inlined(item, definitions) for item in value]
    return value


def json_body_doc(model: type[BaseModel], required: bool = True) -> dict[str, Any]:
    """The OpenAPI request body of a route that parses ``model`` itself (definitions inlined,
    so the document needs no components of its own for it)."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})
    content = {"application/json": {"schema": _inlined(schema, definitions)}}
    return {"requestBody": {"required": required, "content": content}}


async def _found(key_id: str, change: Awaitable[T | None]) -> T:
    """What a look-up or change of one key returned: 404 when the tenant has no such key,
    409 when the change was refused."""
    try:
        result = await change
    except KeyConflict as error:
        raise ProblemError(error.code, error.detail) from error
    if result is None:
        raise ProblemError("not_found", f"no API key {key_id!r}")
    return result


@router.get("", response_model=KeyList, responses=problems(401, 403), summary="List keys")
async def list_keys(ingest: IngestDep, caller: AdminCaller) -> KeyList:
    """The tenant's keys, revoked and expired ones included."""
    found = await keys.list_keys(ingest.pool, caller.tenant.id)
    return KeyList(keys=[KeyView.of(key) for key in found])


@router.post(
    "",
    status_code=201,
    response_model=CreatedKey,
    responses=problems(400, 401, 403, 415, 422),
    summary="Create a key (its secret is shown once)",
    openapi_extra=json_body_doc(KeyCreate),
)
async def create_key(request: Request, ingest: IngestDep, caller: AdminCaller) -> CreatedKey:
    body = await parsed_body(request, KeyCreate)
    key, secret = await keys.insert_key(ingest.pool, caller.tenant.id, body.settings())
    return CreatedKey(**KeyView.of(key).model_dump(), secret=secret)


@router.get("/{key_id}", response_model=KeyView, responses=problems(401, 403, 404), summary="A key")
async def get_key(key_id: str, ingest: IngestDep, caller: AdminCaller) -> KeyView:
    return KeyView.of(await _found(key_id, keys.get_key(ingest.pool, caller.tenant.id, key_id)))


@router.patch(
    "/{key_id}",
    response_model=KeyView,
    responses=problems(400, 401, 403, 404, 409, 415, 422),
    summary="Rename a key, change its scopes or restrictions",
    openapi_extra=json_body_doc(KeyPatch),
)
async def patch_key(
    key_id: str, request: Request, ingest: IngestDep, caller: AdminCaller
) -> KeyView:
    """Applies within seconds on every ingest process; narrowing the tenant's last admin key
    is refused (409)."""
    body = await parsed_body(request, KeyPatch)
    change = keys.update_key(ingest.pool, caller.tenant.id, key_id, body.changes())
    return KeyView.of(await _found(key_id, change))


@router.delete(
    "/{key_id}",
    response_model=KeyView,
    responses=problems(401, 403, 404, 409),
    summary="Revoke a key",
)
async def revoke_key(key_id: str, ingest: IngestDep, caller: AdminCaller) -> KeyView:
    """Refused everywhere within seconds; the tenant's last admin key cannot go (409)."""
    change = keys.revoke_key(ingest.pool, caller.tenant.id, key_id)
    return KeyView.of(await _found(key_id, change))


@router.post(
    "/{key_id}/rotate",
    status_code=201,
    response_model=RotatedKey,
    responses=problems(400, 401, 403, 404, 409, 415, 422),
    summary="Replace a key's secret; the old one works for an overlap (default 24 h)",
    openapi_extra=json_body_doc(Rotation, required=False),
)
async def rotate_key(
    key_id: str, request: Request, ingest: IngestDep, caller: AdminCaller
) -> RotatedKey:
    """A new key with the same settings; the body (optional) sets ``overlap_seconds``."""
    body = await optional_body(request, Rotation)
    overlap = timedelta(seconds=body.overlap_seconds)
    change = keys.rotate_key(ingest.pool, caller.tenant.id, key_id, overlap)
    new, secret, old = await _found(key_id, change)
    return RotatedKey(
        key=CreatedKey(**KeyView.of(new).model_dump(), secret=secret), previous=KeyView.of(old)
    )
