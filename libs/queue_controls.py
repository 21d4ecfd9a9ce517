"""Operator controls over the queues: pause what matches a scope, drain a route to its fallback.

A control names any of tenant, lane, route and site; a field left out matches everything, so
``{tenant: acme}`` pauses one tenant and ``{lane: bulk, site: google}`` bulk mail to Gmail. The
sender reads the active controls every ``queue_control_poll_seconds`` (``ControlView``) and holds
what a pause matches in the retry-scheduler, which releases none of it until the pause is lifted.

Who may do what (``scoped_for``, ``check_control``): a tenant's admin key acts on its own tenant
only (the scope's tenant is set to it; naming another is ``operator_only``); an admin key of
``settings.operator_tenant`` is an operator and may name any tenant or none (every tenant: a
lane or a site for everyone). A drain names a route (``drain_needs_route``); a control or a
cancel names something (``empty_scope``): the whole platform is never stopped at one stroke.
Every change is a ``queue_events`` row with the key id that made it, written in the same
transaction as the change.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar

import asyncpg
from pydantic import BaseModel, ConfigDict, Field, field_validator

from libs.broker import Broker
from libs.cancellation import PAST_CANCELLING, Cancellation, cancel_logged
from libs.database import Connection
from libs.keys import Scope as KeyScope
from libs.settings import Settings
from libs.tenants import Caller
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


class QueueEventKind(StrEnum):
    """What a ``queue_events`` row records."""

    PAUSED = "paused"
    RESUMED = "resumed"
    DRAINED = "drained"
    UNDRAINED = "undrained"
    RETRIED_NOW = "retried_now"
    CANCELLED = "cancelled"
    SITE_THROTTLED = "site_throttled"
    SITE_RELEASED = "site_released"
    SITE_SLOW = "site_slow"
    SITE_RECOVERED = "site_recovered"


EVENT_OF_CONTROL = {
    (ControlKind.PAUSE, True): QueueEventKind.PAUSED,
    (ControlKind.PAUSE, False): QueueEventKind.RESUMED,
    (ControlKind.DRAIN, True): QueueEventKind.DRAINED,
    (ControlKind.DRAIN, False): QueueEventKind.UNDRAINED,
}
"""The event of a control put in place (True) or lifted (False)."""

MAX_REASON_CHARS = 500
CANCEL_LIMIT = 10_000
"""Messages one cancel settles at most: a bigger selection is cancelled by calling again."""


class WaitingScope(Scope):
    """The waiting mail a retry-now or a cancel acts on: a control's scope, narrowed further to
    a recipient domain or one message."""

    domain: str | None = Field(None, max_length=253)
    message_id: uuid.UUID | None = None

    @field_validator("domain")
    @classmethod
    def _lower(cls, domain: str | None) -> str | None:
        return domain.strip().lower() if domain else None


ScopeT = TypeVar("ScopeT", bound=Scope)


class ScopeRefused(Exception):
    """A control or an action the caller may not take, with the problem code that says why."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def is_operator(caller: Caller, settings: Settings) -> bool:
    """Whether the caller's key is an admin key of the operator tenant (named by id or name)."""
    return KeyScope.ADMIN in caller.key.settings.scopes and settings.operator_tenant in (
        caller.tenant.id,
        caller.tenant.name,
    )


def scoped_for(requested: ScopeT, tenant_id: str | None) -> ScopeT:
    """The scope a caller acts on: an operator's (``tenant_id`` None) as asked; a tenant's within
    its own tenant, whatever else it names. Raises ``ScopeRefused`` (``operator_only``) when a
    tenant names another tenant."""
    if tenant_id is None:
        return requested
    if requested.tenant_id not in (None, tenant_id):
        raise ScopeRefused("operator_only", "only an operator acts on another tenant's queues")
    return requested.model_copy(update={"tenant_id": tenant_id})


