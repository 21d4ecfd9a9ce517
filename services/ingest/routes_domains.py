"""``/v1/domains``: a tenant's sending domains, the DNS records to publish, and their checks.

A domain added here gets its DKIM key at once; it may send once ``POST …/verify`` (or ingest's
periodic re-check) found its required records, or at once when added in dev mode. The ingest
process answering the change learns of it at once, the others within their tenant cache's
lifetime (``libs.tenants.TENANT_TTL_SECONDS``).
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from libs.domain_verification import verify_domain
from libs.domain_views import DomainView
from libs.sending_domains import (
    InvalidDomain,
    SendingDomain,
    add_domain,
    domain_count,
    normalise_domain,
    remove_domain,
    sending_domain,
    sending_domains,
)
from services.ingest.http_deps import AdminCaller, IngestDep, ReadCaller, json_body, problems
from services.ingest.problems import ProblemError
from services.ingest.validate import Violation, parse_request, pointer

MAX_DOMAINS_PER_TENANT = 100
"""Sending domains a tenant may have: each costs a key made and a DNS check every day."""

router = APIRouter(prefix="/v1/domains", tags=["domains"])


class AddDomainRequest(BaseModel):
    """``POST /v1/domains``: the domain to send from (an IDN is stored as punycode)."""

    domain: str = Field(min_length=1, max_length=1024)


class DomainList(BaseModel):
    """Every sending domain of the caller's tenant, by name."""

    domains: list[DomainView]


def _not_found(domain: str) -> ProblemError:
    return ProblemError("not_found", f"no sending domain {domain!r}")


async def _domain_of(ingest: IngestDep, tenant_id: str, domain: str) -> SendingDomain:
    """The tenant's domain named in the path (in any form normalising to it), or 404."""
    try:
        name = normalise_domain(domain)
    except InvalidDomain:
        raise _not_found(domain) from None
    found = await sending_domain(ingest.pool, tenant_id, name)
    if found is None:
        raise _not_found(domain)
    return found


@router.get("", response_model=DomainList, responses=problems(401, 403), summary="List domains")
async def list_domains(ingest: IngestDep, caller: ReadCaller) -> DomainList:
    """The tenant's sending domains with their records and last checks."""
    found = await sending_domains(ingest.pool, caller.tenant.id)
    return DomainList(domains=[DomainView.of(d, ingest.settings) for d in found])


@router.post(
    "",
    status_code=201,
    response_model=DomainView,
    responses=problems(400, 401, 403, 409, 413, 415, 422),
    summary="Add a sending domain; answers the DNS records to publish",
)
async def create_domain(request: Request, ingest: IngestDep, caller: AdminCaller) -> DomainView:
    """Add a domain with a new DKIM key; 409 when the tenant has it already, or has as many
    domains as a tenant may (each costs a key made and a DNS check every day)."""
    parsed = parse_request(await json_body(request), AddDomainRequest, stored_as_is=True)
    if isinstance(parsed, list):
        raise ProblemError.of(parsed)
    try:
        name = normalise_domain(parsed.domain)
    except InvalidDomain as error:
        refusal = Violation("invalid_domain", pointer("domain"), str(error))
        raise ProblemError.of([refusal]) from None
    if await domain_count(ingest.pool, caller.tenant.id) >= MAX_DOMAINS_PER_TENANT:
        raise ProblemError(
            "domain_limit_reached",
            f"a tenant may have {MAX_DOMAINS_PER_TENANT} sending domains; delete one first",
        )
    added = await add_domain(ingest.pool, caller.tenant.id, name, ingest.settings.dev_mode)
    ingest.tenants.forget(caller.tenant.id)
    if added is None:
        raise ProblemError("domain_exists", f"{name} is one of this tenant's domains already")
    return DomainView.of(added, ingest.settings)


@router.get(
    "/{domain}",
    response_model=DomainView,
    responses=problems(401, 403, 404),
    summary="A domain: its status, the records to publish and what the last check found",
)
async def get_domain(domain: str, ingest: IngestDep, caller: ReadCaller) -> DomainView:
    return DomainView.of(await _domain_of(ingest, caller.tenant.id, domain), ingest.settings)


@router.delete(
    "/{domain}", status_code=204, responses=problems(401, 403, 404), summary="Remove a domain"
)
async def delete_domain(domain: str, ingest: IngestDep, caller: AdminCaller) -> Response:
    """Forget the domain and its key: mail from it is refused from then on."""
    found = await _domain_of(ingest, caller.tenant.id, domain)
    removed = await remove_domain(ingest.pool, caller.tenant.id, found.domain)
    ingest.tenants.forget(caller.tenant.id)
    if not removed:
        raise _not_found(domain)
    return Response(status_code=204)


@router.post(
    "/{domain}/verify",
    response_model=DomainView,
    responses=problems(401, 403, 404),
    summary="Check the domain's DNS records now",
)
async def verify(domain: str, ingest: IngestDep, caller: AdminCaller) -> DomainView:
    """Look every record up now; the answer has the status and the reason per record."""
    found = await _domain_of(ingest, caller.tenant.id, domain)
    checked = await verify_domain(ingest.pool, ingest.settings, found)
    ingest.tenants.forget(caller.tenant.id)
    if checked is None:
        raise _not_found(domain)
    return DomainView.of(checked, ingest.settings)
