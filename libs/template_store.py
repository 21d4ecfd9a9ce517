"""Templates and layouts as a tenant manages them: lists, new versions (checked on save),
activation, archiving, previews. Experiments are ``libs.template_experiments``.

``libs.templates`` holds the stored objects and what the pipeline reads; this module is what the
``/v1/templates`` and ``/v1/layouts`` routes and ``sendarix template|layout`` share.
Every function is scoped to one tenant: another tenant's object is simply not found (None).
A write the platform refuses raises ``TemplateRefused`` with a machine code (a 4xx at the API).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

import asyncpg
from pydantic import BaseModel, ConfigDict, Field, model_validator

from libs.database import Connection
from libs.template_engine import (
    Preview,
    TemplateIssue,
    check_layout,
    check_version,
    preview,
)
from libs.templates import (
    DEFAULT_LOCALE,
    Alias,
    LayoutVersion,
    Locale,
    LocaleContent,
    Template,
    TemplateVariable,
    TemplateVersion,
    add_version,
    fetch_layout_version,
    fetch_template,
    fetch_version,
    layout_version_of,
    template_of,
    version_of,
)
from schemas.common import Category, Problem

Note = Annotated[str, Field(max_length=500)]
VersionNumber = Annotated[int, Field(ge=1, le=2**31 - 1)]
Name = Annotated[str, Field(min_length=1, max_length=200)]


class TemplateRefused(ValueError):
    """A write the platform will not make; ``code`` says why, ``field`` the JSON pointer of the
    part of the body at fault ('' for the whole), ``issues`` what the engine found wrong in
    the sources (``invalid_template`` / ``invalid_layout``)."""

    def __init__(
        self,
        code: str,
        detail: str,
        field: str = "",
        issues: Sequence[tuple[str, TemplateIssue]] = (),
    ) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.field = field
        self.issues = tuple(issues)
        """Each issue with the JSON pointer of the sources it is in."""


def located(issue: TemplateIssue) -> str:
    """An issue as one sentence that says where it is: ``pt-BR html, line 3, column 7: ...``."""
    where = " ".join(part for part in (issue.locale, issue.part) if part)
    if issue.line is not None:
        where += f", line {issue.line}" + (f", column {issue.column}" if issue.column else "")
    return f"{where}: {issue.detail}" if where else issue.detail


def _version_pointer(issue: TemplateIssue) -> str:
    """Where in a version's body the sources of ``issue`` are."""
    if issue.part and issue.part.startswith("layout."):
        return "/layout"
    if issue.locale is None:
        return ""
    return f"/contents/{issue.locale}" + (f"/{issue.part}" if issue.part else "")


def _layout_pointer(issue: TemplateIssue) -> str:
    """Where in a layout version's body the sources of ``issue`` are."""
    return "/" + issue.part.removeprefix("layout.") if issue.part else ""


def _refuse_errors(
    code: str, issues: list[TemplateIssue], where: str, pointer: Callable[[TemplateIssue], str]
) -> None:
    """Refuse sources the engine found errors in (``where``: the pointer of the sources)."""
    errors = [issue for issue in issues if issue.severity == "error"]
    if errors:
        located = [(where + pointer(issue), issue) for issue in errors]
        plural = "s" if len(errors) > 1 else ""
        raise TemplateRefused(code, f"{len(errors)} error{plural} in the sources", where, located)