def check_control(kind: ControlKind, scope: Scope) -> None:
    """Refuse a control that is not well made: a drain without a route (it sends a route's mail
    to that route's fallback), a control over the whole platform."""
    if kind is ControlKind.DRAIN and scope.route is None:
        raise ScopeRefused("drain_needs_route", "a drain names the route whose mail it moves")
    if scope == Scope():
        raise ScopeRefused(
            "empty_scope", "name a tenant, lane, route or site: the whole platform is never paused"
        )


async def record_event(
    connection: Connection,
    kind: QueueEventKind,
    actor: str,
    scope: Scope,
    detail: dict[str, Any],
) -> None:
    """Write one ``queue_events`` row (the tenant is the scope's: None for the platform)."""
    await connection.execute(
        "INSERT INTO queue_events (kind, actor, tenant_id, scope, detail)"
        " VALUES ($1, $2, $3, $4, $5)",
        kind.value,
        actor,
        scope.tenant_id,
        scope.model_dump(mode="json", exclude_none=True),
        detail,
    )


async def add_control(
    pool: asyncpg.Pool, kind: ControlKind, scope: Scope, reason: str, actor: str
) -> QueueControl:
    """Put a control in place (``check_control`` first) and record it: ``paused``/``drained``."""
    check_control(kind, scope)
    async with pool.acquire() as connection, connection.transaction():
        row = await connection.fetchrow(
            "INSERT INTO queue_controls (id, kind, tenant_id, lane, route, site, reason,"
            f" created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {CONTROL_COLUMNS}",
            uuid.uuid4(),
            kind.value,
            scope.tenant_id,
            scope.lane.value if scope.lane else None,
            scope.route,
            scope.site,
            reason,
            actor,
        )
        assert row is not None, "INSERT ... RETURNING returns the row"
        control = control_from_row(row)
        detail = {"control_id": control.id, "control": kind.value, "reason": reason}
        await record_event(connection, EVENT_OF_CONTROL[kind, True], actor, scope, detail)
    return control


async def remove_control(
    pool: asyncpg.Pool,
    control_id: str,
    actor: str,
    tenant_id: str | None,
    kind: ControlKind | None = None,
) -> QueueControl | None:
    """Lift a control and record it (``resumed``/``undrained``); None when there is no such
    control (of ``kind``, if given) that ``tenant_id`` may see (None: an operator sees all).

    A tenant lifts only what its own keys put in place: a control an operator set on it stays
    until an operator lifts it (``ScopeRefused``: ``operator_only``).
    """
    try:
        key = uuid.UUID(control_id)
    except ValueError:
        return None
    async with pool.acquire() as connection, connection.transaction():
        row = await connection.fetchrow(
            f"SELECT {CONTROL_COLUMNS}, EXISTS (SELECT 1 FROM api_keys k"
            " WHERE k.id::text = c.created_by AND k.tenant_id::text = c.tenant_id) AS own"
            " FROM queue_controls c WHERE id = $1 AND ($2::text IS NULL OR tenant_id = $2)"
            " AND ($3::text IS NULL OR kind = $3) FOR UPDATE",
            key,
            tenant_id,
            kind.value if kind else None,
        )
        if row is None:
            return None
        if tenant_id is not None and not row["own"]:
            raise ScopeRefused("operator_only", "an operator set this control: only one lifts it")
        control = control_from_row(row)
        await connection.execute("DELETE FROM queue_controls WHERE id = $1", key)
        detail = {"control_id": control.id, "control": control.kind.value}
        event = EVENT_OF_CONTROL[control.kind, False]
        await record_event(connection, event, actor, control.scope, detail)
    return control


WAITING_FILTER = (
    "($1::text IS NULL OR r.tenant_id = $1) AND ($2::text IS NULL OR r.lane = $2)"
    " AND ($3::text IS NULL OR r.route = $3) AND ($4::text IS NULL OR r.site = $4)"
    " AND ($5::text IS NULL OR r.domain = $5) AND ($6::uuid IS NULL OR r.message_id = $6)"
)
"""The rows of ``retry_schedule r`` a ``WaitingScope`` covers (its fields as $1..$6)."""

