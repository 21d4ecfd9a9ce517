"""API keys on the real broker and database: scopes, restrictions, rotation, revocation across
gateways, rate limits, the admin API and CLI, and the key recorded on every message."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from libs.broker import make_broker
from libs.settings import Settings
from libs.tenants import KEY_TTL_SECONDS, Tenant, create_tenant, set_limits
from libs.tracing import setup_tracing
from services.ingest.accept import Ingest
from services.ingest.api import build_api
from services.ingest.app import IngestService
from tests.integration.test_cli import sendarix
from tests.support import eventually

pytestmark = pytest.mark.integration


@asynccontextmanager
async def second_gateway(
    settings: Settings, service: IngestService, pool: asyncpg.Pool
) -> AsyncIterator[httpx.AsyncClient]:
    """Another ingest instance's gateway: its own tenant and key caches."""
    gateway = build_api(setup_tracing("ingest", settings))
    gateway.state.ingest = Ingest.on(settings, service.broker, pool)
    transport = httpx.ASGITransport(app=gateway)
    async with httpx.AsyncClient(transport=transport, base_url="http://ingest-2.test") as http:
        yield http


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def otp(**fields: Any) -> dict[str, Any]:
    body = {
        "from": "Acme <security@mail.example.test>",
        "to": ["jane@example.org"],
        "subject": "Your code",
        "text": "123456",
        "category": "otp",
    }
    return body | fields


async def new_key(
    client: httpx.AsyncClient, admin: str, **fields: Any
) -> tuple[dict[str, Any], str]:
    """A key created through the admin API: its view and its secret."""
    body = {"name": "test", "scopes": ["send", "read"]} | fields
    created = await client.post("/v1/keys", json=body, headers=bearer(admin))
    assert created.status_code == 201, created.text
    view = created.json()
    return view, view.pop("secret")


async def refused_within_seconds(client: httpx.AsyncClient, secret: str, limit: float) -> None:
    """Send with ``secret`` until it is refused 401; fail unless that happens in ``limit`` s."""
    start = time.monotonic()

    async def refused() -> dict[str, Any] | None:
        response = await client.post("/v1/messages", json=otp(), headers=bearer(secret))
        return (
            assert_problem(response, 401, "unauthorized") if response.status_code != 202 else None
        )

    await eventually(refused, timeout=limit + 1, every=0.2)
    assert time.monotonic() - start < limit


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = response.json()
    assert problem["code"] == code
    return problem


async def test_a_missing_unknown_or_revoked_key_is_401(
    client: httpx.AsyncClient, tenant: tuple[Tenant, str]
) -> None:
    admin = tenant[1]
    view, secret = await new_key(client, admin)
    assert (
        await client.post("/v1/messages", json=otp(), headers=bearer(secret))
    ).status_code == 202
    revoked = await client.delete(f"/v1/keys/{view['id']}", headers=bearer(admin))
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    await refused_within_seconds(client, secret, KEY_TTL_SECONDS + 1)
    for headers in ({}, bearer("sx_unknown")):
        problem = assert_problem(
            await client.post("/v1/messages", json=otp(), headers=headers), 401, "unauthorized"
        )
        assert problem["type"].endswith("/unauthorized")


async def test_the_first_key_has_every_scope_and_others_only_theirs(
    client: httpx.AsyncClient, tenant: tuple[Tenant, str]
) -> None:
    admin = tenant[1]
    listed = await client.get("/v1/keys", headers=bearer(admin))
    assert listed.status_code == 200
    [first] = listed.json()["keys"]
    assert first["scopes"] == ["admin", "read", "send"]
    assert "secret" not in first and first["prefix"] == admin[:8]

    _, sender = await new_key(client, admin, scopes=["send"])
    sent = await client.post("/v1/messages", json=otp(), headers=bearer(sender))
    assert sent.status_code == 202
    read = await client.get(f"/v1/messages/{sent.json()['id']}", headers=bearer(sender))
    assert "'read'" in assert_problem(read, 403, "forbidden")["detail"]
    assert (
        "'admin'"
        in assert_problem(await client.get("/v1/keys", headers=bearer(sender)), 403, "forbidden")[
            "detail"
        ]
    )

    _, reader = await new_key(client, admin, scopes=["read"])
    refused = await client.post("/v1/messages", json=otp(), headers=bearer(reader))
    assert "'send'" in assert_problem(refused, 403, "forbidden")["detail"]
    batch = await client.post(
        "/v1/messages/batch", json={"messages": [otp()]}, headers=bearer(reader)
    )
    assert_problem(batch, 403, "forbidden")


