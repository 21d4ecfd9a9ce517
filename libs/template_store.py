"""Templates, layouts and experiments as a tenant manages them: lists, new versions, activation,
archiving, experiments and their outcomes.

``libs.templates`` holds the stored objects and what the pipeline reads; this module is what the
``/v1/templates`` and ``/v1/layouts`` routes and ``sendarix template|layout|experiment`` share.
Every function is scoped to one tenant: another tenant's object is simply not found (None).
A write the platform refuses raises ``TemplateRefused`` with a machine code (a 4xx at the API).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from libs.analytics import Granularity
from libs.analytics_report import MAX_BUCKETS, AnalyticsQuery, read_report
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
    Experiment,
    LayoutVersion,
    Locale,
    LocaleContent,
    Template,
    TemplateVariable,
    TemplateVersion,
    add_version,
    experiment_of,
    fetch_layout_version,
    fetch_template,
    fetch_version,
    layout_version_of,
    template_of,
    version_of,
)
from schemas.common import Category, Lane, Problem, Stream, natural_lane
from schemas.events import MessageState

MAX_EXPERIMENT = timedelta(days=90)
"""The longest an experiment may run: a cohort is a test, not a second production version."""
MAX_EXPERIMENT_PERCENT = 50
OUTCOME_STATES = (
    MessageState.ACCEPTED,
    MessageState.DELIVERED,
    MessageState.BOUNCED,
    MessageState.COMPLAINED,
    MessageState.DEFERRED,
    MessageState.FAILED,
)
Connection = asyncpg.Connection | PoolConnectionProxy
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


class ExperimentFields(Fields):
    """A new experiment: ``percent`` of recipients get ``variant_version`` until ``ends_at``."""

    variant_version: VersionNumber
    percent: float = Field(ge=0.01, le=MAX_EXPERIMENT_PERCENT)
    """Kept to two decimals."""
    starts_at: AwareDatetime | None = None
    """Default: now; at most 90 days ahead."""
    ends_at: AwareDatetime
    override_critical: bool = False
    """Run it on a critical-lane template (OTP, password reset, ...) all the same."""


Role = Literal["control", "variant"]


class VersionOutcome(BaseModel):
    """How the mail of one version of the template fared over the experiment's window."""

    version: int
    role: Role
    counts: dict[str, int]
    delivered_p50_ms: float | None
    delivered_p99_ms: float | None


