"""Migration 0008 on a database of the shape before it: each suppression keeps its meaning."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from libs.database import MIGRATIONS_DIR, apply_migrations
from libs.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture
async def scratch_database(settings: Settings) -> AsyncIterator[str]:
    """A database of its own on the test cluster, dropped afterwards."""
    name = f"sx_migration_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(settings.database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield settings.database_url.rsplit("/", 1)[0] + "/" + name
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_old_suppressions_keep_their_meaning_per_stream(
    scratch_database: str, tmp_path: Path
) -> None:
    before = tmp_path / "before"
    before.mkdir()
    for path in sorted(MIGRATIONS_DIR.glob("000[1-7]_*.sql")):
        shutil.copy(path, before)
    await apply_migrations(scratch_database, before)
    tenant = uuid.uuid4()
    connection = await asyncpg.connect(scratch_database)
    try:
        await connection.executemany(
            "INSERT INTO suppressions (tenant_id, address, reason) VALUES ($1, $2, $3)",
            [
                (tenant, f"{reason}@example.org", reason)
                for reason in ("unsubscribe", "hard_bounce", "complaint", "manual")
            ],
        )
        assert "0008_suppressions_per_stream" in await apply_migrations(scratch_database)
        rows = await connection.fetch(
            "SELECT address, stream, reason, created_by FROM suppressions WHERE tenant_id = $1",
            tenant,
        )
    finally:
        await connection.close()
    assert {(r["address"].split("@")[0], r["stream"], r["reason"]) for r in rows} == {
        ("unsubscribe", "broadcast", "unsubscribe"),
        ("hard_bounce", "transactional", "hard_bounce"),
        ("hard_bounce", "broadcast", "hard_bounce"),
        ("complaint", "transactional", "complaint"),
        ("complaint", "broadcast", "complaint"),
        ("manual", "transactional", "manual"),
        ("manual", "broadcast", "manual"),
    }
    assert {r["created_by"] for r in rows} == {"migration 0008"}
