"""``/v1/analytics``: the caller's counts, rates and latency per time bucket, and its alerts.

Read-only, ``read`` scope, the caller's tenant; an operator's key may name any tenant with
``tenant_id`` (without it: every tenant's figures together). The figures come from the
aggregates the analytics service keeps from the event stream (``libs.analytics_report``), a
second or so behind the events.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from libs.alerts import AlertStatus, AlertView, list_alerts
from libs.analytics import DIMENSIONS, Granularity
from libs.analytics_report import (
    FILTERS,
    MAX_BUCKETS,
    AnalyticsQuery,
    AnalyticsReport,
    ReportTooLarge,
    read_report,
    refusal,
)
from libs.tenants import Caller
from services.ingest.accept import Ingest
from services.ingest.http_deps import IngestDep, ReadCaller, problems, searched_tenant
from services.ingest.problems import ProblemError
from services.ingest.search import (
    bad_parameter,
    grouped_parameters,
    parse_choice,
    parse_limit,
    parse_moment,
    parse_tenant_id,
    unstorable,
)
from services.ingest.validate import Violation

router = APIRouter(prefix="/v1/analytics", tags=["analytics"])

DEFAULT_RANGE = timedelta(hours=24)
MAX_ALERTS = 500
Filter = Annotated[str | None, Query()]
PARAMETERS = frozenset({"tenant_id", "since", "until", "granularity", "group_by", *FILTERS})

DESCRIPTION = f"""Counts per event type, rates and accept->delivered latency of the caller's
messages, per time bucket (and group), with totals over the whole range.

- `tenant_id`: for an operator's key, the tenant to report on (without it: every tenant
  together); a tenant's key may name only its own tenant (another: 403 `operator_only`).

- `since` (inclusive, floored to its bucket), `until` (exclusive): RFC 3339; default the last
  24 hours. `granularity`: `minute`, `hour` (default) or `day`; at most {MAX_BUCKETS} buckets,
  and minutes only within their retention (`SENDARIX_ANALYTICS_MINUTE_RETENTION_HOURS`).
- Filters (exact): `stream`, `lane`, `category`, `template`, `variant` (the template
  version), `recipient_domain`.
- `group_by`: a comma-separated list of {", ".join(DIMENSIONS)}.
- Rates: `delivery` = delivered / (delivered + bounced + failed); `bounce` = bounced /
  (delivered + bounced); `complaint` = complained / delivered; `deferral` = deferred /
  (delivered + bounced + deferred); null when nothing to divide by.
- Latency: p50/p95/p99 in ms of accepted -> delivered, from a histogram of 40 log-spaced bins
  (10 ms to 1 day).
"""


def parse_analytics(
    params: Sequence[tuple[str, str]], now: datetime
) -> AnalyticsQuery | list[Violation]:
    """The report the query parameters ask for, or what is wrong with each."""
    given = grouped_parameters(params, PARAMETERS)
    if isinstance(given, list):
        return given
    single = {name: values[0] for name, values in given.items()}
    checks: dict[str, Any] = {
        "until": parse_moment("until", single["until"]) if "until" in single else now,
        "granularity": parse_choice("granularity", single.get("granularity", "hour"), Granularity),
    }
    if "since" in single:
        checks["since"] = parse_moment("since", single["since"])
    group_by = tuple(name for name in single.get("group_by", "").split(",") if name)
    if unknown := [name for name in group_by if name not in DIMENSIONS]:
        checks["group_by"] = bad_parameter(
            "group_by", f"{', '.join(unknown)}: group by {', '.join(DIMENSIONS)}"
        )
    violations = [v for v in checks.values() if isinstance(v, Violation)] + unstorable(given)
    if violations:
        return violations
    return AnalyticsQuery(
        since=checks.get("since", checks["until"] - DEFAULT_RANGE),
        until=checks["until"],
        granularity=checks["granularity"],
        filters={name: single[name] for name in FILTERS if name in single},
        group_by=tuple(dict.fromkeys(group_by)),
    )


@router.get(
    "",
    response_model=AnalyticsReport,
    responses=problems(401, 403, 422),
    summary="Counts, rates and latency per time bucket",
    description=DESCRIPTION,
)
async def analytics(
    request: Request,
    ingest: IngestDep,
    caller: ReadCaller,
    tenant_id: Filter = None,
    since: Filter = None,
    until: Filter = None,
    granularity: Filter = None,
    group_by: Filter = None,
    stream: Filter = None,
    lane: Filter = None,
    category: Filter = None,
    template: Filter = None,
    variant: Filter = None,
    recipient_domain: Filter = None,
) -> AnalyticsReport:
    """Parameters are declared for the OpenAPI document; ``parse_analytics`` reads them."""
    now = datetime.now(UTC)
    query = parse_analytics(request.query_params.multi_items(), now)
    if isinstance(query, list):
        raise ProblemError.of(query)
    retention = timedelta(hours=ingest.settings.analytics_minute_retention_hours)
    if why := refusal(query, now, retention):
        raise ProblemError.of([bad_parameter("since", why)])
    try:
        return await read_report(ingest.pool, _tenant(ingest, caller, tenant_id), query)
    except ReportTooLarge as error:
        raise ProblemError("report_too_large", str(error)) from None


class AlertList(BaseModel):
    """Alerts, the most recently opened first."""

    alerts: list[AlertView]


@router.get(
    "/alerts",
    response_model=AlertList,
    responses=problems(401, 403, 422),
    summary="Deliverability alerts",
)
async def alerts(
    ingest: IngestDep,
    caller: ReadCaller,
    tenant_id: Filter = None,
    status: Filter = None,
    limit: Filter = None,
) -> AlertList:
    """The tenant's alerts: `status` `open` (default), `resolved` or `all`; `limit` 1 to
    500 (default 100); `tenant_id` as for the report (an operator without it: every
    tenant's alerts)."""
    checked = parse_choice("status", status or AlertStatus.OPEN.value, AlertStatus)
    count = parse_limit(limit, MAX_ALERTS) if limit is not None else 100
    violations = [v for v in (checked, count) if isinstance(v, Violation)]
    if violations:
        raise ProblemError.of(violations)
    assert isinstance(checked, AlertStatus) and isinstance(count, int)
    tenant = _tenant(ingest, caller, tenant_id)
    return AlertList(alerts=await list_alerts(ingest.pool, tenant, checked, count))


def _tenant(ingest: Ingest, caller: Caller, requested: str | None) -> str | None:
    """The tenant whose figures the caller gets (None: every tenant's, for an operator)."""
    if requested is not None:
        checked = parse_tenant_id(requested)
        if isinstance(checked, Violation):
            raise ProblemError.of([checked])
        requested = checked
    return searched_tenant(ingest, caller, requested)
