"""Experiments: a template's traffic split between its active version and a variant, for a small
cohort and a while, and how each version's mail fared.

Refused on a template whose category travels in the critical lane (security mail stays
stable) unless the tenant overrides it; one at a time per template. Ingest assigns recipients
(``libs.template_choice``); this module is what ``/v1/templates/{alias}/experiments`` and
``sendarix experiment`` share.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Literal

import asyncpg
from pydantic import AwareDatetime, BaseModel, Field

from libs.analytics import Granularity
from libs.analytics_report import MAX_BUCKETS, AnalyticsQuery, read_report
from libs.template_store import Fields, TemplateRefused, VersionNumber
from libs.templates import Experiment, Template, experiment_of, fetch_template, template_of
from schemas.common import Lane, Stream, natural_lane
from schemas.events import MessageState

MAX_EXPERIMENT = timedelta(days=90)
"""The longest an experiment may run: a cohort is a test, not a second production version."""
MAX_EXPERIMENT_PERCENT = 50
OUTCOME_STATES = (
    MessageState.ACCEPTED,
    MessageState.DELIVERED,
    MessageState.BOUNCED,
    MessageState.COMPLAINED,
    MessageState.DEFERRED,
    MessageState.FAILED,
)


class ExperimentFields(Fields):
    """A new experiment: ``percent`` of recipients get ``variant_version`` until ``ends_at``."""

    variant_version: VersionNumber
    percent: float = Field(ge=0.01, le=MAX_EXPERIMENT_PERCENT)
    """Kept to two decimals."""
    starts_at: AwareDatetime | None = None
    """Default: now; at most 90 days ahead."""
    ends_at: AwareDatetime
    override_critical: bool = False
    """Run it on a critical-lane template (OTP, password reset, ...) all the same."""


Role = Literal["control", "variant"]


class VersionOutcome(BaseModel):
    """How the mail of one version of the template fared over the experiment's window."""

    version: int
    role: Role
    counts: dict[str, int]
    delivered_p50_ms: float | None
    delivered_p99_ms: float | None


class ExperimentReport(BaseModel):
    """An experiment with the outcomes of its control (the version active when it started)
    and its variant."""

    experiment: Experiment
    running: bool
    window_start: datetime
    window_end: datetime
    outcomes: list[VersionOutcome]


def _tenant(tenant_id: str) -> uuid.UUID:
    return uuid.UUID(tenant_id)


def critical(template: Template) -> bool:
    """Whether the template's mail travels in the critical lane (security mail: no
    experiments unless the tenant overrides it)."""
    return natural_lane(template.category, Stream.TRANSACTIONAL) is Lane.CRITICAL


def _experiment_refusal(
    template: Template, fields: ExperimentFields, starts_at: datetime, now: datetime
) -> TemplateRefused | None:
    if critical(template) and not fields.override_critical:
        return TemplateRefused(
            "experiment_not_allowed",
            f"template {template.alias!r} is {template.category} mail (critical lane): keep"
            " security flows stable, or set override_critical",
            "/override_critical",
        )
    if template.archived_at is not None:
        return TemplateRefused("template_archived", f"template {template.alias!r} is archived")
    if template.active_version is None:
        return TemplateRefused(
            "invalid_experiment",
            "activate a version first: it is what the variant is tried against",
        )
    if fields.variant_version == template.active_version:
        return TemplateRefused(
            "invalid_experiment",
            f"version {fields.variant_version} is the active version already",
            "/variant_version",
        )
    if fields.variant_version > template.latest_version:
        return TemplateRefused(
            "invalid_experiment",
            f"template {template.alias!r} has no version {fields.variant_version}",
            "/variant_version",
        )
    if starts_at > now + MAX_EXPERIMENT:
        return TemplateRefused(
            "invalid_experiment",
            f"an experiment starts within {MAX_EXPERIMENT.days} days",
            "/starts_at",
        )
    if fields.ends_at <= max(starts_at, now):
        return TemplateRefused("invalid_experiment", "ends_at must be ahead", "/ends_at")
    if fields.ends_at - starts_at > MAX_EXPERIMENT:
        return TemplateRefused(
            "invalid_experiment",
            f"an experiment runs at most {MAX_EXPERIMENT.days} days",
            "/ends_at",
        )
    return None


