"""``GET /v1/analytics`` and ``/v1/analytics/alerts`` through ingest's gateway, on the real
database: the caller's tenant only, the read scope, groups and filters, refused ranges."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from libs import analytics_report
from libs.tenants import Tenant
from tests.integration.test_api_keys import assert_problem, bearer, new_key
from tests.integration.test_rules_api import other_tenant

pytestmark = pytest.mark.integration

HOUR = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


async def counted(
    pool: asyncpg.Pool, tenant_id: str, rows: list[tuple[str, str, str, int]]
) -> None:
    """Hour rows of (lane, recipient domain, event type, count) in the current hour."""
    await pool.executemany(
        "INSERT INTO analytics_counts VALUES ($1, 'hour', $2, 'transactional', $3, 'otp', 'otp',"
        " '', $4, $5, '', $6)",
        [(uuid.UUID(tenant_id), HOUR, *row) for row in rows],
    )


async def test_a_tenant_reads_its_own_figures_grouped_and_filtered(
    client: httpx.AsyncClient, pool: asyncpg.Pool, tenant: tuple[Tenant, str]
) -> None:
    tenant_id, key = tenant[0].id, tenant[1]
    await counted(
        pool,
        tenant_id,
        [
            ("critical", "gmail.com", "delivered", 90),
            ("critical", "gmail.com", "bounced", 10),
            ("normal", "yahoo.com", "delivered", 50),
            ("normal", "yahoo.com", "deferred", 50),
        ],
    )
    other, other_key = await other_tenant(pool)
    await counted(pool, other.id, [("critical", "gmail.com", "bounced", 1000)])

    whole = await client.get("/v1/analytics", headers=bearer(key))
    grouped = await client.get(
        "/v1/analytics", params={"group_by": "recipient_domain"}, headers=bearer(key)
    )
    critical = await client.get("/v1/analytics", params={"lane": "critical"}, headers=bearer(key))
    theirs = await client.get("/v1/analytics", headers=bearer(other_key))

    assert whole.status_code == 200, whole.text
    totals = whole.json()["totals"]
    assert (totals["counts"]["delivered"], totals["counts"]["bounced"]) == (140, 10)
    assert totals["rates"]["bounce"] == 10 / 150
    assert totals["latency"] == {"p50_ms": None, "p95_ms": None, "p99_ms": None, "sample": 0}
    assert [datetime.fromisoformat(b["start"]) for b in whole.json()["buckets"]] == [HOUR]
    by_domain = {b["group"]["recipient_domain"]: b["rates"] for b in grouped.json()["buckets"]}
    assert by_domain["gmail.com"]["bounce"] == 0.1
    assert by_domain["yahoo.com"]["deferral"] == 0.5
    assert critical.json()["totals"]["counts"]["deferred"] == 0
    assert theirs.json()["totals"]["counts"]["bounced"] == 1000


async def test_analytics_needs_the_read_scope_and_sensible_ranges(
    client: httpx.AsyncClient, tenant: tuple[Tenant, str]
) -> None:
    _, send_only = await new_key(client, tenant[1], scopes=["send"])
    long_ago = (HOUR - timedelta(days=100)).isoformat()

    assert_problem(await client.get("/v1/analytics", headers=bearer(send_only)), 403, "forbidden")
    assert_problem(
        await client.get("/v1/analytics/alerts", headers=bearer(send_only)), 403, "forbidden"
    )
    for params in (
        {"since": long_ago, "granularity": "hour"},
        {
            "since": (HOUR - timedelta(days=3)).isoformat(),
            "granularity": "minute",
            "until": (HOUR - timedelta(days=2, hours=23)).isoformat(),
        },
        {"granularity": "week"},
        {"group_by": "tenant_id"},
        {"tenant_id": "not-an-id"},
    ):
        answer = await client.get("/v1/analytics", params=params, headers=bearer(tenant[1]))
        assert_problem(answer, 422, "invalid_parameter")
    another = {"tenant_id": str(uuid.uuid4())}  # only an operator names another tenant
    answer = await client.get("/v1/analytics", params=another, headers=bearer(tenant[1]))
    assert_problem(answer, 403, "operator_only")
    answer = await client.get(
        "/v1/analytics/alerts", params={"status": "closed"}, headers=bearer(tenant[1])
    )
    assert_problem(answer, 422, "invalid_parameter")
    days = await client.get(
        "/v1/analytics", params={"since": long_ago, "granularity": "day"}, headers=bearer(tenant[1])
    )
    assert days.status_code == 200, days.text


async def alerted(
    pool: asyncpg.Pool,
    tenant_id: str,
    kind: str = "bounce_rate",
    resolved_at: datetime | None = None,
) -> None:
    """An alert of the tenant, opened three hours ago (resolved at ``resolved_at``, if given)."""
    opened = HOUR - timedelta(hours=3)
    await pool.execute(
        "INSERT INTO alerts (id, tenant_id, kind, severity, value, threshold, sample,"
        " window_seconds, opened_at, resolved_at, last_value, last_sample, evaluated_at)"
        " VALUES ($1, $2, $3, 'critical', 0.5, 0.05, 200, 3600, $4, $5, 0.5, 200, $4)",
        uuid.uuid4(),
        uuid.UUID(tenant_id),
        kind,
        opened,
        resolved_at,
    )


async def test_alerts_are_listed_by_status_for_their_tenant_only(
    client: httpx.AsyncClient, pool: asyncpg.Pool, tenant: tuple[Tenant, str]
) -> None:
    await alerted(pool, tenant[0].id)
    await alerted(pool, tenant[0].id, "complaint_rate", HOUR - timedelta(hours=2))
    _, other_key = await other_tenant(pool)

    async def kinds(key: str, status: str | None = None) -> list[str]:
        params = {"status": status} if status else {}
        answer = await client.get("/v1/analytics/alerts", params=params, headers=bearer(key))
        assert answer.status_code == 200, answer.text
        return [alert["kind"] for alert in answer.json()["alerts"]]

    assert await kinds(tenant[1]) == ["bounce_rate"]
    assert await kinds(tenant[1], "resolved") == ["complaint_rate"]
    assert sorted(await kinds(tenant[1], "all")) == ["bounce_rate", "complaint_rate"]
    assert await kinds(other_key, "all") == []


async def test_a_report_of_more_figures_than_the_gateway_holds_is_refused(
    client: httpx.AsyncClient,
    pool: asyncpg.Pool,
    tenant: tuple[Tenant, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tenant_id, key = tenant[0].id, tenant[1]
    await counted(pool, tenant_id, [("bulk", f"d{n}.example", "delivered", 1) for n in range(4)])
    monkeypatch.setattr(analytics_report, "MAX_ROWS", 3)

    grouped = await client.get(
        "/v1/analytics", params={"group_by": "recipient_domain"}, headers=bearer(key)
    )
    whole = await client.get("/v1/analytics", headers=bearer(key))

    assert_problem(grouped, 422, "report_too_large")
    assert whole.status_code == 200, whole.text
    assert whole.json()["totals"]["counts"]["delivered"] == 4
