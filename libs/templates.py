"""Templates, their immutable versions and layouts: the stored objects and their reads and writes.

A template is a head (alias, name, category, which version is active) with numbered versions
that never change once written: a version holds the sources of every locale it speaks, the
variables it declares and the layout version it pins. Ingest resolves the version a message will
render once (the active one, or an experiment's variant) and the message carries it; render
reads exactly that version, so activating another one never changes mail already accepted.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, NamedTuple

import asyncpg
from pydantic import Field, model_validator

from libs.cache import TtlCache
from libs.database import Connection, in_transaction
from schemas.common import Record

DEFAULT_LOCALE = "en"

ALIAS = r"^[a-z0-9][a-z0-9_.-]{0,127}$"
"""A template's or layout's alias: what a send request gives as ``template``."""
LOCALE = r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$"
"""A BCP 47 language tag as requests give it (``en``, ``pt-BR``, ``zh-Hant-TW``)."""

Alias = Annotated[str, Field(pattern=ALIAS)]
Locale = Annotated[str, Field(pattern=LOCALE)]


class VariableType(StrEnum):
    """What a declared variable holds; ingest checks ``data`` against it."""

    STRING = "string"
    NUMBER = "number"
    INTEGER = "integer"
    BOOLEAN = "boolean"
    DATE = "date"
    DATETIME = "datetime"
    LIST = "list"
    OBJECT = "object"


class TemplateVariable(Record):
    """A variable a template version declares: required or optional, typed, with an example
    (which the preview renders with) and, when optional, the default it renders with."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]
    type: VariableType = VariableType.STRING
    required: bool = True
    default: Any = None
    example: Any = None
    description: Annotated[str, Field(max_length=500)] | None = None


class LocaleContent(Record):
    """One locale's Jinja2 sources of a template version."""

    subject: Annotated[str, Field(min_length=1, max_length=998)]
    html: Annotated[str, Field(max_length=1_000_000)] | None = None
    text: Annotated[str, Field(max_length=1_000_000)] | None = None

    @model_validator(mode="after")
    def _has_a_body(self) -> LocaleContent:
        if self.html is None and self.text is None:
            raise ValueError("give html, text or both")
        return self


class _Version(Record):
    """What every immutable version has: whose, of what, which number, and who wrote it."""

    tenant_id: str
    alias: str
    version: int
    note: str | None = None
    created_by: str | None = None
    created_at: datetime | None = None


class TemplateVersion(_Version):
    """One immutable version of a template."""

    default_locale: str = DEFAULT_LOCALE
    contents: dict[str, LocaleContent]
    variables: list[TemplateVariable] = Field(default_factory=list)
    layout_alias: str | None = None
    layout_version: int | None = None

    @property
    def layout(self) -> tuple[str, int] | None:
        """The layout version this version is wrapped in (alias, number), if any."""
        if self.layout_alias is None or self.layout_version is None:
            return None
        return self.layout_alias, self.layout_version


class LayoutVersion(_Version):
    """One immutable version of a layout: the wrapper whose ``{{ content }}`` a body fills."""

    html: str | None = None
    text: str | None = None


class Template(Record):
    """A template's head: its name, the kind of mail it is, and which version is active."""

    tenant_id: str
    alias: str
    name: str
    category: str | None = None
    active_version: int | None = None
    latest_version: int = 0
    archived_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class Experiment(Record):
    """A split of a template's traffic: ``percent`` of recipients get ``variant_version``
    (always the same recipients) between ``starts_at`` and ``ends_at``."""

    id: str
    tenant_id: str
    alias: str
    variant_version: int
    control_version: int | None = None
    """The active version when the experiment started: what the variant is compared with."""
    percent: float
    starts_at: datetime
    ends_at: datetime
    override_critical: bool = False
    stopped_at: datetime | None = None
    created_by: str | None = None
    created_at: datetime | None = None

    def running(self, now: datetime) -> bool:
        """Whether the experiment splits traffic at ``now``."""
        return self.stopped_at is None and self.starts_at <= now < self.ends_at


def _values(row: asyncpg.Record) -> dict[str, Any]:
    values = dict(row)
    values["tenant_id"] = str(values["tenant_id"])
    if "id" in values:
        values["id"] = str(values["id"])
    if "percent" in values:
        values["percent"] = float(values["percent"])
    return values


def template_of(row: asyncpg.Record) -> Template:
    """A ``templates`` row as a ``Template``."""
    return Template.model_validate(_values(row))


def version_of(row: asyncpg.Record) -> TemplateVersion:
    """A ``template_versions`` row as a ``TemplateVersion``."""
    return TemplateVersion.model_validate(_values(row))


