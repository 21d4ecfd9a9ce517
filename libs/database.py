"""One way to open the database, and the versioned migrations applied at start-up."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from libs.sending_domains import fill_missing_dkim_keys
from libs.settings import REPO_ROOT, Settings

log = logging.getLogger(__name__)

DATABASE_DOWN: tuple[type[Exception], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,  # a pooled connection the server cut off mid-operation
    asyncpg.CannotConnectNowError,  # the server is starting up or shutting down
    asyncpg.AdminShutdownError,  # a session ended by a (fast) shutdown
)
"""What the driver raises while the database cannot be reached, restarts or just restarted:
worth a retry, never a 500."""

Connection = asyncpg.Connection | PoolConnectionProxy


@asynccontextmanager
async def in_transaction(executor: asyncpg.Pool | Connection) -> AsyncIterator[Connection]:
    """A connection in a transaction: a pooled one of its own, or a savepoint of the caller's
    transaction — so one write can stand alone or be part of a larger one."""
    if isinstance(executor, asyncpg.Pool):
        async with executor.acquire() as connection, connection.transaction():
            yield connection
    else:
        async with executor.transaction():
            yield executor


MIGRATIONS_DIR = REPO_ROOT / "deploy" / "migrations"
MIGRATION_LOCK = 7_201_511  # advisory lock id: one migrator at a time


async def _init_connection(connection: asyncpg.Connection) -> None:
    for kind in ("json", "jsonb"):
        await connection.set_type_codec(
            kind, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )


async def _keep_session(connection: asyncpg.Connection) -> None:
    """No Sendarix code leaves session state (locks, LISTEN, SET, cursors) behind, so a
    connection goes back to the pool without asyncpg's reset round trip — only a transaction
    an interrupted caller left open is rolled back."""
    if connection.is_in_transaction():
        await connection.execute("ROLLBACK")


async def open_pool(settings: Settings, size: int | None = None) -> asyncpg.Pool:
    """A connection pool whose json/jsonb columns read and write Python objects."""
    pool_size = size or settings.database_pool_size
    return await asyncpg.create_pool(
        settings.database_url,
        min_size=1,
        max_size=pool_size,
        init=_init_connection,
        reset=_keep_session,
    )


async def apply_migrations(database_url: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply every ``NNNN_name.sql`` not applied yet, in order; return the ones applied now.

    Then the step SQL cannot do: a DKIM key for every sending domain without one (the domains
    a migration carried over), so no domain is ever left unable to sign.
    """
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
        await connection.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {
            row["version"]
            for row in await connection.fetch("SELECT version FROM schema_migrations")
        }
        applied = []
        for path in sorted(directory.glob("[0-9][0-9][0-9][0-9]_*.sql")):
            if path.stem in done:
                continue
            async with connection.transaction():
                await connection.execute(path.read_text())
                await connection.execute(
                    "INSERT INTO schema_migrations (version) VALUES ($1)", path.stem
                )
            log.info("applied migration %s", path.stem)
            applied.append(path.stem)
        has_domains = await connection.fetchval("SELECT to_regclass('sending_domains') IS NOT NULL")
        if has_domains and (keyed := await fill_missing_dkim_keys(connection)):
            log.info("generated DKIM keys for %d sending domains", keyed)
        return applied
    finally:
        await connection.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
        await connection.close()
