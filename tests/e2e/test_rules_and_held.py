"""The acceptance of customer rules: a ``hold`` rule on a recipient domain holds matching
messages; releasing them in bulk delivers them (to Mailpit, by the default route); cancelling
one ends it ``cancelled``."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from libs.tenants import Tenant
from tests.e2e.conftest import Topology

pytestmark = pytest.mark.e2e


async def test_a_hold_rule_holds_and_a_bulk_release_delivers(
    topology: Topology, tenant: tuple[Tenant, str]
) -> None:
    _, api_key = tenant
    auth = {"Authorization": f"Bearer {api_key}"}
    run = uuid.uuid4().hex[:8]
    rule = await topology.http.post(
        "/v1/rules",
        json={
            "action": "hold",
            "match": {"recipient_domain": "example.org"},
            "description": f"review mail to example.org ({run})",
        },
        headers=auth,
    )
    assert rule.status_code == 201, rule.text
    rule_id = rule.json()["id"]

    def request(to: str, subject: str) -> dict[str, Any]:
        return {
            "from": "news@example.test",
            "to": to,
            "subject": subject,
            "text": "Hello.",
            "category": "notification",
        }

    held_ids = [
        (await topology.send(api_key, request(f"user{i}@example.org", f"held {run} {i}")))["id"]
        for i in range(3)
    ]
    free = await topology.send(api_key, request("user@example.net", f"free {run}"))
    await topology.settled(api_key, free["id"], "delivered")
    await topology.in_mailpit(f"free {run}")
    for message_id in held_ids:
        shown = await topology.settled(api_key, message_id, "held")
        [held] = [event for event in shown["events"] if event["type"] == "held"]
        assert held["rule"]["id"] == rule_id
        assert held["rule"]["description"] == f"review mail to example.org ({run})"

    listed = await topology.http.get("/v1/held", params={"rule": rule_id}, headers=auth)
    assert {h["message_id"] for h in listed.json()["held"]} == set(held_ids)

    cancelled_id, *released_ids = held_ids
    cancel = await topology.http.post(f"/v1/held/{cancelled_id}/cancel", headers=auth)
    assert cancel.json() == {"count": 1}
    release = await topology.http.post("/v1/held/release", json={"rule_id": rule_id}, headers=auth)
    assert release.json() == {"count": 2}

    for message_id in released_ids:
        shown = await topology.settled(api_key, message_id, "delivered")
        assert [e["type"] for e in shown["events"]].index("held") < [
            e["type"] for e in shown["events"]
        ].index("routed")
    for i in (1, 2):
        await topology.in_mailpit(f"held {run} {i}")
    await topology.settled(api_key, cancelled_id, "cancelled")
    await asyncio.sleep(2)
    unsent = await topology.http.get(f"/v1/messages/{cancelled_id}/raw", headers=auth)
    assert unsent.status_code == 404
    listed = await topology.http.get("/v1/held", params={"rule": rule_id}, headers=auth)
    assert listed.json()["held"] == []
