"""``GET /v1/me``: who a key belongs to and what it may do.

The support console asks it at log-in, to know the tenant to show and which controls to offer;
a script can use it to check a key before it sends.
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from libs.queue_controls import is_operator
from services.ingest.http_deps import AnyCaller, IngestDep, problems

router = APIRouter(tags=["keys"])


class KeyOwner(BaseModel):
    """The caller's tenant and key."""

    tenant_id: str
    tenant_name: str
    key_id: str
    key_name: str
    scopes: list[str]
    operator: bool
    """An admin key of the operator tenant: it sees and steers every tenant."""


@router.get(
    "/v1/me",
    response_model=KeyOwner,
    responses=problems(401),
    summary="The caller's tenant and key",
)
async def me(ingest: IngestDep, caller: AnyCaller) -> KeyOwner:
    return KeyOwner(
        tenant_id=caller.tenant.id,
        tenant_name=caller.tenant.name,
        key_id=caller.key.id,
        key_name=caller.key.settings.name,
        scopes=sorted(scope.value for scope in caller.key.settings.scopes),
        operator=is_operator(caller, ingest.settings),
    )
