"""``/v1/rules`` and ``/v1/held`` on the real database and broker, and ``sendarix rule|held``:
tenant isolation, the lane and pool security of rules, bulk and single release and cancel."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from libs import held
from libs.events import event_data
from libs.held import HeldMessage
from libs.settings import Settings
from libs.tenants import Tenant, create_tenant
from libs.topics import EVENTS, ROUTE, public_topic
from schemas.common import AppliedRule, Lane
from schemas.events import MessageState, delivery_event
from schemas.pipeline import RenderedMessage
from services.ingest.app import IngestService
from services.ingest.recorder import record_all
from tests.integration.test_api_keys import assert_problem, bearer, new_key
from tests.integration.test_cli import sendarix
from tests.integration.test_policy_service import routed
from tests.integration.test_policy_service_rules import event
from tests.records import rendered_message
from tests.support import TopicTap

pytestmark = pytest.mark.integration


@pytest.fixture
async def tap(settings: Settings, service: IngestService) -> AsyncIterator[TopicTap]:
    topics = (
        ROUTE.topic(Lane.NORMAL, settings.topic_prefix),
        public_topic(EVENTS, settings.topic_prefix),
    )
    async with TopicTap(settings, *topics) as tapped:
        yield tapped


async def other_tenant(pool: asyncpg.Pool) -> tuple[Tenant, str]:
    return await create_tenant(
        pool, f"other-{uuid.uuid4().hex[:6]}", ["example.test"], dev_mode=True
    )


async def test_rules_are_listed_in_order_and_changed_by_their_tenant_only(
    client: httpx.AsyncClient, pool: asyncpg.Pool, tenant: tuple[Tenant, str]
) -> None:
    admin = bearer(tenant[1])
    hold = {"action": "hold", "match": {"recipient_domain": "Example.ORG"}, "description": "wait"}
    created = await client.post("/v1/rules", json=hold, headers=admin)
    assert created.status_code == 201, created.text
    rule = created.json()
    assert rule["match"] == {
        "recipient_domain": "example.org",
        "stream": None,
        "category": None,
        "lane": None,
        "sender_domain": None,
        "tag": None,
        "metadata": {},
    }
    first = await client.post(
        "/v1/rules", json={"action": "allow", "position": 0, "match": {"tag": "vip"}}, headers=admin
    )
    assert first.status_code == 201, first.text
    listed = (await client.get("/v1/rules", headers=admin)).json()["rules"]
    assert [r["id"] for r in listed] == [first.json()["id"], rule["id"]]

    patched = await client.patch(
        f"/v1/rules/{rule['id']}", json={"action": "block", "enabled": False}, headers=admin
    )
    assert patched.status_code == 200, patched.text
    assert (patched.json()["action"], patched.json()["enabled"]) == ("block", False)
    assert patched.json()["description"] == "wait"

    stranger = bearer((await other_tenant(pool))[1])
    for method in ("GET", "PATCH", "DELETE"):
        response = await client.request(
            method, f"/v1/rules/{rule['id']}", headers=stranger, json={"enabled": True}
        )
        assert_problem(response, 404, "not_found")
    assert (await client.get("/v1/rules", headers=stranger)).json() == {"rules": []}
    assert_problem(await client.get("/v1/rules/not-a-uuid", headers=admin), 404, "not_found")

    removed = await client.delete(f"/v1/rules/{rule['id']}", headers=admin)
    assert removed.status_code == 200 and removed.json()["id"] == rule["id"]
    assert_problem(await client.get(f"/v1/rules/{rule['id']}", headers=admin), 404, "not_found")


@pytest.mark.parametrize(
    ("body", "code", "pointer"),
    [
        ({"action": "force_lane", "lane": "critical"}, "lane_not_allowed", "/lane"),
        (
            {"action": "force_lane", "lane": "high", "match": {"stream": "broadcast"}},
            "lane_not_allowed",
            "/lane",
        ),
        ({"action": "force_pool", "pool": "security"}, "pool_not_allowed", "/pool"),
        ({"action": "force_lane"}, "invalid_request", ""),
        ({"action": "hold", "match": {"recipient_domain": "not a domain"}}, "invalid_request", ""),
        ({"action": "explode"}, "invalid_request", "/action"),
    ],
)
async def test_a_rule_that_would_buy_a_lane_or_is_malformed_is_422(
    client: httpx.AsyncClient,
    tenant: tuple[Tenant, str],
    body: dict[str, Any],
    code: str,
    pointer: str,
) -> None:
    response = await client.post("/v1/rules", json=body, headers=bearer(tenant[1]))
    problem = assert_problem(response, 422, code)
    if pointer:
        assert problem["errors"][0]["pointer"] == pointer


async def test_a_patch_cannot_sneak_a_lane_in_and_reading_keys_cannot_write(
    client: httpx.AsyncClient, tenant: tuple[Tenant, str]
) -> None:
    admin = bearer(tenant[1])
    created = await client.post(
        "/v1/rules", json={"action": "force_lane", "lane": "bulk"}, headers=admin
    )
    assert created.status_code == 201, created.text
    rule_id = created.json()["id"]
    sneaky = await client.patch(f"/v1/rules/{rule_id}", json={"lane": "critical"}, headers=admin)
    assert_problem(sneaky, 422, "lane_not_allowed")
    _, reader = await new_key(client, tenant[1], scopes=["read"])
    assert (await client.get("/v1/rules", headers=bearer(reader))).status_code == 200
    refused = await client.post("/v1/rules", json={"action": "allow"}, headers=bearer(reader))
    assert_problem(refused, 403, "forbidden")


async def hold_messages(
    pool: asyncpg.Pool, tenant_id: str, *recipients: str
) -> list[RenderedMessage]:
    records = [
        rendered_message(tenant_id=tenant_id, lane=Lane.NORMAL, recipient=r) for r in recipients
    ]
    expires = datetime.now(UTC) + timedelta(hours=1)
    rule_id = str(uuid.uuid4())
    await held.hold(
        pool,
        [HeldMessage(r, r.model_dump_json().encode(), rule_id, expires, None) for r in records],
    )
    return records


async def test_held_messages_are_listed_released_and_cancelled_through_the_api(
    client: httpx.AsyncClient, pool: asyncpg.Pool, tenant: tuple[Tenant, str], tap: TopicTap
) -> None:
    admin = bearer(tenant[1])
    org = await hold_messages(pool, tenant[0].id, "a@example.org", "b@example.org")
    net = await hold_messages(pool, tenant[0].id, "c@example.net", "d@example.net")
    page = await client.get(
        "/v1/held", params={"recipient_domain": "example.org", "limit": 1}, headers=admin
    )
    assert page.status_code == 200, page.text
    [first] = page.json()["held"]
    rest = await client.get(
        "/v1/held",
        params={"cursor": page.json()["next_cursor"], "recipient_domain": "example.org"},
        headers=admin,
    )
    [second] = rest.json()["held"]
    assert rest.json()["next_cursor"] is None
    assert {first["recipient"], second["recipient"]} == {"a@example.org", "b@example.org"}
    for params, name in (
        ({"since": "yesterday"}, "since"),
        ({"cursor": "nope"}, "cursor"),
        ({"rule": "x"}, "rule"),
        ({"limit": "0"}, "limit"),
        ({"limit": "many"}, "limit"),
    ):
        problem = assert_problem(
            await client.get("/v1/held", params=params, headers=admin), 422, "invalid_parameter"
        )
        assert problem["errors"][0]["pointer"] == name

    stranger = bearer((await other_tenant(pool))[1])
    nothing = await client.post(
        "/v1/held/release", json={"recipient_domain": "example.org"}, headers=stranger
    )
    assert nothing.json() == {"count": 0}
    one = net[0].message.message_id
    assert_problem(await client.post(f"/v1/held/{one}/cancel", headers=stranger), 404, "not_found")
    assert_problem(await client.post(f"/v1/held/{one}/send", headers=admin), 404, "not_found")
    unknown = await client.post("/v1/held/send", json={"message_ids": [one]}, headers=admin)
    assert_problem(unknown, 404, "not_found")
    for bad in ({}, {"message_ids": [one], "rule_id": str(uuid.uuid4())}, {"message_ids": ["x"]}):
        assert_problem(
            await client.post("/v1/held/cancel", json=bad, headers=admin), 422, "invalid_request"
        )

    released = await client.post(
        "/v1/held/release", json={"recipient_domain": "example.org"}, headers=admin
    )
    assert released.json() == {"count": 2}
    for record in org:
        [value] = await tap.wait_for(routed(record))
        assert value == record.model_dump(mode="json")
    assert (await client.post(f"/v1/held/{one}/cancel", headers=admin)).json() == {"count": 1}
    assert_problem(await client.post(f"/v1/held/{one}/release", headers=admin), 404, "not_found")
    await tap.wait_for(event(net[0], "cancelled"))
    bulk = await client.post(
        "/v1/held/cancel", json={"message_ids": [net[1].message.message_id]}, headers=admin
    )
    assert bulk.json() == {"count": 1}
    await tap.wait_for(event(net[1], "cancelled"))
    assert not [v for v in tap.json_values() if routed(net[0])(v) or routed(net[1])(v)]
    assert (await client.get("/v1/held", headers=admin)).json()["held"] == []


async def test_deleting_a_held_message_cancels_it(
    client: httpx.AsyncClient, pool: asyncpg.Pool, tenant: tuple[Tenant, str], tap: TopicTap
) -> None:
    [record] = await hold_messages(pool, tenant[0].id, "e@example.org")
    spec = record.message
    rule = AppliedRule(id=str(uuid.uuid4()), action="hold")
    story = [
        delivery_event(MessageState.ACCEPTED, event_data(spec, "ingest"), datetime.now(UTC)),
        delivery_event(
            MessageState.HELD, event_data(spec, "policy-check", rule=rule), datetime.now(UTC)
        ),
    ]
    await record_all(pool, [(e, e.model_dump_json().encode()) for e in story])
    shown = await client.get(f"/v1/messages/{spec.message_id}", headers=bearer(tenant[1]))
    assert shown.json()["status"] == "held"
    assert shown.json()["events"][-1]["rule"]["id"] == rule.id
    deleted = await client.delete(f"/v1/messages/{spec.message_id}", headers=bearer(tenant[1]))
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["status"] == "cancelled"
    await tap.wait_for(event(record, "cancelled"))
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM held_messages WHERE message_id = $1", uuid.UUID(spec.message_id)
        )
        == 0
    )


async def test_the_cli_adds_lists_and_removes_rules_and_settles_held_messages(
    settings: Settings, pool: asyncpg.Pool, tenant: tuple[Tenant, str], tap: TopicTap
) -> None:
    tenant_id = tenant[0].id
    hold = "--action hold --recipient-domain example.org --metadata plan=pro --hold-seconds 3600"
    added = await sendarix(settings, "rule", "add", "--tenant", tenant_id, *hold.split())
    assert added.exit_code == 0, added.output
    rule = json.loads(added.output)
    assert rule["match"]["metadata"] == {"plan": "pro"} and rule["hold_seconds"] == 3600
    critical = ["--action", "force_lane", "--lane", "critical"]
    refused = await sendarix(settings, "rule", "add", "--tenant", tenant_id, *critical)
    assert refused.exit_code == 1 and "lane_not_allowed" in refused.output
    listed = await sendarix(settings, "rule", "list", "--tenant", tenant_id)
    assert [r["id"] for r in json.loads(listed.output)] == [rule["id"]]

    org = await hold_messages(pool, tenant_id, "f@example.org", "g@example.org")
    shown = await sendarix(
        settings, "held", "list", "--tenant", tenant_id, "--recipient-domain", "example.org"
    )
    assert {h["message_id"] for h in json.loads(shown.output)} == {
        r.message.message_id for r in org
    }
    cancelled_now = await sendarix(
        settings, "held", "cancel", "--tenant", tenant_id, org[0].message.message_id
    )
    assert json.loads(cancelled_now.output) == {"count": 1}
    released = await sendarix(
        settings, "held", "release", "--tenant", tenant_id, "--recipient-domain", "example.org"
    )
    assert json.loads(released.output) == {"count": 1}
    await tap.wait_for(routed(org[1]))
    await tap.wait_for(event(org[0], "cancelled"))
    unfiltered = await sendarix(settings, "held", "release", "--tenant", tenant_id)
    assert unfiltered.exit_code == 2

    removed = await sendarix(settings, "rule", "remove", "--tenant", tenant_id, rule["id"])
    assert removed.exit_code == 0 and json.loads(removed.output)["id"] == rule["id"]
    again = await sendarix(settings, "rule", "remove", "--tenant", tenant_id, rule["id"])
    assert again.exit_code == 1
