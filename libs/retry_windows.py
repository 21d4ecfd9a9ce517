"""How long a tenant's mail of each lane is worth retrying: the defaults of
``schemas.pipeline.DEFAULT_RETRY_WINDOWS``, or the tenant's own (``retry_windows``).

The window follows the lane, never the category: a message raised to ``critical`` is a one-time
code whatever its category says, and is useless after minutes.
"""

from __future__ import annotations

from datetime import timedelta

import asyncpg
from pydantic import BaseModel, ConfigDict, Field

from libs.database import Connection
from schemas.common import Lane
from schemas.pipeline import DEFAULT_RETRY_WINDOWS

MIN_WINDOW_SECONDS = 60
MAX_WINDOW_SECONDS = 7 * 24 * 3600


class RetryWindowFields(BaseModel):
    """A tenant's windows, in seconds, by lane (``PUT /v1/retry-windows``): a lane not given,
    or null, keeps the platform's default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    critical: int | None = Field(None, ge=MIN_WINDOW_SECONDS, le=MAX_WINDOW_SECONDS)
    high: int | None = Field(None, ge=MIN_WINDOW_SECONDS, le=MAX_WINDOW_SECONDS)
    normal: int | None = Field(None, ge=MIN_WINDOW_SECONDS, le=MAX_WINDOW_SECONDS)
    bulk: int | None = Field(None, ge=MIN_WINDOW_SECONDS, le=MAX_WINDOW_SECONDS)

    def overrides(self) -> dict[Lane, int]:
        """The lanes given, and their seconds."""
        return {lane: seconds for lane in Lane if (seconds := getattr(self, lane.value))}


class RetryWindows(BaseModel):
    """The window of every lane for one tenant, in seconds (``GET /v1/retry-windows``)."""

    critical: int
    high: int
    normal: int
    bulk: int

    @classmethod
    def of(cls, windows: dict[Lane, timedelta]) -> RetryWindows:
        return cls.model_validate(
            {lane.value: int(w.total_seconds()) for lane, w in windows.items()}
        )


def with_overrides(overrides: dict[Lane, int]) -> dict[Lane, timedelta]:
    """Every lane's window: the tenant's where it set one, the default elsewhere."""
    return {
        lane: timedelta(seconds=overrides[lane]) if lane in overrides else default
        for lane, default in DEFAULT_RETRY_WINDOWS.items()
    }


async def read_windows(
    executor: asyncpg.Pool | Connection, tenant_id: str
) -> dict[Lane, timedelta]:
    """Every lane's window for the tenant."""
    rows = await executor.fetch(
        "SELECT lane, seconds FROM retry_windows WHERE tenant_id = $1", tenant_id
    )
    return with_overrides({Lane(row["lane"]): row["seconds"] for row in rows})


async def set_windows(
    pool: asyncpg.Pool, tenant_id: str, fields: RetryWindowFields
) -> dict[Lane, timedelta]:
    """Replace the tenant's windows with ``fields`` (lanes not given go back to the default)."""
    overrides = fields.overrides()
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute("DELETE FROM retry_windows WHERE tenant_id = $1", tenant_id)
        await connection.executemany(
            "INSERT INTO retry_windows (tenant_id, lane, seconds) VALUES ($1, $2, $3)",
            [(tenant_id, lane.value, seconds) for lane, seconds in overrides.items()],
        )
    return with_overrides(overrides)
