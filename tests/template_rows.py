"""Layouts, experiments and archiving for tests of the pipeline that reads them, written
through the store the API and the CLI use (``libs.template_store``,
``libs.template_experiments``; the API itself is tested in test_templates_api.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg

from libs.template_experiments import ExperimentFields
from libs.template_experiments import start_experiment as start
from libs.template_store import (
    HeadPatch,
    LayoutFields,
    LayoutVersionFields,
    add_layout_version,
    create_layout,
    patch_template,
)
from libs.templates import Experiment, LayoutVersion


async def add_layout(
    pool: asyncpg.Pool, tenant_id: str, alias: str, html: str | None, text: str | None
) -> LayoutVersion:
    """A layout (created when missing) with a new version holding ``html`` and ``text``."""
    fields = LayoutVersionFields(html=html, text=text)
    layout = await add_layout_version(pool, tenant_id, alias, fields)
    if layout is None:
        layout = await create_layout(pool, tenant_id, LayoutFields(alias=alias, version=fields))
    assert layout is not None
    return layout


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
    fields = ExperimentFields(
        variant_version=variant_version,
        percent=percent,
        ends_at=datetime.now(UTC) + timedelta(days=7),
        override_critical=override_critical,
    )
    experiment = await start(pool, tenant_id, alias, fields)
    assert experiment is not None
    return experiment


async def archive(pool: asyncpg.Pool, tenant_id: str, alias: str) -> None:
    """Archive ``alias``: sends with it are refused."""
    assert await patch_template(pool, tenant_id, alias, HeadPatch(archived=True)) is not None