async def start_experiment(
    pool: asyncpg.Pool,
    tenant_id: str,
    alias: str,
    fields: ExperimentFields,
    created_by: str | None = None,
    now: datetime | None = None,
) -> Experiment | None:
    """A new experiment on ``alias`` (None: no such template). The head's row lock keeps it
    the only one not stopped and not over (``experiment_running`` otherwise)."""
    now = now or datetime.now(UTC)
    starts_at = fields.starts_at or now
    async with pool.acquire() as connection, connection.transaction():
        head = await connection.fetchrow(
            "SELECT * FROM templates WHERE tenant_id = $1 AND alias = $2 FOR UPDATE",
            _tenant(tenant_id),
            alias,
        )
        if head is None:
            return None
        if refusal := _experiment_refusal(template_of(head), fields, starts_at, now):
            raise refusal
        current = await connection.fetchval(
            "SELECT id FROM template_experiments WHERE tenant_id = $1 AND alias = $2"
            " AND stopped_at IS NULL AND ends_at > $3",
            _tenant(tenant_id),
            alias,
            now,
        )
        if current is not None:
            raise TemplateRefused(
                "experiment_running",
                f"experiment {current} on {alias!r} is not over: stop it first",
            )
        row = await connection.fetchrow(
            "INSERT INTO template_experiments (id, tenant_id, alias, variant_version, percent,"
            " starts_at, ends_at, override_critical, created_by, control_version)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING *",
            uuid.uuid4(),
            _tenant(tenant_id),
            alias,
            fields.variant_version,
            fields.percent,
            starts_at,
            fields.ends_at,
            fields.override_critical,
            created_by,
            head["active_version"],
        )
    assert row is not None
    return experiment_of(row)


async def list_experiments(
    pool: asyncpg.Pool, tenant_id: str, alias: str
) -> list[Experiment] | None:
    """A template's experiments, latest start first (None: no such template)."""
    if await fetch_template(pool, tenant_id, alias) is None:
        return None
    rows = await pool.fetch(
        "SELECT * FROM template_experiments WHERE tenant_id = $1 AND alias = $2"
        " ORDER BY starts_at DESC",
        _tenant(tenant_id),
        alias,
    )
    return [experiment_of(row) for row in rows]


def _experiment_id(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


async def _one_experiment(
    pool: asyncpg.Pool, tenant_id: str, alias: str, experiment_id: str, statement: str
) -> Experiment | None:
    """The experiment ``statement`` (given tenant $1, alias $2 and id $3) returns."""
    key = _experiment_id(experiment_id)
    if key is None:
        return None
    row = await pool.fetchrow(statement, _tenant(tenant_id), alias, key)
    return experiment_of(row) if row else None


async def fetch_experiment(
    pool: asyncpg.Pool, tenant_id: str, alias: str, experiment_id: str
) -> Experiment | None:
    return await _one_experiment(
        pool,
        tenant_id,
        alias,
        experiment_id,
        "SELECT * FROM template_experiments WHERE tenant_id = $1 AND alias = $2 AND id = $3",
    )


async def stop_experiment(
    pool: asyncpg.Pool, tenant_id: str, alias: str, experiment_id: str
) -> Experiment | None:
    """Stop an experiment now (stopping a stopped one keeps its first stop)."""
    return await _one_experiment(
        pool,
        tenant_id,
        alias,
        experiment_id,
        "UPDATE template_experiments SET stopped_at = coalesce(stopped_at, now())"
        " WHERE tenant_id = $1 AND alias = $2 AND id = $3 RETURNING *",
    )


def _window(experiment: Experiment, now: datetime) -> tuple[datetime, datetime]:
    end = min(now, experiment.ends_at, experiment.stopped_at or experiment.ends_at)
    return experiment.starts_at, max(end, experiment.starts_at + timedelta(seconds=1))


def _granularity(start: datetime, end: datetime) -> Granularity:
    """Hours while they fit in one report, days beyond."""
    hours = (end - start) / Granularity.HOUR.step
    return Granularity.HOUR if hours < MAX_BUCKETS - 1 else Granularity.DAY


async def _outcome(
    pool: asyncpg.Pool,
    tenant_id: str,
    alias: str,
    version: int,
    role: Role,
    window: tuple[datetime, datetime],
) -> VersionOutcome:
    """The figures of one version of ``alias`` over ``window``."""
    start, end = window
    query = AnalyticsQuery(
        since=start,
        until=end,
        granularity=_granularity(start, end),
        filters={"template": alias, "variant": str(version)},
    )
    totals = (await read_report(pool, tenant_id, query)).totals
    return VersionOutcome(
        version=version,
        role=role,
        counts={state.value: totals.counts.get(state.value, 0) for state in OUTCOME_STATES},
        delivered_p50_ms=totals.latency.p50_ms,
        delivered_p99_ms=totals.latency.p99_ms,
    )


async def experiment_report(
    pool: asyncpg.Pool,
    tenant_id: str,
    alias: str,
    experiment_id: str,
    now: datetime | None = None,
) -> ExperimentReport | None:
    """The experiment with the counts and accept->delivered latency of its control (the
    version active when it started) and its variant over its window, from the analytics
    aggregates (whole hours: mail of the hour the experiment started in counts too)."""
    now = now or datetime.now(UTC)
    experiment = await fetch_experiment(pool, tenant_id, alias, experiment_id)
    if experiment is None:
        return None
    window = _window(experiment, now)
    arms: list[tuple[int, Role]] = [(experiment.variant_version, "variant")]
    if experiment.control_version is not None:
        arms.insert(0, (experiment.control_version, "control"))
    outcomes = await asyncio.gather(
        *(_outcome(pool, tenant_id, alias, version, role, window) for version, role in arms)
    )
    return ExperimentReport(
        experiment=experiment,
        running=experiment.running(now),
        window_start=window[0],
        window_end=window[1],
        outcomes=list(outcomes),
    )
