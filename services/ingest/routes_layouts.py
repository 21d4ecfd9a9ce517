"""``/v1/layouts``: a tenant's shared wrappers (branding, footer, legal text) that template
versions fill through ``{{ content }}``; versioned like templates.

A template version pins the layout version it was saved with, so a new layout version changes
only template versions saved after it. Archiving a layout stops new template versions from
pinning it; those that did keep rendering with it.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel

from libs import template_store
from libs.template_store import (
    HeadPatch,
    Layout,
    LayoutFields,
    LayoutVersionFields,
    TemplateRefused,
)
from libs.templates import LayoutVersion, fetch_layout_version
from libs.tenants import Caller
from services.ingest.accept import Ingest
from services.ingest.http_deps import AdminCaller, IngestDep, ReadCaller, parsed_body, problems
from services.ingest.problems import ProblemError
from services.ingest.routes_keys import json_body_doc
from services.ingest.routes_templates import (
    PathAlias,
    archived_parameter,
    found,
    refused,
    version_number,
)

router = APIRouter(prefix="/v1/layouts", tags=["layouts"])


class LayoutDetail(Layout):
    """A layout's head with its latest version."""

    latest: LayoutVersion | None = None


class LayoutList(BaseModel):
    layouts: list[Layout]


class LayoutVersionList(BaseModel):
    """A layout's versions, newest first."""

    versions: list[LayoutVersion]


async def _detail(ingest: Ingest, head: Layout) -> LayoutDetail:
    latest = await fetch_layout_version(
        ingest.pool, head.tenant_id, head.alias, head.latest_version
    )
    return LayoutDetail(**head.model_dump(), latest=latest)


@router.get("", response_model=LayoutList, responses=problems(401, 403, 422), summary="Layouts")
async def list_layouts(
    ingest: IngestDep, caller: ReadCaller, archived: str | None = None
) -> LayoutList:
    """The tenant's layouts by alias; ``?archived=true``: the archived ones."""
    wanted = archived_parameter(archived)
    return LayoutList(
        layouts=await template_store.list_layouts(ingest.pool, caller.tenant.id, wanted)
    )


@router.post(
    "",
    status_code=201,
    response_model=LayoutDetail,
    responses=problems(400, 401, 403, 409, 415, 422),
    summary="Create a layout with its first version (checked)",
    openapi_extra=json_body_doc(LayoutFields),
)
async def create_layout(request: Request, ingest: IngestDep, caller: AdminCaller) -> LayoutDetail:
    """A new layout; its html and text must parse and hold ``{{ content }}`` (422
    ``invalid_layout`` with each issue otherwise)."""
    body = await parsed_body(request, LayoutFields)
    tenant_id = caller.tenant.id
    try:
        created = await template_store.create_layout(ingest.pool, tenant_id, body, caller.key.id)
    except TemplateRefused as error:
        raise refused(error) from error
    if created is None:
        raise ProblemError("layout_exists", f"layout {body.alias!r} exists already")
    head = await found(
        f"layout {body.alias!r}", template_store.fetch_layout(ingest.pool, tenant_id, body.alias)
    )
    return await _detail(ingest, head)


@router.get(
    "/{alias}",
    response_model=LayoutDetail,
    responses=problems(401, 403, 404),
    summary="A layout and its latest version",
)
async def get_layout(alias: PathAlias, ingest: IngestDep, caller: ReadCaller) -> LayoutDetail:
    head = template_store.fetch_layout(ingest.pool, caller.tenant.id, alias)
    return await _detail(ingest, await found(f"layout {alias!r}", head))


async def _patched(ingest: Ingest, caller: Caller, alias: str, patch: HeadPatch) -> LayoutDetail:
    head = template_store.patch_layout(ingest.pool, caller.tenant.id, alias, patch)
    return await _detail(ingest, await found(f"layout {alias!r}", head))


@router.patch(
    "/{alias}",
    response_model=LayoutDetail,
    responses=problems(400, 401, 403, 404, 415, 422),
    summary="Rename, archive or restore a layout",
    openapi_extra=json_body_doc(HeadPatch),
)
async def patch_layout(
    alias: PathAlias, request: Request, ingest: IngestDep, caller: AdminCaller
) -> LayoutDetail:
    return await _patched(ingest, caller, alias, await parsed_body(request, HeadPatch))


@router.delete(
    "/{alias}",
    response_model=LayoutDetail,
    responses=problems(401, 403, 404),
    summary="Archive a layout (no new template version may pin it)",
)
async def archive_layout(alias: PathAlias, ingest: IngestDep, caller: AdminCaller) -> LayoutDetail:
    return await _patched(ingest, caller, alias, HeadPatch(archived=True))


@router.get(
    "/{alias}/versions",
    response_model=LayoutVersionList,
    responses=problems(401, 403, 404),
    summary="A layout's versions, newest first",
)
async def list_layout_versions(
    alias: PathAlias, ingest: IngestDep, caller: ReadCaller
) -> LayoutVersionList:
    listed = template_store.list_layout_versions(ingest.pool, caller.tenant.id, alias)
    return LayoutVersionList(versions=await found(f"layout {alias!r}", listed))


@router.post(
    "/{alias}/versions",
    status_code=201,
    response_model=LayoutVersion,
    responses=problems(400, 401, 403, 404, 415, 422),
    summary="Add a layout version (checked)",
    openapi_extra=json_body_doc(LayoutVersionFields),
)
async def add_layout_version(
    alias: PathAlias, request: Request, ingest: IngestDep, caller: AdminCaller
) -> LayoutVersion:
    body = await parsed_body(request, LayoutVersionFields)
    added = template_store.add_layout_version(
        ingest.pool, caller.tenant.id, alias, body, caller.key.id
    )
    return await found(f"layout {alias!r}", added)


@router.get(
    "/{alias}/versions/{version}",
    response_model=LayoutVersion,
    responses=problems(401, 403, 404),
    summary="One version of a layout",
)
async def get_layout_version(
    alias: PathAlias, version: str, ingest: IngestDep, caller: ReadCaller
) -> LayoutVersion:
    number = version_number(version)
    return await found(
        f"version {number} of layout {alias!r}",
        fetch_layout_version(ingest.pool, caller.tenant.id, alias, number),
    )