class ExperimentReport(BaseModel):
    """An experiment with the outcomes of its control (the template's active version) and
    its variant."""

    experiment: Experiment
    running: bool
    window_start: datetime
    window_end: datetime
    outcomes: list[VersionOutcome]


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
    pool: asyncpg.Pool, tenant_id: str, fields: TemplateFields
) -> Template | None:
    """A new template's head (None: the tenant has a template of that alias already)."""
    row = await pool.fetchrow(
        "INSERT INTO templates (tenant_id, alias, name, category) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT DO NOTHING RETURNING *",
        _tenant(tenant_id),
        fields.alias,
        fields.name or fields.alias,
        fields.category,
    )
    return template_of(row) if row else None


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
    pool: asyncpg.Pool,
    tenant_id: str,
    alias: str,
    checked: CheckedVersion,
    created_by: str | None = None,
) -> SavedVersion | None:
    """The next version of ``alias`` (None: no such template)."""
    fields, layout = checked.fields, checked.layout
    try:
        saved = await add_version(
            pool,
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
        await fetch_layout_version(pool, tenant_id, version.layout_alias, version.layout_version)
        if version.layout_alias and version.layout_version
        else None
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


def critical(template: Template) -> bool:
    """Whether the template's mail travels in the critical lane (security mail: no
    experiments unless the tenant overrides it)."""
    return natural_lane(template.category, Stream.TRANSACTIONAL) is Lane.CRITICAL


def _experiment_refusal(
    template: Template, fields: ExperimentFields, starts_at: datetime, now: datetime
) -> TemplateRefused | None:
    if critical(template) and not fields.override_critical:
        return TemplateRefused(
            "experiment_not_allowed",
            f"template {template.alias!r} is {template.category} mail (critical lane): keep"
            " security flows stable, or set override_critical",
            "/override_critical",
        )
    if template.archived_at is not None:
        return TemplateRefused("template_archived", f"template {template.alias!r} is archived")
    if template.active_version is None:
        return TemplateRefused(
            "invalid_experiment",
            "activate a version first: it is what the variant is tried against",
        )
    if fields.variant_version == template.active_version:
        return TemplateRefused(
            "invalid_experiment",
            f"version {fields.variant_version} is the active version already",
            "/variant_version",
        )
    if fields.variant_version > template.latest_version:
        return TemplateRefused(
            "invalid_experiment",
            f"template {template.alias!r} has no version {fields.variant_version}",
            "/variant_version",
        )
    if starts_at > now + MAX_EXPERIMENT:
        return TemplateRefused(
            "invalid_experiment",
            f"an experiment starts within {MAX_EXPERIMENT.days} days",
            "/starts_at",
        )
    if fields.ends_at <= max(starts_at, now):
        return TemplateRefused("invalid_experiment", "ends_at must be ahead", "/ends_at")
    if fields.ends_at - starts_at > MAX_EXPERIMENT:
        return TemplateRefused(
            "invalid_experiment",
            f"an experiment runs at most {MAX_EXPERIMENT.days} days",
            "/ends_at",
        )
    return None


async def start_experiment(
    pool: asyncpg.Pool,
    tenant_id: str,
    alias: str,
    fields: ExperimentFields,
    created_by: str | None = None,
    now: datetime | None = None,
) -> Experiment | None:
    """A new experiment on ``alias`` (None: no such template). The head's row lock keeps it
    the only one not stopped and not over (``experiment_running`` otherwise)."""
    now = now or datetime.now(UTC)
    starts_at = fields.starts_at or now
    async with pool.acquire() as connection, connection.transaction():
        head = await connection.fetchrow(
            "SELECT * FROM templates WHERE tenant_id = $1 AND alias = $2 FOR UPDATE",
            _tenant(tenant_id),
            alias,
        )
        if head is None:
            return None
        if refusal := _experiment_refusal(template_of(head), fields, starts_at, now):
            raise refusal
        current = await connection.fetchval(
            "SELECT id FROM template_experiments WHERE tenant_id = $1 AND alias = $2"
            " AND stopped_at IS NULL AND ends_at > $3",
            _tenant(tenant_id),
            alias,
            now,
        )
        if current is not None:
            raise TemplateRefused(
                "experiment_running",
                f"experiment {current} on {alias!r} is not over: stop it first",
            )
        row = await connection.fetchrow(
            "INSERT INTO template_experiments (id, tenant_id, alias, variant_version, percent,"
            " starts_at, ends_at, override_critical, created_by)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING *",
            uuid.uuid4(),
            _tenant(tenant_id),
            alias,
            fields.variant_version,
            fields.percent,
            starts_at,
            fields.ends_at,
            fields.override_critical,
            created_by,
        )
    assert row is not None
    return experiment_of(row)


async def list_experiments(
    pool: asyncpg.Pool, tenant_id: str, alias: str
) -> list[Experiment] | None:
    """A template's experiments, latest start first (None: no such template)."""
    if await fetch_template(pool, tenant_id, alias) is None:
        return None
    rows = await pool.fetch(
        "SELECT * FROM template_experiments WHERE tenant_id = $1 AND alias = $2"
        " ORDER BY starts_at DESC",
        _tenant(tenant_id),
        alias,
    )
    return [experiment_of(row) for row in rows]


def _experiment_id(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


async def _one_experiment(
    pool: asyncpg.Pool, tenant_id: str, alias: str, experiment_id: str, statement: str
) -> Experiment | None:
    """The experiment ``statement`` (given tenant $1, alias $2 and id $3) returns."""
    key = _experiment_id(experiment_id)
    if key is None:
        return None
    row = await pool.fetchrow(statement, _tenant(tenant_id), alias, key)
    return experiment_of(row) if row else None


async def fetch_experiment(
    pool: asyncpg.Pool, tenant_id: str, alias: str, experiment_id: str
) -> Experiment | None:
    return await _one_experiment(
        pool,
        tenant_id,
        alias,
        experiment_id,
        "SELECT * FROM template_experiments WHERE tenant_id = $1 AND alias = $2 AND id = $3",
    )


async def stop_experiment(
    pool: asyncpg.Pool, tenant_id: str, alias: str, experiment_id: str
) -> Experiment | None:
    """Stop an experiment now (stopping a stopped one keeps its first stop)."""
    return await _one_experiment(
        pool,
        tenant_id,
        alias,
        experiment_id,
        "UPDATE template_experiments SET stopped_at = coalesce(stopped_at, now())"
        " WHERE tenant_id = $1 AND alias = $2 AND id = $3 RETURNING *",
    )


def _window(experiment: Experiment, now: datetime) -> tuple[datetime, datetime]:
    end = min(now, experiment.ends_at, experiment.stopped_at or experiment.ends_at)
    return experiment.starts_at, max(end, experiment.starts_at + timedelta(seconds=1))


def _granularity(start: datetime, end: datetime) -> Granularity:
    """Hours while they fit in one report, days beyond."""
    hours = (end - start) / Granularity.HOUR.step
    return Granularity.HOUR if hours < MAX_BUCKETS - 1 else Granularity.DAY


async def _outcome(
    pool: asyncpg.Pool,
    tenant_id: str,
    alias: str,
    version: int,
    role: Role,
    window: tuple[datetime, datetime],
) -> VersionOutcome:
    """The figures of one version of ``alias`` over ``window``."""
    start, end = window
    query = AnalyticsQuery(
        since=start,
        until=end,
        granularity=_granularity(start, end),
        filters={"template": alias, "variant": str(version)},
    )
    totals = (await read_report(pool, tenant_id, query)).totals
    return VersionOutcome(
        version=version,
        role=role,
        counts={state.value: totals.counts.get(state.value, 0) for state in OUTCOME_STATES},
        delivered_p50_ms=totals.latency.p50_ms,
        delivered_p99_ms=totals.latency.p99_ms,
    )


async def experiment_report(
    pool: asyncpg.Pool,
    tenant_id: str,
    alias: str,
    experiment_id: str,
    now: datetime | None = None,
) -> ExperimentReport | None:
    """The experiment with the counts and accept->delivered latency of its control (the
    template's active version) and its variant over its window, from the analytics aggregates
    (whole hours: mail of the hour the experiment started in counts too)."""
    now = now or datetime.now(UTC)
    experiment = await fetch_experiment(pool, tenant_id, alias, experiment_id)
    template = await fetch_template(pool, tenant_id, alias)
    if experiment is None or template is None:
        return None
    window = _window(experiment, now)
    arms: list[tuple[int, Role]] = [(experiment.variant_version, "variant")]
    if template.active_version is not None:
        arms.insert(0, (template.active_version, "control"))
    outcomes = await asyncio.gather(
        *(_outcome(pool, tenant_id, alias, version, role, window) for version, role in arms)
    )
    return ExperimentReport(
        experiment=experiment,
        running=experiment.running(now),
        window_start=window[0],
        window_end=window[1],
        outcomes=list(outcomes),
    )
