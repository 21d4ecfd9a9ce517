"""``/v1/webhooks`` and ``sendarix webhook`` on the real database: the secret shown once, tenant
isolation, scopes, refused targets, rotation, re-enabling, the attempt log's pages, replays."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from libs.settings import Settings
from libs.tenants import Tenant, create_tenant
from libs.webhook_endpoints import disable_endpoint
from schemas.events import DeliveryEvent, EventData, MessageState, delivery_event
from services.ingest.recorder import record_all
from tests.integration.test_api_keys import assert_problem, bearer, new_key
from tests.integration.test_cli import sendarix
from tests.support import logged_delivered

pytestmark = pytest.mark.integration

HOOK = "http://127.0.0.1:9999/hook"
"""Loopback on an unprivileged port none of the platform's servers uses (allowed in dev mode,
which the test stack runs in); nothing is posted here."""


async def logged_events(
    pool: asyncpg.Pool, tenant_id: str, *states: MessageState
) -> list[DeliveryEvent]:
    """Events of one delivered message of the tenant, in the log as the recorder writes them."""
    message = await logged_delivered(pool, "jane@example.org", tenant_id=tenant_id)
    data = EventData(
        message_id=str(message["id"]),
        tenant_id=tenant_id,
        trace_id=message["trace_id"],
        service="sender",
    )
    events = [delivery_event(state, data, datetime.now(UTC)) for state in states]
    await record_all(pool, [(e, e.model_dump_json().encode()) for e in events])
    return events


async def test_endpoints_are_their_tenants_only_and_show_their_secret_once(
    client: httpx.AsyncClient, pool: asyncpg.Pool, tenant: tuple[Tenant, str]
) -> None:
    admin = bearer(tenant[1])
    body = {"url": HOOK, "description": "crm", "event_types": ["sendarix.message.bounced"]}
    created = await client.post("/v1/webhooks", json=body, headers=admin)
    assert created.status_code == 201, created.text
    endpoint = created.json()
    assert endpoint["secret"].startswith("whsec_") and endpoint["enabled"]
    assert endpoint["event_types"] == ["sendarix.message.bounced"] and endpoint["streams"] == []
    shown = await client.get(f"/v1/webhooks/{endpoint['id']}", headers=admin)
    assert shown.status_code == 200 and "secret" not in shown.json()
    listed = (await client.get("/v1/webhooks", headers=admin)).json()["webhooks"]
    assert [e["id"] for e in listed] == [endpoint["id"]] and "secret" not in listed[0]

    _, stranger = await create_tenant(pool, "stranger", [], dev_mode=True)
    for method in ("GET", "PATCH", "DELETE"):
        other = await client.request(
            method, f"/v1/webhooks/{endpoint['id']}", json={}, headers=bearer(stranger)
        )
        assert_problem(other, 404, "not_found")
    _, reader = await new_key(client, tenant[1], scopes=["read"])
    assert (await client.get("/v1/webhooks", headers=bearer(reader))).status_code == 200
    refused = await client.post("/v1/webhooks", json=body, headers=bearer(reader))
    assert_problem(refused, 403, "forbidden")

    deleted = await client.delete(f"/v1/webhooks/{endpoint['id']}", headers=admin)
    assert deleted.status_code == 200
    gone = await client.get(f"/v1/webhooks/{endpoint['id']}", headers=admin)
    assert_problem(gone, 404, "not_found")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://169.254.169.254/", "metadata"),
        ("http://10.1.2.3/", "private"),
        ("http://[fe80::1]/", "link-local"),
        ("https://user:secret@example.com/", "user name"),
        ("file:///etc/passwd", "https or http"),
    ],
)
async def test_targets_the_platform_may_not_post_to_are_refused(
    client: httpx.AsyncClient, tenant: tuple[Tenant, str], url: str, reason: str
) -> None:
    refused = await client.post("/v1/webhooks", json={"url": url}, headers=bearer(tenant[1]))
    problem = assert_problem(refused, 422, "webhook_target_refused")
    assert reason in problem["detail"] and problem["errors"][0]["pointer"] == "/url"


async def test_rotation_and_re_enabling(
    client: httpx.AsyncClient, pool: asyncpg.Pool, tenant: tuple[Tenant, str]
) -> None:
    admin = bearer(tenant[1])
    endpoint = (await client.post("/v1/webhooks", json={"url": HOOK}, headers=admin)).json()
    rotated = await client.post(f"/v1/webhooks/{endpoint['id']}/rotate-secret", headers=admin)
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["secret"] != endpoint["secret"]
    until = datetime.fromisoformat(rotated.json()["previous_secret_expires_at"])
    assert timedelta(hours=23) < until - datetime.now(UTC) <= timedelta(hours=24)
    bad = await client.post(
        f"/v1/webhooks/{endpoint['id']}/rotate-secret",
        json={"overlap_seconds": -1},
        headers=admin,
    )
    assert bad.status_code == 422

    await disable_endpoint(pool, uuid.UUID(endpoint["id"]), "every post failed")
    disabled = (await client.get(f"/v1/webhooks/{endpoint['id']}", headers=admin)).json()
    assert (disabled["enabled"], disabled["disabled_reason"]) == (False, "every post failed")
    enabled = await client.patch(
        f"/v1/webhooks/{endpoint['id']}", json={"enabled": True}, headers=admin
    )
    assert enabled.status_code == 200, enabled.text
    assert (enabled.json()["enabled"], enabled.json()["disabled_reason"]) == (True, None)
    unknown = await client.patch(
        f"/v1/webhooks/{endpoint['id']}", json={"event_types": ["nope"]}, headers=admin
    )
    assert_problem(unknown, 422, "unknown_event_type")


async def test_attempt_log_pages_newest_first(
    client: httpx.AsyncClient, pool: asyncpg.Pool, tenant: tuple[Tenant, str]
) -> None:
    admin = bearer(tenant[1])
    endpoint = (await client.post("/v1/webhooks", json={"url": HOOK}, headers=admin)).json()
    for code in (500, 503, 200):
        await pool.execute(
            "INSERT INTO webhook_attempts (endpoint_id, event_id, event_type, attempted_at,"
            " status_code, latency_ms) VALUES ($1, $2, 'sendarix.message.delivered', now(), $3, 4)",
            uuid.UUID(endpoint["id"]),
            uuid.uuid4(),
            code,
        )
    first = await client.get(f"/v1/webhooks/{endpoint['id']}/attempts?limit=2", headers=admin)
    assert first.status_code == 200, first.text
    assert [a["status_code"] for a in first.json()["attempts"]] == [200, 503]
    cursor = first.json()["next_cursor"]
    second = await client.get(
        f"/v1/webhooks/{endpoint['id']}/attempts?limit=2&cursor={cursor}", headers=admin
    )
    assert [a["status_code"] for a in second.json()["attempts"]] == [500]
    assert second.json()["next_cursor"] is None
    assert first.json()["attempts"][0]["message_id"] is None  # no such event in the log


async def test_an_attempt_names_its_message_and_its_next_post(
    client: httpx.AsyncClient, pool: asyncpg.Pool, tenant: tuple[Tenant, str]
) -> None:
    admin = bearer(tenant[1])
    endpoint = (await client.post("/v1/webhooks", json={"url": HOOK}, headers=admin)).json()
    [event] = await logged_events(pool, tenant[0].id, MessageState.DELIVERED)
    path = f"/v1/webhooks/{endpoint['id']}"
    assert (await client.post(f"{path}/replay", json={"event_id": event.id}, headers=admin)).json()
    await pool.execute(
        "INSERT INTO webhook_attempts (endpoint_id, event_id, event_type, attempted_at,"
        " status_code, latency_ms) VALUES ($1, $2, $3, now(), 503, 4)",
        uuid.UUID(endpoint["id"]),
        uuid.UUID(event.id),
        event.type,
    )
    due = await pool.fetchval(
        "SELECT due_at FROM webhook_queue WHERE event_id = $1", uuid.UUID(event.id)
    )

    [owed] = (await client.get(f"{path}/attempts", headers=admin)).json()["attempts"]
    assert owed["message_id"] == event.subject
    assert datetime.fromisoformat(owed["next_attempt_at"]) == due
    await pool.execute(
        "UPDATE webhook_queue SET status = 'delivered' WHERE event_id = $1", uuid.UUID(event.id)
    )
    [settled] = (await client.get(f"{path}/attempts", headers=admin)).json()["attempts"]
    assert settled["next_attempt_at"] is None


async def test_replay_queues_logged_events_again(
    client: httpx.AsyncClient, pool: asyncpg.Pool, tenant: tuple[Tenant, str]
) -> None:
    admin = bearer(tenant[1])
    endpoint = (await client.post("/v1/webhooks", json={"url": HOOK}, headers=admin)).json()
    events = await logged_events(pool, tenant[0].id, MessageState.ACCEPTED, MessageState.DELIVERED)
    path = f"/v1/webhooks/{endpoint['id']}/replay"

    one = await client.post(path, json={"event_id": events[1].id}, headers=admin)
    assert one.status_code == 202, one.text
    assert one.json() == {"queued": 1}
    since = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    ranged = await client.post(path, json={"since": since}, headers=admin)
    assert ranged.json() == {"queued": 2}
    rows = await pool.fetch(
        "SELECT event_id::text, status, body FROM webhook_queue WHERE endpoint_id = $1",
        uuid.UUID(endpoint["id"]),
    )
    assert {r["event_id"] for r in rows} == {e.id for e in events}
    assert all(r["status"] == "pending" and json.loads(r["body"])["id"] for r in rows)
    both = await client.post(path, json={"event_id": events[0].id, "since": since}, headers=admin)
    assert both.status_code == 422


async def test_the_cli_manages_endpoints(
    settings: Settings, pool: asyncpg.Pool, tenant: tuple[Tenant, str]
) -> None:
    tenant_id = tenant[0].id
    created = await sendarix(
        settings, "webhook", "create", "--tenant", tenant_id, HOOK, "--stream", "broadcast"
    )
    assert created.exit_code == 0, created.output
    endpoint = json.loads(created.output)
    assert endpoint["secret"].startswith("whsec_") and endpoint["streams"] == ["broadcast"]
    listed = json.loads((await sendarix(settings, "webhook", "list", "--tenant", tenant_id)).output)
    assert [e["id"] for e in listed] == [endpoint["id"]]
    updated = await sendarix(
        settings, "webhook", "update", "--tenant", tenant_id, endpoint["id"], "--disable"
    )
    assert json.loads(updated.output)["enabled"] is False
    rotated = await sendarix(settings, "webhook", "rotate", "--tenant", tenant_id, endpoint["id"])
    assert json.loads(rotated.output)["secret"] != endpoint["secret"]
    attempts = await sendarix(
        settings, "webhook", "attempts", "--tenant", tenant_id, endpoint["id"]
    )
    assert json.loads(attempts.output) == []
    replayed = await sendarix(
        settings,
        "webhook",
        "replay",
        "--tenant",
        tenant_id,
        endpoint["id"],
        "--since",
        "2026-01-01",
    )
    assert json.loads(replayed.output) == {"queued": 0}
    refused = await sendarix(
        settings, "webhook", "create", "--tenant", tenant_id, "http://169.254.169.254/"
    )
    assert refused.exit_code == 1 and "webhook_target_refused" in refused.output
    shown = await sendarix(settings, "webhook", "show", "--tenant", tenant_id, endpoint["id"])
    assert json.loads(shown.output)["id"] == endpoint["id"]
    deleted = await sendarix(settings, "webhook", "delete", "--tenant", tenant_id, endpoint["id"])
    assert deleted.exit_code == 0
    missing = await sendarix(settings, "webhook", "show", "--tenant", tenant_id, endpoint["id"])
    assert missing.exit_code == 1
