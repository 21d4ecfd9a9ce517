"""Operator controls over the queues: pause what matches a scope, drain a route to its fallback.

A control names any of tenant, lane, route and site; a field left out matches everything, so
``{tenant: acme}`` pauses one tenant and ``{lane: bulk, site: google}`` bulk mail to Gmail. The
sender reads the active controls every ``queue_control_poll_seconds`` (``ControlView``) and holds
what a pause matches in the retry-scheduler, which releases none of it until the pause is lifted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum

import asyncpg
from pydantic import BaseModel, ConfigDict

from schemas.common import Lane

log = logging.getLogger(__name__)


class ControlKind(StrEnum):
    """What a control does to the mail it matches."""

    PAUSE = "pause"
    """Hold it (nothing is attempted) until the control is lifted."""
    DRAIN = "drain"
    """Send a route's mail through its fallback route instead."""


class Scope(BaseModel):
    """What a control applies to: every field it sets must match (None: any)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tenant_id: str | None = None
    lane: Lane | None = None
    route: str | None = None
    site: str | None = None

    def covers(self, tenant_id: str, lane: Lane, route: str, site: str | None) -> bool:
        """Whether mail of this tenant, lane, route and site is within the scope (a scope naming
        a site covers no mail whose site is not known yet)."""
        return (
            (self.tenant_id is None or self.tenant_id == tenant_id)
            and (self.lane is None or self.lane is lane)
            and (self.route is None or self.route == route)
            and (self.site is None or self.site == site)
        )


class QueueControl(BaseModel):
    """One active control, as ``queue_controls`` keeps it."""

    model_config = ConfigDict(frozen=True)

    id: str
    kind: ControlKind
    scope: Scope
    reason: str
    created_by: str
    created_at: datetime


def matching(
    controls: Sequence[QueueControl],
    kind: ControlKind,
    tenant_id: str,
    lane: Lane,
    route: str,
    site: str | None = None,
) -> QueueControl | None:
    """The first control of ``kind`` whose scope covers the mail, if any."""
    for control in controls:
        if control.kind is kind and control.scope.covers(tenant_id, lane, route, site):
            return control
    return None


CONTROL_COLUMNS = "id, kind, tenant_id, lane, route, site, reason, created_by, created_at"


def control_from_row(row: asyncpg.Record) -> QueueControl:
    """A ``queue_controls`` row as a model."""
    return QueueControl(
        id=str(row["id"]),
        kind=ControlKind(row["kind"]),
        scope=Scope(
            tenant_id=row["tenant_id"],
            lane=Lane(row["lane"]) if row["lane"] else None,
            route=row["route"],
            site=row["site"],
        ),
        reason=row["reason"],
        created_by=row["created_by"],
        created_at=row["created_at"],
    )


async def read_controls(pool: asyncpg.Pool) -> list[QueueControl]:
    """Every active control, oldest first."""
    rows = await pool.fetch(f"SELECT {CONTROL_COLUMNS} FROM queue_controls ORDER BY created_at")
    return [control_from_row(row) for row in rows]


class ControlView:
    """The active controls as one process sees them: read again once ``poll_seconds`` old.

    One small query a quarter of a second at most, whatever the traffic; a database that does
    not answer leaves the last view in place (a pause already seen stays in force).
    """

    def __init__(self, pool: asyncpg.Pool, poll_seconds: float) -> None:
        self._pool = pool
        self._poll_seconds = poll_seconds
        self._controls: list[QueueControl] = []
        self._read_at = float("-inf")
        self._lock = asyncio.Lock()

    async def current(self) -> list[QueueControl]:
        """The controls in force, at most ``poll_seconds`` stale."""
        if time.monotonic() - self._read_at < self._poll_seconds:
            return self._controls
        async with self._lock:
            if time.monotonic() - self._read_at >= self._poll_seconds:
                try:
                    self._controls = await read_controls(self._pool)
                except (OSError, asyncpg.PostgresError) as error:
                    log.warning("reading the queue controls failed: %r", error)
                self._read_at = time.monotonic()
        return self._controls
