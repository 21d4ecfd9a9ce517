"""Layouts and experiments written straight into the store, for tests of the pipeline that
reads them (the API that writes them is tested on its own)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from libs.templates import Experiment, LayoutVersion, experiment_of, layout_version_of


async def add_layout(
    pool: asyncpg.Pool, tenant_id: str, alias: str, html: str | None, text: str | None
) -> LayoutVersion:
    """A layout (created when missing) with a new version holding ``html`` and ``text``."""
    async with pool.acquire() as connection, connection.transaction():
        version = await connection.fetchval(
            "INSERT INTO layouts (tenant_id, alias, name, latest_version) VALUES ($1, $2, $2, 1)"
            " ON CONFLICT (tenant_id, alias) DO UPDATE"
            " SET latest_version = layouts.latest_version + 1 RETURNING latest_version",
            uuid.UUID(tenant_id),
            alias,
        )
        row = await connection.fetchrow(
            "INSERT INTO layout_versions (tenant_id, alias, version, html, text)"
            " VALUES ($1, $2, $3, $4, $5) RETURNING *",
            uuid.UUID(tenant_id),
            alias,
            version,
            html,
            text,
        )
    assert row is not None
    return layout_version_of(row)


async def start_experiment(
    pool: asyncpg.Pool,
    tenant_id: str,
    alias: str,
    variant_version: int,
    percent: float,
    *,
    override_critical: bool = False,
) -> Experiment:
    """An experiment on ``alias`` running from now for a week."""
    now = datetime.now(UTC)
    row = await pool.fetchrow(
        "INSERT INTO template_experiments (id, tenant_id, alias, variant_version, percent,"
        " starts_at, ends_at, override_critical) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        " RETURNING *",
        uuid.uuid4(),
        uuid.UUID(tenant_id),
        alias,
        variant_version,
        percent,
        now - timedelta(seconds=1),
        now + timedelta(days=7),
        override_critical,
    )
    assert row is not None
    return experiment_of(row)


async def activate(pool: asyncpg.Pool, tenant_id: str, alias: str, version: int) -> None:
    """Make ``version`` the active one of ``alias``."""
    await pool.execute(
        "UPDATE templates SET active_version = $3 WHERE tenant_id = $1 AND alias = $2",
        uuid.UUID(tenant_id),
        alias,
        version,
    )


async def archive(pool: asyncpg.Pool, tenant_id: str, alias: str) -> None:
    """Archive ``alias``: sends with it are refused."""
    await pool.execute(
        "UPDATE templates SET archived_at = now() WHERE tenant_id = $1 AND alias = $2",
        uuid.UUID(tenant_id),
        alias,
    )
