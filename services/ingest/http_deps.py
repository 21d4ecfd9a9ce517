"""What every route of the HTTP gateway shares: the caller, the service, bodies and problems.

Each group of routes lives in a module of its own and takes its dependencies from here.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from libs.sendable import MAX_MESSAGE_BYTES
from libs.tenants import Tenant
from services.ingest.accept import Ingest
from services.ingest.problems import PROBLEM_JSON, ProblemDocument, ProblemError

MAX_BODY_BYTES = MAX_MESSAGE_BYTES
COMPONENT_REF = "#/components/schemas/{model}"


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses: a problem document for each status."""
    schema = {"$ref": COMPONENT_REF.format(model=ProblemDocument.__name__)}
    return {
        status: {
            "description": HTTPStatus(status).phrase,
            "content": {PROBLEM_JSON: {"schema": schema}},
        }
        for status in statuses
    }


def _ingest(request: Request) -> Ingest:
    ingest: Ingest | None = getattr(request.app.state, "ingest", None)
    if ingest is None:
        raise ProblemError.unavailable("ingest is starting")
    return ingest


IngestDep = Annotated[Ingest, Depends(_ingest)]
_bearer = HTTPBearer(auto_error=False, description="The tenant's API key")


async def _tenant(
    ingest: IngestDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Tenant:
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None:
        raise ProblemError("unauthorized", "send Authorization: Bearer <key>", headers=challenge)
    tenant = await ingest.tenants.by_api_key(credentials.credentials)
    if tenant is None:
        raise ProblemError("unauthorized", "unknown or revoked API key", headers=challenge)
    return tenant


TenantDep = Annotated[Tenant, Depends(_tenant)]


async def json_body(request: Request) -> bytes:
    """The raw body of a JSON request, at most ``MAX_BODY_BYTES`` of it."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/json" and not (
        media_type.startswith("application/") and media_type.endswith("+json")
    ):
        raise ProblemError("unsupported_media_type", "send the body as application/json")
    too_large = ProblemError(
        "payload_too_large", f"the body may have at most {MAX_BODY_BYTES} bytes"
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise too_large
    return bytes(body)
