"""Who reads which messages: a tenant's key only its own, by id, raw bytes or search, whatever
tenant it names; an operator's key every tenant's (the support console relies on both)."""

from __future__ import annotations

import uuid
import zlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from libs.settings import Settings
from libs.tenants import Tenant, create_tenant
from services.ingest.app import IngestService
from tests.integration.test_analytics_api import alerted, counted
from tests.integration.test_api_keys import bearer, new_key
from tests.integration.test_message_search import auth, found, logged
from tests.support import started

pytestmark = pytest.mark.integration

EML = b"From: app@example.test\r\nTo: shared@example.org\r\nSubject: hi\r\n\r\nhello\r\n"


@pytest.fixture(scope="module")
async def operator(pool: asyncpg.Pool) -> tuple[Tenant, str]:
    return await create_tenant(pool, f"ops-{uuid.uuid4().hex[:6]}", ["example.test"], dev_mode=True)


@pytest.fixture(scope="module")
async def service(settings: Settings, operator: tuple[Tenant, str]) -> AsyncIterator[IngestService]:
    """ingest, with the module's operator tenant (named by id)."""
    changed = {"http_port": 0, "operator_tenant": operator[0].id}
    async with started(IngestService(settings.model_copy(update=changed))) as running:
        yield running


async def sent(pool: asyncpg.Pool, tenant_id: str, recipient: str, at: datetime) -> str:
    """A message of the tenant, logged and with its raw bytes kept as the sender keeps them."""
    message_id = await logged(pool, tenant_id, at, recipient=recipient)
    await pool.execute(
        "INSERT INTO message_raw (message_id, tenant_id, attempt, content) VALUES ($1, $2, 1, $3)",
        uuid.UUID(message_id),
        uuid.UUID(tenant_id),
        zlib.compress(EML),
    )
    return message_id


async def test_a_tenant_never_reads_another_tenants_message(
    client: httpx.AsyncClient, pool: asyncpg.Pool, tenant: tuple[Tenant, str]
) -> None:
    recipient = f"shared-{uuid.uuid4().hex[:8]}@example.org"
    stranger = await create_tenant(pool, "stranger", ["example.test"], dev_mode=True)
    mine = await sent(pool, tenant[0].id, recipient, datetime.now(UTC))

    for path in (f"/v1/messages/{mine}", f"/v1/messages/{mine}/raw"):
        response = await client.get(path, headers=auth(stranger))
        assert (response.status_code, response.json()["code"]) == (404, "not_found"), path
    assert await found(client, stranger, recipient=recipient) == []
    assert await found(client, stranger, recipient=recipient, tenant_id=stranger[0].id) == []
    response = await client.get(
        "/v1/messages",
        params={"recipient": recipient, "tenant_id": tenant[0].id},
        headers=auth(stranger),
    )
    assert (response.status_code, response.json()["code"]) == (403, "operator_only")

    own = await client.get(f"/v1/messages/{mine}", headers=auth(tenant))
    assert own.json()["tenant_id"] == tenant[0].id
    assert (await client.get(f"/v1/messages/{mine}/raw", headers=auth(tenant))).content == EML
    assert await found(client, tenant, recipient=recipient, tenant_id=tenant[0].id) == [mine]


async def test_an_operator_reads_and_finds_every_tenants_messages(
    client: httpx.AsyncClient,
    pool: asyncpg.Pool,
    tenant: tuple[Tenant, str],
    operator: tuple[Tenant, str],
) -> None:
    recipient = f"shared-{uuid.uuid4().hex[:8]}@example.org"
    other, _ = await create_tenant(pool, "other", ["example.test"], dev_mode=True)
    now = datetime.now(UTC)
    older = await sent(pool, tenant[0].id, recipient, now - timedelta(minutes=1))
    newer = await sent(pool, other.id, recipient, now)

    view = await client.get(f"/v1/messages/{older}", headers=auth(operator))
    assert view.status_code == 200 and view.json()["tenant_id"] == tenant[0].id
    raw = await client.get(f"/v1/messages/{newer}/raw", headers=auth(operator))
    assert raw.status_code == 200 and raw.content == EML

    assert await found(client, operator, recipient=recipient) == [newer, older]
    assert await found(client, operator, recipient=recipient, tenant_id=tenant[0].id) == [older]
    assert await found(client, operator, recipient=recipient, tenant_id=other.id) == [newer]
    first = await client.get(
        "/v1/messages", params={"recipient": recipient, "limit": 1}, headers=auth(operator)
    )
    cursor = first.json()["next_cursor"]
    assert [m["tenant_id"] for m in first.json()["messages"]] == [other.id]
    assert await found(client, operator, recipient=recipient, limit=1, cursor=cursor) == [older]


async def test_an_operators_read_key_is_a_tenants_key(
    client: httpx.AsyncClient, pool: asyncpg.Pool, operator: tuple[Tenant, str]
) -> None:
    """Only an admin key of the operator tenant is an operator's."""
    other, _ = await create_tenant(pool, "other", ["example.test"], dev_mode=True)
    theirs = await sent(pool, other.id, "someone@example.org", datetime.now(UTC))
    _, reader = await new_key(client, operator[1], scopes=["read"])
    response = await client.get(f"/v1/messages/{theirs}", headers=bearer(reader))
    assert response.status_code == 404


async def test_figures_and_alerts_follow_the_same_rule(
    client: httpx.AsyncClient,
    pool: asyncpg.Pool,
    tenant: tuple[Tenant, str],
    operator: tuple[Tenant, str],
) -> None:
    """The deliverability page's API: a tenant its own figures and alerts only; an operator
    one named tenant's, or every tenant's together."""
    stranger = await create_tenant(pool, "stranger", ["example.test"], dev_mode=True)
    for owner, count in ((tenant, 7), (stranger, 5)):
        await counted(pool, owner[0].id, [("critical", "gmail.com", "bounced", count)])
        await alerted(pool, owner[0].id)

    async def bounced(key: tuple[Tenant, str], **params: str) -> int:
        answer = await client.get("/v1/analytics", params=params, headers=auth(key))
        assert answer.status_code == 200, answer.text
        count: int = answer.json()["totals"]["counts"]["bounced"]
        return count

    async def alerts_of(key: tuple[Tenant, str], **params: str) -> set[str]:
        answer = await client.get("/v1/analytics/alerts", params=params, headers=auth(key))
        assert answer.status_code == 200, answer.text
        return {alert["tenant_id"] for alert in answer.json()["alerts"]}

    assert await bounced(stranger) == 5
    assert await bounced(operator, tenant_id=tenant[0].id) == 7
    assert await bounced(operator) >= 12  # every tenant's together
    assert await alerts_of(stranger) == {stranger[0].id}
    assert await alerts_of(operator, tenant_id=tenant[0].id) == {tenant[0].id}
    assert {tenant[0].id, stranger[0].id} <= await alerts_of(operator)
    for path in ("/v1/analytics", "/v1/analytics/alerts"):
        refused = await client.get(path, params={"tenant_id": tenant[0].id}, headers=auth(stranger))
        assert (refused.status_code, refused.json()["code"]) == (403, "operator_only")
    malformed = await client.get("/v1/analytics", params={"tenant_id": "x"}, headers=auth(operator))
    assert malformed.status_code == 422