PAUSE_COVERS = (
    "EXISTS (SELECT 1 FROM queue_controls c WHERE c.kind = 'pause'"
    " AND (c.tenant_id IS NULL OR c.tenant_id = r.tenant_id)"
    " AND (c.lane IS NULL OR c.lane = r.lane) AND (c.route IS NULL OR c.route = r.route)"
    " AND (c.site IS NULL OR c.site = r.site))"
)
"""Whether an active pause covers the ``retry_schedule r`` row (as ``Scope.covers``)."""


def waiting_args(scope: WaitingScope) -> list[Any]:
    """The parameters of ``WAITING_FILTER``."""
    return [
        scope.tenant_id,
        scope.lane.value if scope.lane else None,
        scope.route,
        scope.site,
        scope.domain,
        scope.message_id,
    ]


async def retry_now(pool: asyncpg.Pool, scope: WaitingScope, actor: str) -> int:
    """Make the waiting attempts ``scope`` covers due now, and record it (``retried_now``);
    how many. Attempts a pause covers keep their time: they stay held until it is lifted."""
    async with pool.acquire() as connection, connection.transaction():
        moved = await connection.fetchval(
            "WITH moved AS (UPDATE retry_schedule r SET due_at = now()"
            f" WHERE {WAITING_FILTER} AND r.due_at > now() AND NOT {PAUSE_COVERS}"
            " RETURNING 1) SELECT count(*) FROM moved",
            *waiting_args(scope),
        )
        await record_event(connection, QueueEventKind.RETRIED_NOW, actor, scope, {"count": moved})
    return int(moved)


class CancelResult(BaseModel):
    """What a cancel of waiting mail did: messages cancelled now, those an attempt in DATA put
    past cancelling, and whether more waiting mail is in scope (call again)."""

    cancelled: int
    too_late: int
    more: bool


async def cancel_waiting(
    pool: asyncpg.Pool,
    broker: Broker,
    prefix: str,
    scope: WaitingScope,
    actor: str,
    service: str,
    limit: int = CANCEL_LIMIT,
) -> CancelResult:
    """Cancel up to ``limit`` messages waiting in ``retry_schedule`` within ``scope`` as
    ``DELETE /v1/messages/{id}`` does (``cancel_logged``: no attempt is handed to SMTP, each is
    reported ``cancelled`` in its timeline), drop their waiting attempts and record it
    (``cancelled``, with the count). A message not in the log yet is left for a later call."""
    if scope == WaitingScope():
        raise ScopeRefused("empty_scope", "name what to cancel: never every tenant's mail at once")
    rows = await pool.fetch(
        "SELECT * FROM messages WHERE id IN (SELECT DISTINCT r.message_id FROM retry_schedule r"
        f" WHERE {WAITING_FILTER} LIMIT $7) AND status <> ALL($8::text[])",
        *waiting_args(scope),
        limit + 1,
        [state.value for state in PAST_CANCELLING],
    )
    more = len(rows) > limit
    outcomes = await cancel_logged(pool, broker, prefix, rows[:limit], service)
    settled = [key for key, outcome in outcomes.items() if outcome is not Cancellation.TOO_LATE]
    cancelled = sum(outcome is Cancellation.CANCELLED for outcome in outcomes.values())
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute(
            "DELETE FROM retry_schedule WHERE message_id = ANY($1::uuid[])",
            [uuid.UUID(key) for key in settled],
        )
        detail = {"count": cancelled, "too_late": len(outcomes) - len(settled)}
        await record_event(connection, QueueEventKind.CANCELLED, actor, scope, detail)
    return CancelResult(cancelled=cancelled, too_late=len(outcomes) - len(settled), more=more)