def layout_version_of(row: asyncpg.Record) -> LayoutVersion:
    """A ``layout_versions`` row as a ``LayoutVersion``."""
    return LayoutVersion.model_validate(_values(row))


def experiment_of(row: asyncpg.Record) -> Experiment:
    """A ``template_experiments`` row as an ``Experiment``."""
    return Experiment.model_validate(_values(row))


def locale_candidates(locale: str | None, default: str = DEFAULT_LOCALE) -> list[str]:
    """Locales to try, most specific first: ``pt-BR`` → ``pt-BR``, ``pt``, then ``default``."""
    candidates: list[str] = []
    if locale:
        parts = locale.split("-")
        candidates += ["-".join(parts[:n]) for n in range(len(parts), 0, -1)]
    if default not in candidates:
        candidates.append(default)
    return candidates


def best_locale(version: TemplateVersion, locale: str | None) -> str:
    """The locale of ``version`` that serves ``locale``: the first candidate it has (tags
    compared without regard to case), else its default locale."""
    spoken = {tag.lower(): tag for tag in version.contents}
    for candidate in locale_candidates(locale, version.default_locale):
        if candidate.lower() in spoken:
            return spoken[candidate.lower()]
    return version.default_locale


async def fetch_template(
    executor: asyncpg.Pool | Connection, tenant_id: str, alias: str
) -> Template | None:
    """The head of a template (archived ones too)."""
    row = await executor.fetchrow(
        "SELECT * FROM templates WHERE tenant_id = $1 AND alias = $2", uuid.UUID(tenant_id), alias
    )
    return template_of(row) if row else None


async def fetch_version(
    pool: asyncpg.Pool, tenant_id: str, alias: str, version: int
) -> TemplateVersion | None:
    """Exactly one version of a template (versions never change: safe to cache forever)."""
    row = await pool.fetchrow(
        "SELECT * FROM template_versions WHERE tenant_id = $1 AND alias = $2 AND version = $3",
        uuid.UUID(tenant_id),
        alias,
        version,
    )
    return version_of(row) if row else None


async def fetch_layout_version(
    pool: asyncpg.Pool, tenant_id: str, alias: str, version: int
) -> LayoutVersion | None:
    """Exactly one version of a layout (immutable, like template versions)."""
    row = await pool.fetchrow(
        "SELECT * FROM layout_versions WHERE tenant_id = $1 AND alias = $2 AND version = $3",
        uuid.UUID(tenant_id),
        alias,
        version,
    )
    return layout_version_of(row) if row else None


async def upsert_template(
    connection: asyncpg.Connection | asyncpg.Pool,
    tenant_id: str,
    alias: str,
    name: str | None = None,
    category: str | None = None,
) -> Template:
    """The head of ``alias``, created when missing (an existing one keeps its name/category)."""
    row = await connection.fetchrow(
        "INSERT INTO templates (tenant_id, alias, name, category) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (tenant_id, alias) DO UPDATE SET alias = EXCLUDED.alias RETURNING *",
        uuid.UUID(tenant_id),
        alias,
        name or alias,
        category,
    )
    assert row is not None
    return template_of(row)


async def add_version(
    executor: asyncpg.Pool | Connection,
    tenant_id: str,
    alias: str,
    contents: dict[str, LocaleContent],
    *,
    default_locale: str = DEFAULT_LOCALE,
    variables: list[TemplateVariable] | None = None,
    layout: tuple[str, int] | None = None,
    note: str | None = None,
    created_by: str | None = None,
    activate: bool = False,
) -> TemplateVersion:
    """Write the next version of an existing template (numbers never reused, never skipped),
    and make it the active one when ``activate``. The head's row lock orders concurrent writers.
    ``executor`` may be a connection in a transaction the version is part of.
    """
    async with in_transaction(executor) as connection:
        head = await connection.fetchrow(
            "UPDATE templates SET latest_version = latest_version + 1, updated_at = now(),"
            " active_version = CASE WHEN $3 THEN latest_version + 1 ELSE active_version END"
            " WHERE tenant_id = $1 AND alias = $2 RETURNING latest_version",
            uuid.UUID(tenant_id),
            alias,
            activate,
        )
        if head is None:
            raise LookupError(f"no template {alias!r}")
        row = await connection.fetchrow(
            "INSERT INTO template_versions (tenant_id, alias, version, default_locale, contents,"
            " variables, layout_alias, layout_version, note, created_by)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING *",
            uuid.UUID(tenant_id),
            alias,
            head["latest_version"],
            default_locale,
            {tag: part.model_dump(exclude_none=True) for tag, part in contents.items()},
            [variable.model_dump(mode="json") for variable in variables or []],
            layout[0] if layout else None,
            layout[1] if layout else None,
            note,
            created_by,
        )
    assert row is not None
    return version_of(row)


