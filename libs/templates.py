"""Versioned, localised templates: written by the CLI, checked by ingest, merged by render."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg

from libs.cache import TtlCache

DEFAULT_LOCALE = "en"


@dataclass(frozen=True)
class Template:
    """One version of a template in one locale; its fields are Jinja2 sources."""

    tenant_id: str
    name: str
    locale: str
    version: int
    subject: str
    html: str | None
    text: str | None


def _template(row: asyncpg.Record) -> Template:
    return Template(
        tenant_id=str(row["tenant_id"]),
        name=row["name"],
        locale=row["locale"],
        version=row["version"],
        subject=row["subject"],
        html=row["html"],
        text=row["text"],
    )


async def put_template(
    pool: asyncpg.Pool,
    tenant_id: str,
    name: str,
    subject: str,
    html: str | None,
    text: str | None,
    locale: str = DEFAULT_LOCALE,
) -> Template:
    """Store a new version of a template (the previous versions stay for the message log)."""
    row = await pool.fetchrow(
        "INSERT INTO templates (tenant_id, name, locale, version, subject, html, text)"
        " SELECT $1, $2, $3, coalesce(max(version), 0) + 1, $4, $5, $6 FROM templates"
        " WHERE tenant_id = $1 AND name = $2 AND locale = $3 RETURNING *",
        uuid.UUID(tenant_id),
        name,
        locale,
        subject,
        html,
        text,
    )
    assert row is not None
    return _template(row)


def locale_candidates(locale: str | None) -> list[str]:
    """Locales to try, most specific first: ``pt-BR`` → ``pt-BR``, ``pt``, ``en``."""
    candidates: list[str] = []
    if locale:
        parts = locale.split("-")
        candidates += ["-".join(parts[:n]) for n in range(len(parts), 0, -1)]
    if DEFAULT_LOCALE not in candidates:
        candidates.append(DEFAULT_LOCALE)
    return candidates


async def latest_template(
    pool: asyncpg.Pool, tenant_id: str, name: str, locale: str | None
) -> Template | None:
    """The newest version of a template in the best locale available for ``locale``."""
    candidates = locale_candidates(locale)
    row = await pool.fetchrow(
        "SELECT * FROM templates WHERE tenant_id = $1 AND name = $2 AND locale = ANY($3::text[])"
        " ORDER BY array_position($3::text[], locale), version DESC LIMIT 1",
        uuid.UUID(tenant_id),
        name,
        candidates,
    )
    return _template(row) if row else None


TEMPLATE_TTL_SECONDS = 10.0
"""How long a template version is reused before the store is asked again."""


class TemplateCatalogue:
    """``latest_template`` for every message, answered from memory when recently asked.

    Ingest checks a request against the template and render merges it: both ask for every
    message, so both use this rather than a query each.
    """

    def __init__(self, pool: asyncpg.Pool, ttl: float = TEMPLATE_TTL_SECONDS) -> None:
        self._pool = pool
        self._latest: TtlCache[tuple[str, str, str | None], Template] = TtlCache(ttl)

    async def latest(self, tenant_id: str, name: str, locale: str | None) -> Template | None:
        """The newest version of a template in the best locale available for ``locale``."""
        return await self._latest.get(
            (tenant_id, name, locale),
            lambda: latest_template(self._pool, tenant_id, name, locale),
        )
