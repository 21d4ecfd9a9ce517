"""Deliverability alerts as the ``alerts`` table keeps them, for the API and the CLI to list.

The analytics service (``services.analytics.monitor``) opens, escalates and resolves them; each
opening and resolution is also a notice on ``sendarix.notices``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

import asyncpg
from pydantic import BaseModel

from schemas.notices import AlertSeverity


class AlertKind(StrEnum):
    BOUNCE_RATE = "bounce_rate"
    COMPLAINT_RATE = "complaint_rate"
    DOMAIN_DEFERRALS = "domain_deferrals"
    CRITICAL_LATENCY = "critical_latency"


class AlertStatus(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"
    ALL = "all"


class AlertView(BaseModel):
    """One alert: what crossed which threshold, over how many messages, and when."""

    id: str
    tenant_id: str
    kind: AlertKind
    key: str | None
    """The recipient domain of a ``domain_deferrals`` alert; None for the whole tenant."""
    severity: AlertSeverity
    value: float
    """The measured value when the alert opened (a rate 0-1, or milliseconds)."""
    threshold: float
    """The threshold it crossed (of its severity)."""
    sample: int
    window_seconds: int
    opened_at: datetime
    resolved_at: datetime | None
    last_value: float
    last_sample: int
    evaluated_at: datetime

    @classmethod
    def of_row(cls, row: asyncpg.Record) -> AlertView:
        return cls.model_validate(
            {**dict(row), "id": str(row["id"]), "tenant_id": str(row["tenant_id"])}
        )


ALERT_COLUMNS = (
    "id, tenant_id, kind, key, severity, value, threshold, sample, window_seconds, opened_at,"
    " resolved_at, last_value, last_sample, evaluated_at"
)
STATUS_CONDITIONS = {
    AlertStatus.OPEN: "resolved_at IS NULL",
    AlertStatus.RESOLVED: "resolved_at IS NOT NULL",
    AlertStatus.ALL: "true",
}


async def list_alerts(
    pool: asyncpg.Pool, tenant_id: str | None, status: AlertStatus, limit: int
) -> list[AlertView]:
    """The tenant's alerts of ``status`` (None: every tenant's), the most recently opened
    first."""
    rows = await pool.fetch(
        f"SELECT {ALERT_COLUMNS} FROM alerts WHERE ($1::uuid IS NULL OR tenant_id = $1)"
        f" AND {STATUS_CONDITIONS[status]} ORDER BY opened_at DESC LIMIT $2",
        uuid.UUID(tenant_id) if tenant_id is not None else None,
        limit,
    )
    return [AlertView.of_row(row) for row in rows]