async def put_template(
    pool: asyncpg.Pool,
    tenant_id: str,
    name: str,
    subject: str,
    html: str | None,
    text: str | None,
    locale: str = DEFAULT_LOCALE,
) -> TemplateVersion:
    """The CLI's and the seed's one-step write: a new active version of ``name`` whose
    ``locale`` has these sources and whose other locales are those of the active version."""
    head = await upsert_template(pool, tenant_id, name)
    current = (
        await fetch_version(pool, tenant_id, name, head.active_version)
        if head.active_version is not None
        else None
    )
    contents = dict(current.contents) if current else {}
    contents[locale] = LocaleContent(subject=subject, html=html, text=text)
    return await add_version(
        pool,
        tenant_id,
        name,
        contents,
        default_locale=current.default_locale if current else locale,
        variables=list(current.variables) if current else None,
        layout=current.layout if current else None,
        activate=True,
    )


async def fetch_open_experiment(
    pool: asyncpg.Pool, tenant_id: str, alias: str
) -> Experiment | None:
    """The experiment of a template that is neither stopped nor over (at most one is: the API
    refuses a second); it may not have started yet."""
    row = await pool.fetchrow(
        "SELECT * FROM template_experiments WHERE tenant_id = $1 AND alias = $2"
        " AND stopped_at IS NULL AND ends_at > now() ORDER BY starts_at LIMIT 1",
        uuid.UUID(tenant_id),
        alias,
    )
    return experiment_of(row) if row else None


TEMPLATE_TTL_SECONDS = 10.0
"""How long a template's head (which version is active, archived or not) and its experiment
are reused before the store is asked again."""


class _Head(NamedTuple):
    template: Template
    experiment: Experiment | None


class TemplateCatalogue:
    """Templates, their versions and layouts for every message, answered from memory.

    A template's head and its open experiment are kept ``TEMPLATE_TTL_SECONDS`` (together: a
    template without an experiment costs no query per message either); a given version of a
    template or a layout never changes, so it is kept as long as there is room.
    """

    def __init__(self, pool: asyncpg.Pool, ttl: float = TEMPLATE_TTL_SECONDS) -> None:
        self._pool = pool
        self._heads: TtlCache[tuple[str, str], _Head] = TtlCache(ttl)
        self._versions: TtlCache[tuple[str, str, int], TemplateVersion] = TtlCache(
            IMMUTABLE_TTL_SECONDS
        )
        self._layouts: TtlCache[tuple[str, str, int], LayoutVersion] = TtlCache(
            IMMUTABLE_TTL_SECONDS
        )

    async def template(self, tenant_id: str, alias: str) -> Template | None:
        """The head of ``alias`` (archived ones too; None: no such template)."""
        head = await self._head(tenant_id, alias)
        return head.template if head else None

    async def experiment(self, tenant_id: str, alias: str) -> Experiment | None:
        """The experiment of ``alias`` neither stopped nor over (``Experiment.running`` says
        whether it splits traffic now)."""
        head = await self._head(tenant_id, alias)
        return head.experiment if head else None

    async def active(self, tenant_id: str, alias: str) -> TemplateVersion | None:
        """The active version of ``alias`` (None: no such template, it is archived, or none of
        its versions is active yet)."""
        template = await self.template(tenant_id, alias)
        if template is None or template.archived_at is not None:
            return None
        if template.active_version is None:
            return None
        return await self.version(tenant_id, alias, template.active_version)

    def discard(self, tenant_id: str, alias: str) -> None:
        """Forget the head and experiment of ``alias`` (this process just changed them)."""
        self._heads.discard((tenant_id, alias))

    async def version(self, tenant_id: str, alias: str, version: int) -> TemplateVersion | None:
        """Exactly ``version`` of ``alias``."""
        return await self._versions.get(
            (tenant_id, alias, version),
            lambda: fetch_version(self._pool, tenant_id, alias, version),
        )

    async def layout(self, tenant_id: str, alias: str, version: int) -> LayoutVersion | None:
        """Exactly ``version`` of the layout ``alias``."""
        return await self._layouts.get(
            (tenant_id, alias, version),
            lambda: fetch_layout_version(self._pool, tenant_id, alias, version),
        )

    async def _head(self, tenant_id: str, alias: str) -> _Head | None:
        return await self._heads.get((tenant_id, alias), lambda: self._load(tenant_id, alias))

    async def _load(self, tenant_id: str, alias: str) -> _Head | None:
        template = await fetch_template(self._pool, tenant_id, alias)
        if template is None:
            return None
        return _Head(template, await fetch_open_experiment(self._pool, tenant_id, alias))


IMMUTABLE_TTL_SECONDS = 24 * 3600.0
"""Immutable rows are only dropped from memory to make room (or after a day)."""
