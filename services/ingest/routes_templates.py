"""``/v1/templates``: a tenant's templates, their immutable versions, which one is active.

Always the caller's tenant's templates: another tenant's is not found (404). Reading needs the
``read`` scope, writing ``admin``. Deleting a template archives it (sends naming it are refused,
its versions are kept; ``PATCH {"archived": false}`` restores it). Activating a version (or an
older one: a roll back) applies to this process at once and to the others within
``libs.templates.TEMPLATE_TTL_SECONDS``; mail already accepted keeps the version it was given.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable
from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from libs import template_store
from libs.template_engine import Preview, TemplateIssue
from libs.template_store import (
    CheckedVersion,
    HeadPatch,
    PreviewFields,
    SavedVersion,
    TemplateFields,
    TemplateRefused,
    VersionFields,
    located,
)
from libs.templates import (
    ALIAS,
    Template,
    TemplateVersion,
    fetch_template,
    fetch_version,
)
from libs.tenants import Caller
from schemas.common import Problem
from schemas.pipeline import RenderedContent
from services.ingest.accept import Ingest
from services.ingest.http_deps import (
    AdminCaller,
    IngestDep,
    ReadCaller,
    optional_body,
    parsed_body,
    problems,
)
from services.ingest.problems import ProblemError
from services.ingest.routes_keys import json_body_doc
from services.ingest.search import bad_parameter
from services.ingest.validate import Violation

router = APIRouter(prefix="/v1/templates", tags=["templates"])
T = TypeVar("T")


class TemplateDetail(Template):
    """A template's head with its active version (null: none activated yet)."""

    active: TemplateVersion | None = None


class CreatedTemplate(TemplateDetail):
    """A new template, and its first version when the body gave one."""

    version: SavedVersion | None = None


class PreviewView(RenderedContent):
    """A version rendered for its author (``locale``: the one rendered, after the fallback
    chain), with what a reader might trip over."""

    warnings: list[TemplateIssue]


class TemplateList(BaseModel):
    templates: list[Template]


class VersionList(BaseModel):
    """A template's versions, newest first."""

    versions: list[TemplateVersion]


def refused(error: TemplateRefused) -> ProblemError:
    """The problem that answers a refused write; sources the engine refused list each issue
    (``errors``: pointer and sentence; ``issues``: code, locale, part, line, column)."""
    if not error.issues:
        return ProblemError(
            error.code, error.detail, [Violation(error.code, error.field, error.detail)]
        )
    return ProblemError(
        error.code,
        error.detail,
        [Violation(error.code, pointer, located(issue)) for pointer, issue in error.issues],
        extensions={
            "issues": [
                issue.model_dump(mode="json") | {"pointer": pointer}
                for pointer, issue in error.issues
            ]
        },
    )


async def found(what: str, lookup: Awaitable[T | None]) -> T:
    """What a look-up or change returned: 404 ``not_found`` when the tenant has no such thing;
    a refused write as its problem."""
    try:
        result = await lookup
    except TemplateRefused as error:
        raise refused(error) from error
    if result is None:
        raise ProblemError("not_found", f"no {what}")
    return result


def known_alias(alias: str) -> str:
    """An alias in a path; one no template or layout can have is not found (never a query)."""
    if not re.fullmatch(ALIAS, alias):
        raise ProblemError("not_found", f"no template or layout {alias!r}")
    return alias


PathAlias = Annotated[str, Depends(known_alias)]


def archived_parameter(text: str | None) -> bool:
    """``?archived=true`` lists the archived ones instead of the others."""
    if text in (None, "false"):
        return False
    if text == "true":
        return True
    raise ProblemError.of([bad_parameter("archived", "true or false")])


def version_number(text: str) -> int:
    """A version number in a path; anything else names no version (404)."""
    if not text.isascii() or not text.isdigit() or len(text) > 9:
        raise ProblemError("not_found", f"no version {text!r}")
    return int(text)


