"""Finding messages, reading the sent .eml, cancelling a scheduled send: the whole pipeline."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.policy import SMTP
from typing import Any

import pytest

from libs.tenants import Tenant
from tests.e2e.conftest import Topology

pytestmark = pytest.mark.e2e

SEND_AT_SECONDS = 8


async def test_a_scheduled_send_is_found_cancelled_and_never_sent(
    topology: Topology, tenant: tuple[Tenant, str]
) -> None:
    _, api_key = tenant
    auth = {"Authorization": f"Bearer {api_key}"}
    tag = f"run-{uuid.uuid4().hex[:8]}"
    mailbox = f"success+{tag}@simulator.sendarix.test"

    def request(**fields: Any) -> dict[str, Any]:
        body = {
            "from": "billing@example.test",
            "to": mailbox,
            "subject": "Your invoice",
            "text": "Attached.",
            "category": "billing",
            "tags": [tag],
        }
        return body | fields

    send_at = datetime.now(UTC) + timedelta(seconds=SEND_AT_SECONDS)
    scheduled = await topology.send(
        api_key, request(send_at=send_at.isoformat(), metadata={"order_id": tag})
    )
    now = await topology.send(api_key, request())
    scheduled_id, now_id = scheduled["id"], now["id"]
    await topology.settled(api_key, scheduled_id, "routed")
    await topology.settled(api_key, now_id, "delivered")

    async def search(**params: str) -> list[str]:
        response = await topology.http.get("/v1/messages", params=params, headers=auth)
        assert response.status_code == 200, response.text
        return [message["id"] for message in response.json()["messages"]]

    assert await search(tag=tag) == [now_id, scheduled_id]
    assert await search(recipient=mailbox.upper()) == [now_id, scheduled_id]
    assert await search(metadata=f"order_id:{tag}") == [scheduled_id]
    assert await search(tag=tag, status="delivered") == [now_id]

    cancelled = await topology.http.delete(f"/v1/messages/{scheduled_id}", headers=auth)
    assert (cancelled.status_code, cancelled.json()["status"]) == (200, "cancelled")
    too_late = await topology.http.delete(f"/v1/messages/{now_id}", headers=auth)
    assert (too_late.status_code, too_late.json()["code"]) == (409, "not_cancellable")

    raw = await topology.http.get(f"/v1/messages/{now_id}/raw", headers=auth)
    assert raw.headers["content-type"] == "message/rfc822"
    assert message_from_bytes(raw.content, policy=SMTP)["Subject"] == "Your invoice"
    unsent = await topology.http.get(f"/v1/messages/{scheduled_id}/raw", headers=auth)
    assert unsent.status_code == 404

    await asyncio.sleep(max(0.0, (send_at - datetime.now(UTC)).total_seconds()) + 3)
    shown = await topology.settled(api_key, scheduled_id, "cancelled")
    assert "delivered" not in [event["type"] for event in shown["events"]]
    received = [m["message_id"] for m in topology.simulator_deliveries()]
    assert any(now_id in received_id for received_id in received)
    assert not any(scheduled_id in received_id for received_id in received)