async def test_a_restricted_key_sends_only_from_its_domains_and_in_its_streams(
    client: httpx.AsyncClient, tenant: tuple[Tenant, str]
) -> None:
    admin = tenant[1]
    _, narrow = await new_key(
        client, admin, domains=["Mail.Example.Test"], streams=["transactional"]
    )
    assert (
        await client.post("/v1/messages", json=otp(), headers=bearer(narrow))
    ).status_code == 202
    elsewhere = await client.post(
        "/v1/messages", json=otp(**{"from": "a@example.test"}), headers=bearer(narrow)
    )
    problem = assert_problem(elsewhere, 403, "key_not_permitted")
    assert [e["pointer"] for e in problem["errors"]] == ["/from"]
    broadcast = await client.post(
        "/v1/messages", json=otp(stream="broadcast", category=None), headers=bearer(narrow)
    )
    problem = assert_problem(broadcast, 403, "key_not_permitted")
    assert [e["pointer"] for e in problem["errors"]] == ["/stream"]
    batch = await client.post(
        "/v1/messages/batch",
        json={"messages": [otp(), otp(**{"from": "a@example.test"})]},
        headers=bearer(narrow),
    )
    assert [r["status"] for r in batch.json()["results"]] == [202, 403]


async def test_a_key_of_another_tenant_is_not_found(
    client: httpx.AsyncClient, tenant: tuple[Tenant, str], pool: asyncpg.Pool
) -> None:
    mine, _ = await new_key(client, tenant[1])
    _, stranger = await create_tenant(pool, "stranger", ["example.test"], dev_mode=True)
    path = f"/v1/keys/{mine['id']}"
    for response in [
        await client.get(path, headers=bearer(stranger)),
        await client.patch(path, json={"name": "mine now"}, headers=bearer(stranger)),
        await client.delete(path, headers=bearer(stranger)),
        await client.post(f"{path}/rotate", headers=bearer(stranger)),
        await client.get("/v1/keys/not-a-uuid", headers=bearer(stranger)),
    ]:
        assert_problem(response, 404, "not_found")
    theirs = await client.get("/v1/keys", headers=bearer(stranger))
    assert mine["id"] not in {k["id"] for k in theirs.json()["keys"]}
    still = await client.get(path, headers=bearer(tenant[1]))
    assert still.json()["name"] == "test" and still.json()["revoked_at"] is None


async def test_the_last_admin_key_cannot_be_revoked_or_narrowed(
    client: httpx.AsyncClient, tenant: tuple[Tenant, str]
) -> None:
    admin = tenant[1]
    [first] = (await client.get("/v1/keys", headers=bearer(admin))).json()["keys"]
    path = f"/v1/keys/{first['id']}"
    assert_problem(await client.delete(path, headers=bearer(admin)), 409, "last_admin_key")
    narrowed = await client.patch(path, json={"scopes": ["send"]}, headers=bearer(admin))
    assert_problem(narrowed, 409, "last_admin_key")
    renamed = await client.patch(path, json={"name": "root"}, headers=bearer(admin))
    assert renamed.status_code == 200 and renamed.json()["scopes"] == ["admin", "read", "send"]

    _, second_admin = await new_key(client, admin, scopes=["admin"])
    assert (await client.delete(path, headers=bearer(second_admin))).status_code == 200