class Fields(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LayoutRef(Fields):
    """The layout a version is wrapped in: a version number, or the layout's latest one."""

    alias: Alias
    version: VersionNumber | None = None


class VersionFields(Fields):
    """A new template version: every locale's sources, its variables, its layout."""

    contents: dict[Locale, LocaleContent] = Field(min_length=1, max_length=50)
    default_locale: Locale | None = None
    """The locale served when none of a request's fallbacks is there (default: ``en`` when
    the version has it, else its first locale)."""
    variables: list[TemplateVariable] = Field(default_factory=list, max_length=200)
    layout: LayoutRef | None = None
    note: Note | None = None
    activate: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> VersionFields:
        if self.default_locale is not None and self.default_locale not in self.contents:
            raise ValueError(f"default_locale {self.default_locale!r} is not among the contents")
        names = [variable.name for variable in self.variables]
        if len(set(names)) != len(names):
            raise ValueError("a variable is declared twice")
        return self

    def chosen_default_locale(self) -> str:
        if self.default_locale is not None:
            return self.default_locale
        return DEFAULT_LOCALE if DEFAULT_LOCALE in self.contents else next(iter(self.contents))


class TemplateFields(Fields):
    """A new template: its head, and optionally its first version."""

    alias: Alias
    name: Name | None = None
    category: Category | None = None
    version: VersionFields | None = None


class PreviewFields(Fields):
    """What to preview: a version (default: the active one, else the latest), a locale, and
    data (default: the declared variables' examples; given data wins)."""

    version: VersionNumber | None = None
    locale: Locale | None = None
    data: dict[str, Any] | None = None


class HeadPatch(Fields):
    """A change of a template's or layout's head; ``archived: false`` restores it."""

    name: Name | None = None
    category: Category | None = None
    archived: bool | None = None


class LayoutVersionFields(Fields):
    """A new layout version: html and/or text wrappers with ``{{ content }}`` where the body
    goes."""

    html: Annotated[str, Field(max_length=1_000_000)] | None = None
    text: Annotated[str, Field(max_length=1_000_000)] | None = None
    note: Note | None = None

    @model_validator(mode="after")
    def _has_a_wrapper(self) -> LayoutVersionFields:
        if self.html is None and self.text is None:
            raise ValueError("give html, text or both")
        return self


class LayoutFields(Fields):
    """A new layout and its first version."""

    alias: Alias
    name: Name | None = None
    version: LayoutVersionFields


class Layout(BaseModel):
    """A layout's head."""

    tenant_id: str
    alias: str
    name: str
    latest_version: int
    archived_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


def _tenant(tenant_id: str) -> uuid.UUID:
    return uuid.UUID(tenant_id)


def _layout_of(row: asyncpg.Record) -> Layout:
    return Layout.model_validate(dict(row) | {"tenant_id": str(row["tenant_id"])})


HeadTable = Literal["templates", "layouts"]


async def _heads(
    pool: asyncpg.Pool, table: HeadTable, tenant_id: str, archived: bool
) -> list[asyncpg.Record]:
    """The tenant's heads in ``table`` (archived ones, or the others), by alias."""
    archive = "archived_at IS NOT NULL" if archived else "archived_at IS NULL"
    return await pool.fetch(
        f"SELECT * FROM {table} WHERE tenant_id = $1 AND {archive} ORDER BY alias",
        _tenant(tenant_id),
    )


async def _versions(
    pool: asyncpg.Pool, table: HeadTable, tenant_id: str, alias: str
) -> list[asyncpg.Record] | None:
    """Every version of the head ``alias`` in ``table``, newest first (None: no such head)."""
    head = await pool.fetchval(
        f"SELECT true FROM {table} WHERE tenant_id = $1 AND alias = $2", _tenant(tenant_id), alias
    )
    if head is None:
        return None
    return await pool.fetch(
        f"SELECT * FROM {table.removesuffix('s')}_versions WHERE tenant_id = $1 AND alias = $2"
        " ORDER BY version DESC",
        _tenant(tenant_id),
        alias,
    )


async def list_templates(
    pool: asyncpg.Pool, tenant_id: str, archived: bool = False
) -> list[Template]:
    """The tenant's templates (archived ones, or the others), by alias."""
    return [template_of(row) for row in await _heads(pool, "templates", tenant_id, archived)]


async def resolve_layout(
    pool: asyncpg.Pool, tenant_id: str, layout: LayoutRef | None, where: str
) -> LayoutVersion | None:
    """The layout version ``layout`` names (its latest when no number is given); refused as
    ``unknown_layout`` when the tenant has no such layout, version, or the layout is archived."""
    if layout is None:
        return None
    row = await pool.fetchrow(
        "SELECT v.* FROM layouts l JOIN layout_versions v USING (tenant_id, alias)"
        " WHERE l.tenant_id = $1 AND l.alias = $2 AND l.archived_at IS NULL"
        " AND v.version = coalesce($3, l.latest_version)",
        _tenant(tenant_id),
        layout.alias,
        layout.version,
    )
    if row is None:
        which = f"version {layout.version} of " if layout.version else ""
        raise TemplateRefused(
            "unknown_layout", f"no {which}layout {layout.alias!r} to pin", where + "/layout"
        )
    return layout_version_of(row)


async def create_template(
    pool: asyncpg.Pool,
    tenant_id: str,
    fields: TemplateFields,
    first: CheckedVersion | None = None,
    created_by: str | None = None,
) -> tuple[Template, SavedVersion | None] | None:
    """A new template's head and, given ``first``, its first version, written together (None:
    the tenant has a template of that alias already)."""
    async with pool.acquire() as connection, connection.transaction():
        row = await connection.fetchrow(
            "INSERT INTO templates (tenant_id, alias, name, category) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT DO NOTHING RETURNING *",
            _tenant(tenant_id),
            fields.alias,
            fields.name or fields.alias,
            fields.category,
        )
        if row is None:
            return None
        if first is None:
            return template_of(row), None
        saved = await save_version(connection, tenant_id, fields.alias, first, created_by)
        head = await fetch_template(connection, tenant_id, fields.alias)
    assert saved is not None and head is not None
    return head, saved


@dataclass(frozen=True)
class CheckedVersion:
    """A new version's fields, checked, with the layout version it pins."""

    fields: VersionFields
    layout: LayoutVersion | None
    warnings: list[TemplateIssue]


class SavedVersion(TemplateVersion):
    """A version just saved, with what the checks found doubtful in it."""

    warnings: list[TemplateIssue]


async def check_new_version(
    pool: asyncpg.Pool, tenant_id: str, fields: VersionFields, where: str = ""
) -> CheckedVersion:
    """``fields`` checked as the next version of a template (``where``: the JSON pointer of
    the version in the body, for refusals): refused as ``invalid_template`` with the engine's
    errors (syntax with line and column, undeclared variables, a layout without a slot)."""
    layout = await resolve_layout(pool, tenant_id, fields.layout, where)
    issues = check_version(fields.contents, fields.variables, layout)
    _refuse_errors("invalid_template", issues, where, _version_pointer)
    return CheckedVersion(fields, layout, issues)


async def save_version(
    executor: asyncpg.Pool | Connection,
    tenant_id: str,
    alias: str,
    checked: CheckedVersion,
    created_by: str | None = None,
) -> SavedVersion | None:
    """The next version of ``alias`` (None: no such template)."""
    fields, layout = checked.fields, checked.layout
    try:
        saved = await add_version(
            executor,
            tenant_id,
            alias,
            fields.contents,
            default_locale=fields.chosen_default_locale(),
            variables=fields.variables,
            layout=(layout.alias, layout.version) if layout else None,
            note=fields.note,
            created_by=created_by,
            activate=fields.activate,
        )
    except LookupError:
        return None
    return SavedVersion(**saved.model_dump(), warnings=checked.warnings)


async def list_versions(
    pool: asyncpg.Pool, tenant_id: str, alias: str
) -> list[TemplateVersion] | None:
    """Every version of a template, newest first (None: no such template)."""
    rows = await _versions(pool, "templates", tenant_id, alias)
    return None if rows is None else [version_of(row) for row in rows]


async def preview_template(
    pool: asyncpg.Pool, tenant_id: str, alias: str, fields: PreviewFields
) -> Preview | Problem | None:
    """A version of ``alias`` rendered as the preview asks, inside its pinned layout (None:
    no such template or version)."""
    head = await fetch_template(pool, tenant_id, alias)
    number = fields.version or (head and (head.active_version or head.latest_version))
    if not number:
        return None
    version = await fetch_version(pool, tenant_id, alias, number)
    if version is None:
        return None
    layout = (
        await fetch_layout_version(pool, tenant_id, *version.layout) if version.layout else None
    )
    return preview(version, layout, fields.data, fields.locale)


async def activate_version(
    pool: asyncpg.Pool, tenant_id: str, alias: str, version: int
) -> Template | None:
    """Make ``version`` the active one (a roll back is activating an older one); None: the
    tenant has no such template or version."""
    row = await pool.fetchrow(
        "UPDATE templates t SET active_version = $3, updated_at = now()"
        " WHERE tenant_id = $1 AND alias = $2 AND EXISTS (SELECT 1 FROM template_versions v"
        " WHERE v.tenant_id = t.tenant_id AND v.alias = t.alias AND v.version = $3)"
        " RETURNING *",
        _tenant(tenant_id),
        alias,
        version,
    )
    return template_of(row) if row else None


async def _patch_head(
    pool: asyncpg.Pool, table: HeadTable, tenant_id: str, alias: str, patch: HeadPatch
) -> asyncpg.Record | None:
    """Apply ``patch`` to the head row of a template or layout (``table``)."""
    arguments: list[object] = [_tenant(tenant_id), alias]
    changes = ["updated_at = now()"]
    given = patch.model_dump(include=patch.model_fields_set, exclude={"archived"})
    for column, value in given.items():
        if value is not None or column == "category":
            arguments.append(value)
            changes.append(f"{column} = ${len(arguments)}")
    if patch.archived is not None:
        changes.append(
            "archived_at = " + ("coalesce(archived_at, now())" if patch.archived else "NULL")
        )
    return await pool.fetchrow(
        f"UPDATE {table} SET {', '.join(changes)} WHERE tenant_id = $1 AND alias = $2 RETURNING *",
        *arguments,
    )


async def patch_template(
    pool: asyncpg.Pool, tenant_id: str, alias: str, patch: HeadPatch
) -> Template | None:
    """Rename, recategorise, archive (sends refused, versions kept) or restore a template."""
    row = await _patch_head(pool, "templates", tenant_id, alias, patch)
    return template_of(row) if row else None


async def list_layouts(pool: asyncpg.Pool, tenant_id: str, archived: bool = False) -> list[Layout]:
    """The tenant's layouts (archived ones, or the others), by alias."""
    return [_layout_of(row) for row in await _heads(pool, "layouts", tenant_id, archived)]


async def fetch_layout(pool: asyncpg.Pool, tenant_id: str, alias: str) -> Layout | None:
    row = await pool.fetchrow(
        "SELECT * FROM layouts WHERE tenant_id = $1 AND alias = $2", _tenant(tenant_id), alias
    )
    return _layout_of(row) if row else None


async def create_layout(
    pool: asyncpg.Pool, tenant_id: str, fields: LayoutFields, created_by: str | None = None
) -> LayoutVersion | None:
    """A new layout with its first version (None: the tenant has that alias already)."""
    async with pool.acquire() as connection, connection.transaction():
        created = await connection.fetchval(
            "INSERT INTO layouts (tenant_id, alias, name) VALUES ($1, $2, $3)"
            " ON CONFLICT DO NOTHING RETURNING true",
            _tenant(tenant_id),
            fields.alias,
            fields.name or fields.alias,
        )
        if not created:
            return None
        return await _next_layout_version(
            connection, tenant_id, fields.alias, fields.version, created_by, "/version"
        )


async def add_layout_version(
    pool: asyncpg.Pool,
    tenant_id: str,
    alias: str,
    fields: LayoutVersionFields,
    created_by: str | None = None,
) -> LayoutVersion | None:
    """The next version of a layout (None: no such layout). Template versions keep the layout
    version they pinned; a new template version pins this one unless it names another."""
    async with pool.acquire() as connection, connection.transaction():
        return await _next_layout_version(connection, tenant_id, alias, fields, created_by)


async def _next_layout_version(
    connection: Connection,
    tenant_id: str,
    alias: str,
    fields: LayoutVersionFields,
    created_by: str | None,
    where: str = "",
) -> LayoutVersion | None:
    """Write the next version of a layout, numbered under the head's row lock; refused as
    ``invalid_layout`` when its sources do not parse or lack ``{{ content }}``."""
    _refuse_errors("invalid_layout", check_layout(fields.html, fields.text), where, _layout_pointer)
    number = await connection.fetchval(
        "UPDATE layouts SET latest_version = latest_version + 1, updated_at = now()"
        " WHERE tenant_id = $1 AND alias = $2 RETURNING latest_version",
        _tenant(tenant_id),
        alias,
    )
    if number is None:
        return None
    row = await connection.fetchrow(
        "INSERT INTO layout_versions (tenant_id, alias, version, html, text, note, created_by)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *",
        _tenant(tenant_id),
        alias,
        number,
        fields.html,
        fields.text,
        fields.note,
        created_by,
    )
    assert row is not None
    return layout_version_of(row)


async def list_layout_versions(
    pool: asyncpg.Pool, tenant_id: str, alias: str
) -> list[LayoutVersion] | None:
    """Every version of a layout, newest first (None: no such layout)."""
    rows = await _versions(pool, "layouts", tenant_id, alias)
    return None if rows is None else [layout_version_of(row) for row in rows]


async def patch_layout(
    pool: asyncpg.Pool, tenant_id: str, alias: str, patch: HeadPatch
) -> Layout | None:
    """Rename, archive (no new template version may pin it; pinned versions keep it) or
    restore a layout."""
    if "category" in patch.model_fields_set:
        raise TemplateRefused("invalid_request", "a layout has no category", "/category")
    row = await _patch_head(pool, "layouts", tenant_id, alias, patch)
    return _layout_of(row) if row else None
