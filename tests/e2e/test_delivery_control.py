"""Issue 11's acceptance through the whole topology: a throttling site is slowed and shows in the
queue view while the OTP still arrives in its window; a paused tenant's mail stops within a
second and all of it arrives after the resume; a sender killed with deliveries in flight sends
no message twice."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import pytest

from libs.tenants import Tenant, create_tenant
from tests.e2e.conftest import Topology
from tests.support import eventually

pytestmark = pytest.mark.e2e

SIMULATOR = "simulator.sendarix.test"


def _auth(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"}


def _message(to: str, **fields: Any) -> dict[str, Any]:
    return {"from": "app@example.test", "to": to, "subject": "Hi", "text": "Hello"} | fields


def _received(topology: Topology, ids: set[str]) -> Counter[str]:
    """How many copies of each of ``ids`` the simulator accepted."""
    return Counter(
        entry["message_id"].strip("<>").partition("@")[0]
        for entry in topology.simulator_deliveries()
        if entry["message_id"].strip("<>").partition("@")[0] in ids
    )


async def test_a_throttling_site_is_slowed_in_the_queue_view_and_the_otp_still_arrives(
    topology: Topology, tenant: tuple[Tenant, str], pool: asyncpg.Pool
) -> None:
    _, api_key = tenant
    _, operator_key = await create_tenant(
        pool, topology.settings.operator_tenant, [], dev_mode=True
    )  # an operator sees every site (a tenant only those its mail waits for)
    accepted = await topology.send(
        api_key,
        _message(f"throttle+{uuid.uuid4().hex[:6]}@{SIMULATOR}", category="otp", subject="Code"),
    )
    site = f"127.0.0.1:{topology.settings.simulator_port}"

    async def throttled() -> dict[str, Any] | None:
        answer = await topology.http.get("/v1/queues/sites", headers=_auth(operator_key))
        assert answer.status_code == 200, answer.text
        sites = [s for s in answer.json()["sites"] if s["site"] == site]
        return sites[0] if sites and "throttled" in sites[0]["states"].values() else None

    shown_site = await eventually(throttled, timeout=60)
    assert shown_site["last_replies"], shown_site

    shown = await topology.settled(api_key, accepted["id"], "delivered", timeout=180)
    assert shown["lane"] == "critical"
    events = shown["events"]
    deferrals = [e for e in events if e["type"] == "deferred"]
    assert deferrals and all(e["smtp"]["code"] == 421 for e in deferrals)
    accepted_at = datetime.fromisoformat(events[0]["time"])
    delivered_at = datetime.fromisoformat(events[-1]["time"])
    assert delivered_at - accepted_at < timedelta(minutes=15)

    answer = await topology.http.get("/v1/queues/events", headers=_auth(api_key))
    kinds = {(e["kind"], e["scope"].get("site")) for e in answer.json()["events"]}
    assert ("site_throttled", site) in kinds


async def test_pausing_a_tenant_stops_its_deliveries_within_a_second_and_resuming_loses_nothing(
    topology: Topology, tenant: tuple[Tenant, str]
) -> None:
    _, api_key = tenant
    ids: set[str] = set()

    async def send_steadily(stop: asyncio.Event) -> None:
        while not stop.is_set():
            accepted = await topology.send(api_key, _message(f"success@{SIMULATOR}"))
            ids.add(accepted["id"])
            await asyncio.sleep(0.05)

    async def some_arrived() -> Counter[str] | None:
        return _received(topology, ids) or None

    stop = asyncio.Event()
    sending = asyncio.create_task(send_steadily(stop))
    await eventually(some_arrived, timeout=60)
    answer = await topology.http.post(
        "/v1/queue-controls",
        json={"kind": "pause", "reason": "e2e: investigating"},
        headers=_auth(api_key),
    )
    assert answer.status_code == 201, answer.text
    control = answer.json()
    paused_at = datetime.now().astimezone()
    await asyncio.sleep(5)
    stop.set()
    await sending

    late = [
        entry
        for entry in topology.simulator_deliveries()
        if entry["message_id"].strip("<>").partition("@")[0] in ids
        and datetime.fromisoformat(entry["received_at"]) > paused_at + timedelta(seconds=1)
    ]
    assert late == []
    waiting = await topology.http.get(
        "/v1/queues/scheduled", params={"group_by": "tenant"}, headers=_auth(api_key)
    )
    assert waiting.status_code == 200, waiting.text

    resumed = await topology.http.delete(
        f"/v1/queue-controls/{control['id']}", headers=_auth(api_key)
    )
    assert resumed.status_code == 200, resumed.text

    async def all_arrived() -> Counter[str] | None:
        copies = _received(topology, ids)
        return copies if set(copies) == ids else None

    copies = await eventually(all_arrived, timeout=90)
    assert max(copies.values()) == 1
    answer = await topology.http.get("/v1/queues/events", headers=_auth(api_key))
    kinds = [e["kind"] for e in answer.json()["events"]]
    assert "paused" in kinds and "resumed" in kinds


async def test_killing_the_sender_mid_delivery_sends_no_message_twice(
    topology: Topology, tenant: tuple[Tenant, str], pool: asyncpg.Pool
) -> None:
    """Whatever was in DATA when the sender died is never sent again: it is reported failed
    (its outcome unknown), everything else arrives once."""
    _, api_key = tenant
    batch = [_message(f"success+{i}@{SIMULATOR}", category="notification") for i in range(300)]
    answer = await topology.http.post(
        "/v1/messages/batch", json={"messages": batch}, headers=_auth(api_key)
    )
    assert answer.status_code == 200, answer.text
    ids = {result["accepted"]["id"] for result in answer.json()["results"]}

    async def under_way() -> bool | None:
        return True if len(_received(topology, ids)) >= 20 else None

    await eventually(under_way, timeout=60)
    topology.supervisor.kill("sender")
    topology.supervisor.restart("sender")

    async def settled() -> dict[str, str] | None:
        rows = await pool.fetch(
            "SELECT id::text, status FROM messages WHERE id = ANY($1::uuid[])", list(ids)
        )
        statuses = {row["id"]: row["status"] for row in rows}
        done = len(statuses) == len(ids) and set(statuses.values()) <= {"delivered", "failed"}
        return statuses if done else None

    statuses = await eventually(settled, timeout=180)
    copies = _received(topology, ids)
    assert [i for i, n in copies.items() if n > 1] == []
    assert {i for i, status in statuses.items() if status == "delivered"} <= set(copies)
    for message_id in [i for i, status in statuses.items() if status == "failed"]:
        shown = await topology.http.get(f"/v1/messages/{message_id}", headers=_auth(api_key))
        failed = shown.json()["events"][-1]
        assert failed["problem"]["code"] == "delivery_outcome_unknown", failed
