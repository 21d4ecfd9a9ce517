"""What every route of the HTTP gateway shares: the caller, the service, bodies and problems.

Each group of routes lives in a module of its own and takes its dependencies from here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import cache
from http import HTTPStatus
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from libs.keys import Scope
from libs.queue_controls import is_operator
from libs.sendable import MAX_MESSAGE_BYTES
from libs.tenants import Caller
from services.ingest.accept import Ingest
from services.ingest.problems import PROBLEM_JSON, ProblemDocument, ProblemError
from services.ingest.validate import parse_request

MAX_BODY_BYTES = MAX_MESSAGE_BYTES
COMPONENT_REF = "#/components/schemas/{model}"
ModelT = TypeVar("ModelT", bound=BaseModel)


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


async def _caller(
    ingest: IngestDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None:
        raise ProblemError("unauthorized", "send Authorization: Bearer <key>", headers=challenge)
    caller = await ingest.tenants.caller(credentials.credentials)
    if caller is None:
        raise ProblemError("unauthorized", "unknown, revoked or expired API key", headers=challenge)
    return caller


@cache
def scoped(scope: Scope | str) -> Callable[..., Awaitable[Caller]]:
    """A dependency that yields the caller if its key has ``scope`` (403 ``forbidden`` if not):
    ``caller: Annotated[Caller, Depends(scoped("read"))]``."""
    needed = Scope(scope)

    async def caller_with_scope(caller: Annotated[Caller, Depends(_caller)]) -> Caller:
        if needed not in caller.key.settings.scopes:
            raise ProblemError("forbidden", f"this API key lacks the {needed.value!r} scope")
        return caller

    return caller_with_scope


AnyCaller = Annotated[Caller, Depends(_caller)]
"""Any valid key, whatever its scopes."""
SendCaller = Annotated[Caller, Depends(scoped(Scope.SEND))]
ReadCaller = Annotated[Caller, Depends(scoped(Scope.READ))]
AdminCaller = Annotated[Caller, Depends(scoped(Scope.ADMIN))]


def charge_send(ingest: Ingest, caller: Caller, messages: int) -> None:
    """Spend ``messages`` of the caller's send rate, or answer 429 with ``Retry-After``."""
    if wait := ingest.send_rates.retry_after(caller, messages):
        raise ProblemError(
            "rate_limited",
            f"over the send rate of this tenant or key; retry in {wait} s",
            headers={"Retry-After": str(wait)},
        )


def seen_as(ingest: Ingest, caller: Caller) -> str | None:
    """The tenant whose messages and figures the caller sees; None: an operator, who sees them
    all."""
    return None if is_operator(caller, ingest.settings) else caller.tenant.id


def searched_tenant(ingest: Ingest, caller: Caller, requested: str | None) -> str | None:
    """The tenant a search covers: the one an operator names (None: every tenant), a tenant's
    own always; a tenant naming another is refused with ``operator_only``."""
    own = seen_as(ingest, caller)
    if own is None:
        return requested
    if requested not in (None, own):
        raise ProblemError("operator_only", "only an operator searches another tenant's messages")
    return own


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
    if declared.isascii() and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise too_large
    return bytes(body)


async def parsed_body(request: Request, model: type[ModelT]) -> ModelT:
    """The JSON body as ``model``, or a problem naming each bad field."""
    parsed = parse_request(await json_body(request), model, stored_as_is=True)
    if isinstance(parsed, list):
        raise ProblemError.of(parsed)
    return parsed


async def optional_body(request: Request, model: type[ModelT]) -> ModelT:
    """The JSON body as ``model`` when there is one, else ``model``'s defaults."""
    has_body = request.headers.get("content-length", "0") != "0" or "content-type" in (
        request.headers
    )
    return await parsed_body(request, model) if has_body else model()