async def _detail(ingest: Ingest, head: Template) -> TemplateDetail:
    active = (
        await fetch_version(ingest.pool, head.tenant_id, head.alias, head.active_version)
        if head.active_version is not None
        else None
    )
    return TemplateDetail(**head.model_dump(), active=active)


async def _checked(
    ingest: Ingest, tenant_id: str, fields: VersionFields, where: str
) -> CheckedVersion:
    """A new version checked, or the problem that refuses it."""
    try:
        return await template_store.check_new_version(ingest.pool, tenant_id, fields, where)
    except TemplateRefused as error:
        raise refused(error) from error


async def _saved_version(
    ingest: Ingest, tenant_id: str, alias: str, checked: CheckedVersion, by: str
) -> SavedVersion | None:
    """A new version of ``alias``, applied here at once when it is activated."""
    saved = await template_store.save_version(ingest.pool, tenant_id, alias, checked, by)
    if saved is not None and checked.fields.activate:
        ingest.templates.discard(tenant_id, alias)
    return saved


@router.get(
    "",
    response_model=TemplateList,
    responses=problems(401, 403, 422),
    summary="List templates",
)
async def list_templates(
    ingest: IngestDep, caller: ReadCaller, archived: str | None = None
) -> TemplateList:
    """The tenant's templates by alias; ``?archived=true``: the archived ones."""
    wanted = archived_parameter(archived)
    return TemplateList(
        templates=await template_store.list_templates(ingest.pool, caller.tenant.id, wanted)
    )


@router.post(
    "",
    status_code=201,
    response_model=CreatedTemplate,
    responses=problems(400, 401, 403, 409, 415, 422),
    summary="Create a template (and its first version)",
    openapi_extra=json_body_doc(TemplateFields),
)
async def create_template(
    request: Request, ingest: IngestDep, caller: AdminCaller
) -> CreatedTemplate:
    """A new template; with ``version``, its first version too (``activate`` to make it the
    active one at once)."""
    body = await parsed_body(request, TemplateFields)
    tenant_id = caller.tenant.id
    first = await _checked(ingest, tenant_id, body.version, "/version") if body.version else None
    created = await template_store.create_template(
        ingest.pool, tenant_id, body, first, caller.key.id
    )
    if created is None:
        raise ProblemError("template_exists", f"template {body.alias!r} exists already")
    head, version = created
    if version is not None and body.version is not None and body.version.activate:
        ingest.templates.discard(tenant_id, body.alias)
    detail = await _detail(ingest, head)
    return CreatedTemplate(**detail.model_dump(), version=version)


@router.get(
    "/{alias}",
    response_model=TemplateDetail,
    responses=problems(401, 403, 404),
    summary="A template and its active version",
)
async def get_template(alias: PathAlias, ingest: IngestDep, caller: ReadCaller) -> TemplateDetail:
    head = await found(f"template {alias!r}", fetch_template(ingest.pool, caller.tenant.id, alias))
    return await _detail(ingest, head)


async def _patched(ingest: Ingest, caller: Caller, alias: str, patch: HeadPatch) -> TemplateDetail:
    """The template after ``patch``, applied here at once (an archived one is not sent)."""
    head = await found(
        f"template {alias!r}",
        template_store.patch_template(ingest.pool, caller.tenant.id, alias, patch),
    )
    ingest.templates.discard(caller.tenant.id, alias)
    return await _detail(ingest, head)


@router.patch(
    "/{alias}",
    response_model=TemplateDetail,
    responses=problems(400, 401, 403, 404, 415, 422),
    summary="Rename, recategorise, archive or restore a template",
    openapi_extra=json_body_doc(HeadPatch),
)
async def patch_template(
    alias: PathAlias, request: Request, ingest: IngestDep, caller: AdminCaller
) -> TemplateDetail:
    return await _patched(ingest, caller, alias, await parsed_body(request, HeadPatch))


