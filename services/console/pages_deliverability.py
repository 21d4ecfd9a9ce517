"""``/deliverability``: the tenant's rates and the critical lane's latency over time, by
recipient domain, and its open alerts — all from ``GET /v1/analytics``.

A tenant sees its own figures; an operator sees every tenant's together, or one tenant's when
it names its id (the API's ``tenant_id``).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from libs.analytics import rates
from services.console.charts import Chart, Series, draw, milliseconds, percent, table_rows
from services.console.gateway import Gateway, GatewayDep, GatewayProblem
from services.console.rendering import page
from services.console.session import SessionDep

router = APIRouter()

RANGES = {
    "1h": timedelta(hours=1),
    "6h": timedelta(hours=6),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}
BUCKETS = ("minute", "hour", "day")
DEFAULT_BUCKET = {"1h": "minute", "6h": "minute", "24h": "hour", "7d": "hour", "30d": "day"}
RATE_SERIES = (
    ("delivery", "Delivered", "#1b7f3b"),
    ("bounce", "Bounced", "#b3261e"),
    ("complaint", "Complained", "#7b3fa0"),
    ("deferral", "Deferred", "#a15c00"),
)
"""The rates drawn: the report's key, the legend's name, the colour."""
LATENCY_SERIES = (("p50_ms", "p50", "#1f5fbf"), ("p99_ms", "p99", "#b3261e"))
DOMAIN_COUNTS = ("delivered", "bounced", "complained", "deferred")


def _series(
    buckets: list[dict[str, Any]], part: str, drawn: tuple[tuple[str, str, str], ...]
) -> tuple[Series, ...]:
    return tuple(
        Series(
            name,
            colour,
            tuple((datetime.fromisoformat(b["start"]), b[part][key]) for b in buckets),
        )
        for key, name, colour in drawn
    )


def by_domain(report: dict[str, Any]) -> list[dict[str, Any]]:
    """A report grouped by recipient domain, summed over its buckets: counts and rates per
    domain, the most mail first."""
    counts: defaultdict[str, defaultdict[str, int]] = defaultdict(lambda: defaultdict(int))
    for bucket in report["buckets"]:
        domain = bucket["group"].get("recipient_domain") or "(unknown)"
        for state, count in bucket["counts"].items():
            counts[domain][state] += count
    rows = [
        {"domain": domain, "counts": dict(tally), "rates": rates(tally)}
        for domain, tally in counts.items()
    ]
    return sorted(rows, key=lambda row: (-sum(row["counts"].values()), row["domain"]))


async def _figures(gw: Gateway, params: dict[str, Any]) -> dict[str, Any]:
    overall, critical, domains, alerts = await asyncio.gather(
        gw.get("/v1/analytics", params=params),
        gw.get("/v1/analytics", params={**params, "lane": "critical"}),
        gw.get("/v1/analytics", params={**params, "group_by": "recipient_domain"}),
        gw.get("/v1/analytics/alerts", params={"tenant_id": params.get("tenant_id")}),
    )
    return {"overall": overall, "critical": critical, "domains": domains, "alerts": alerts}


@router.get("/deliverability")
async def deliverability(
    request: Request,
    session: SessionDep,
    gw: GatewayDep,
    period: Annotated[str, Query(alias="range")] = "24h",
    bucket: str = "",
    recipient_domain: str = "",
    tenant_id: str = "",
) -> HTMLResponse:
    period = period if period in RANGES else "24h"
    bucket = bucket if bucket in BUCKETS else DEFAULT_BUCKET[period]
    until = datetime.now(UTC)
    since = until - RANGES[period]
    params = {
        "since": since.isoformat(),
        "until": until.isoformat(),
        "granularity": bucket,
        "recipient_domain": recipient_domain.strip().lower(),
        "tenant_id": tenant_id.strip() if session.operator else "",
    }
    context: dict[str, Any] = {
        "ranges": RANGES,
        "buckets": BUCKETS,
        "chosen": {
            "range": period,
            "bucket": bucket,
            "recipient_domain": params["recipient_domain"],
            "tenant_id": params["tenant_id"],
        },
        "charts": [],
        "problem": "",
    }
    try:
        figures = await _figures(gw, params)
    except GatewayProblem as problem:
        if problem.status not in (403, 422):
            raise
        context["problem"] = problem.detail
        return page(request, session, "deliverability.html", active="deliverability", **context)
    charts = [
        Chart(
            "Delivered, bounced, complained and deferred rates",
            "Rate",
            since,
            until,
            _series(figures["overall"]["buckets"], "rates", RATE_SERIES),
            percent,
        ),
        Chart(
            "Critical lane: accepted to delivered, p50 and p99",
            "Latency",
            since,
            until,
            _series(figures["critical"]["buckets"], "latency", LATENCY_SERIES),
            milliseconds,
        ),
    ]
    context["charts"] = [
        {"chart": chart, "svg": draw(chart, f"chart-{n}"), "rows": table_rows(chart)}
        for n, chart in enumerate(charts)
    ]
    context["totals"] = figures["overall"]["totals"]
    context["domains"] = by_domain(figures["domains"])
    context["domain_counts"] = DOMAIN_COUNTS
    context["alerts"] = figures["alerts"]["alerts"]
    context["percent"] = percent
    context["milliseconds"] = milliseconds
    return page(request, session, "deliverability.html", active="deliverability", **context)