async def test_patch_changes_a_key_and_lifts_restrictions_with_null(
    client: httpx.AsyncClient, tenant: tuple[Tenant, str]
) -> None:
    view, _ = await new_key(client, tenant[1], domains=["mail.example.test"])
    path = f"/v1/keys/{view['id']}"
    patched = await client.patch(
        path, json={"domains": None, "streams": ["broadcast"]}, headers=bearer(tenant[1])
    )
    assert patched.status_code == 200, patched.text
    assert (patched.json()["domains"], patched.json()["streams"]) == (None, ["broadcast"])
    assert patched.json()["name"] == "test"
    bad = await client.patch(path, json={"scopes": ["root"]}, headers=bearer(tenant[1]))
    assert bad.status_code == 422 and bad.json()["errors"][0]["pointer"] == "/scopes/0"


async def test_a_rotated_key_keeps_working_for_its_overlap_only(
    client: httpx.AsyncClient, tenant: tuple[Tenant, str]
) -> None:
    admin = tenant[1]
    view, old = await new_key(client, admin, domains=["mail.example.test"])
    rotated = await client.post(f"/v1/keys/{view['id']}/rotate", headers=bearer(admin))
    assert rotated.status_code == 201, rotated.text
    new, previous = rotated.json()["key"], rotated.json()["previous"]
    assert new["id"] != view["id"] and new["domains"] == ["mail.example.test"]
    expires = datetime.fromisoformat(previous["expires_at"])
    assert abs(expires - (datetime.now(UTC) + timedelta(hours=24))) < timedelta(minutes=1)
    for secret in (old, new["secret"]):
        sent = await client.post("/v1/messages", json=otp(), headers=bearer(secret))
        assert sent.status_code == 202

    once_more = await client.post(
        f"/v1/keys/{new['id']}/rotate", json={"overlap_seconds": 1}, headers=bearer(admin)
    )
    short_lived = once_more.json()["key"]["secret"]
    assert (
        await client.post("/v1/messages", json=otp(), headers=bearer(new["secret"]))
    ).status_code == 202
    await refused_within_seconds(client, new["secret"], 2 + KEY_TTL_SECONDS)
    fresh = await client.post("/v1/messages", json=otp(), headers=bearer(short_lived))
    assert fresh.status_code == 202

    at_once = await client.post(
        f"/v1/keys/{view['id']}/rotate", json={"overlap_seconds": 0}, headers=bearer(admin)
    )
    assert at_once.status_code == 201
    await refused_within_seconds(client, old, KEY_TTL_SECONDS + 1)
    again = await client.post(f"/v1/keys/{view['id']}/rotate", headers=bearer(admin))
    assert_problem(again, 409, "key_not_usable")
    negative = await client.post(
        f"/v1/keys/{view['id']}/rotate", json={"overlap_seconds": -1}, headers=bearer(admin)
    )
    assert_problem(negative, 422, "invalid_request")


async def test_a_revoked_key_is_refused_by_another_gateway_within_5_seconds(
    client: httpx.AsyncClient,
    service: IngestService,
    settings: Settings,
    pool: asyncpg.Pool,
    tenant: tuple[Tenant, str],
) -> None:
    view, secret = await new_key(client, tenant[1])
    async with second_gateway(settings, service, pool) as other:
        warm = await other.post("/v1/messages", json=otp(), headers=bearer(secret))
        assert warm.status_code == 202  # the other instance now holds the key in memory
        revoked = await client.delete(f"/v1/keys/{view['id']}", headers=bearer(tenant[1]))
        assert revoked.status_code == 200
        await refused_within_seconds(other, secret, 5.0)


async def test_the_message_records_the_key_that_sent_it_and_the_key_its_last_use(
    client: httpx.AsyncClient, tenant: tuple[Tenant, str]
) -> None:
    view, secret = await new_key(client, tenant[1])
    assert view["last_used_at"] is None
    sent = await client.post("/v1/messages", json=otp(), headers=bearer(secret))
    message_id = sent.json()["id"]

    async def logged() -> dict[str, Any] | None:
        found = await client.get(f"/v1/messages/{message_id}", headers=bearer(secret))
        return found.json() if found.status_code == 200 else None

    assert (await eventually(logged, timeout=20))["key_id"] == view["id"]

    async def used() -> str | None:
        found = await client.get(f"/v1/keys/{view['id']}", headers=bearer(tenant[1]))
        last_used: str | None = found.json()["last_used_at"]
        return last_used

    await eventually(used, timeout=5)