@router.delete(
    "/{alias}",
    response_model=TemplateDetail,
    responses=problems(401, 403, 404),
    summary="Archive a template (sends refused, versions kept)",
)
async def archive_template(
    alias: PathAlias, ingest: IngestDep, caller: AdminCaller
) -> TemplateDetail:
    return await _patched(ingest, caller, alias, HeadPatch(archived=True))


@router.get(
    "/{alias}/versions",
    response_model=VersionList,
    responses=problems(401, 403, 404),
    summary="A template's versions, newest first",
)
async def list_versions(alias: PathAlias, ingest: IngestDep, caller: ReadCaller) -> VersionList:
    versions = await found(
        f"template {alias!r}", template_store.list_versions(ingest.pool, caller.tenant.id, alias)
    )
    return VersionList(versions=versions)


@router.post(
    "/{alias}/versions",
    status_code=201,
    response_model=SavedVersion,
    responses=problems(400, 401, 403, 404, 415, 422),
    summary="Add a version (checked; activated at once with activate)",
    openapi_extra=json_body_doc(VersionFields),
)
async def add_version(
    alias: PathAlias, request: Request, ingest: IngestDep, caller: AdminCaller
) -> SavedVersion:
    """The next version of the template. ``layout`` pins ``{alias, version}`` (default: the
    layout's latest version). Checked first: sources that do not parse (with line and column),
    variables read but not declared, a layout without ``{{ content }}`` are 422
    ``invalid_template`` with each issue; what is only doubtful comes back as ``warnings``."""
    body = await parsed_body(request, VersionFields)
    tenant_id = caller.tenant.id
    checked = await _checked(ingest, tenant_id, body, "")
    saved = _saved_version(ingest, tenant_id, alias, checked, caller.key.id)
    return await found(f"template {alias!r}", saved)


@router.get(
    "/{alias}/versions/{version}",
    response_model=TemplateVersion,
    responses=problems(401, 403, 404),
    summary="One version of a template",
)
async def get_version(
    alias: PathAlias, version: str, ingest: IngestDep, caller: ReadCaller
) -> TemplateVersion:
    number = version_number(version)
    return await found(
        f"version {number} of template {alias!r}",
        fetch_version(ingest.pool, caller.tenant.id, alias, number),
    )


@router.post(
    "/{alias}/versions/{version}/activate",
    response_model=TemplateDetail,
    responses=problems(401, 403, 404),
    summary="Make a version the active one (or roll back to an older one)",
)
async def activate_version(
    alias: PathAlias, version: str, ingest: IngestDep, caller: AdminCaller
) -> TemplateDetail:
    """New sends get this version; mail accepted before keeps the version it was given."""
    number = version_number(version)
    head = await found(
        f"version {number} of template {alias!r}",
        template_store.activate_version(ingest.pool, caller.tenant.id, alias, number),
    )
    ingest.templates.discard(caller.tenant.id, alias)
    return await _detail(ingest, head)


@router.post(
    "/{alias}/render",
    response_model=PreviewView,
    responses=problems(400, 401, 403, 404, 415, 422),
    summary="Preview a version with sample data",
    openapi_extra=json_body_doc(PreviewFields, required=False),
)
async def preview_template(
    alias: PathAlias, request: Request, ingest: IngestDep, caller: ReadCaller
) -> PreviewView:
    """The subject, html and text a version renders (default: the active one, else the
    latest) in ``locale``, inside its layout, with ``data`` (default: the declared variables'
    examples). Warnings: optional data missing, very long values or subject, images without
    alt text, links that are not https, a locale fallback. A render that fails is 422 with
    the reason (``render_failed``, ``render_limit_exceeded``, ``content_too_large``)."""
    body = await optional_body(request, PreviewFields)
    rendered: Preview | Problem = await found(
        f"version to preview of template {alias!r}",
        template_store.preview_template(ingest.pool, caller.tenant.id, alias, body),
    )
    if isinstance(rendered, Problem):
        raise ProblemError(rendered.code, rendered.detail)
    return PreviewView(**rendered.content.model_dump(), warnings=rendered.warnings)