async def test_over_its_rate_a_key_or_tenant_is_answered_429_with_retry_after(
    client: httpx.AsyncClient, tenant: tuple[Tenant, str], pool: asyncpg.Pool
) -> None:
    _, slow = await new_key(client, tenant[1], rate_per_second=0.5, rate_burst=2)
    statuses = [
        (await client.post("/v1/messages", json=otp(), headers=bearer(slow))) for _ in range(3)
    ]
    assert [r.status_code for r in statuses] == [202, 202, 429]
    assert_problem(statuses[2], 429, "rate_limited")
    assert int(statuses[2].headers["retry-after"]) == 2
    assert (
        await client.post("/v1/messages", json=otp(), headers=bearer(tenant[1]))
    ).status_code == 202

    small, secret = await create_tenant(pool, "small", ["example.test"], dev_mode=True)
    await set_limits(pool, small.id, rate_per_second=1.0, rate_burst=3)
    batch = {"messages": [otp(), otp(to=["a@example.org", "b@example.org"])]}
    first = await client.post("/v1/messages/batch", json=batch, headers=bearer(secret))
    assert first.status_code == 200 and [r["status"] for r in first.json()["results"]] == [202, 202]
    over = await client.post("/v1/messages/batch", json=batch, headers=bearer(secret))
    assert_problem(over, 429, "rate_limited")
    assert int(over.headers["retry-after"]) >= 1


async def test_a_gateway_whose_broker_cannot_answer_is_503_with_retry_after(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    gateway = build_api(setup_tracing("ingest", settings))
    unreachable = settings.model_copy(update={"kafka_bootstrap": "127.0.0.1:1"})
    gateway.state.ingest = Ingest.on(unreachable, make_broker("ingest", unreachable), pool)
    transport = httpx.ASGITransport(app=gateway)
    async with httpx.AsyncClient(transport=transport, base_url="http://ingest.test") as http:
        response = await http.get("/readyz")
    assert_problem(response, 503, "not_ready")
    assert int(response.headers["retry-after"]) > 0


async def test_the_cli_creates_lists_rotates_and_revokes_keys_through_the_same_code(
    settings: Settings, client: httpx.AsyncClient, tenant: tuple[Tenant, str]
) -> None:
    tenant_id = tenant[0].id
    created = await sendarix(
        settings, "key", "create", "--tenant", tenant_id, "--name", "ci",
        "--scope", "send", "--domain", "mail.example.test", "--stream", "transactional",
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    key = json.loads(created.output)
    assert (key["scopes"], key["domains"], key["streams"]) == (
        ["send"],
        ["mail.example.test"],
        ["transactional"],
    )
    sent = await client.post("/v1/messages", json=otp(), headers=bearer(key["secret"]))
    assert sent.status_code == 202

    listed = json.loads((await sendarix(settings, "key", "list", "--tenant", tenant_id)).output)
    assert [k["name"] for k in listed] == ["default", "ci"]
    assert all("secret" not in k for k in listed)

    rotated = await sendarix(
        settings, "key", "rotate", "--tenant", tenant_id, key["id"], "--overlap-seconds", "0"
    )
    assert rotated.exit_code == 0, rotated.output
    assert json.loads(rotated.output)["key"]["secret"].startswith("sx_")

    first_id = listed[0]["id"]
    refused = await sendarix(settings, "key", "revoke", "--tenant", tenant_id, first_id)
    assert refused.exit_code == 1 and "last_admin_key" in refused.output
    foreign = await sendarix(settings, "key", "revoke", "--tenant", str(uuid.uuid4()), first_id)
    assert foreign.exit_code == 1 and "no such key" in foreign.output
