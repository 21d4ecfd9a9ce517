"""``POST /v1/messages/batch``: each request accepted or refused alone, all published together,
one trace per message."""

from __future__ import annotations

import httpx
import pytest

from libs.settings import Settings
from libs.tenants import Tenant
from libs.topics import EVENTS, lane_topic, public_topic
from schemas.common import Lane
from schemas.pipeline import MessageSpec
from tests.integration.test_ingest_http import accepted_of, auth, event_of, otp
from tests.support import TopicTap

pytestmark = pytest.mark.integration


async def test_each_request_gets_its_own_result_in_order_and_its_own_trace(
    client: httpx.AsyncClient, settings: Settings, tenant: tuple[Tenant, str]
) -> None:
    batch = {
        "messages": [
            otp(),
            otp(**{"from": "nobody@elsewhere.test"}),
            otp(to=["a@example.org", "b@example.org"], category="notification"),
            {"to": "not a list"},
        ]
    }
    topics = [lane_topic("render", lane, settings.topic_prefix) for lane in Lane]
    async with TopicTap(settings, *topics, public_topic(EVENTS, settings.topic_prefix)) as tap:
        response = await client.post("/v1/messages/batch", json=batch, headers=auth(tenant))
        assert response.status_code == 200, response.text
        first, foreign, pair, broken = response.json()["results"]
        assert [first["status"], foreign["status"], pair["status"]] == [202, 403, 202]
        assert foreign["problem"]["code"] == "sender_not_allowed"
        assert broken["status"] == 422
        pointers = [e["pointer"] for e in broken["problem"]["errors"]]
        assert pointers and all(p.startswith("/messages/3/") for p in pointers)
        ids = [first["accepted"]["id"], *(m["id"] for m in pair["accepted"]["messages"])]
        specs = [
            MessageSpec.model_validate((await tap.wait_for(accepted_of(i)))[0]["message"])
            for i in ids
        ]
        for message_id in ids:
            await tap.wait_for(event_of(message_id, "accepted"))
    assert [s.recipient.address for s in specs] == [
        "jane@example.org",
        "a@example.org",
        "b@example.org",
    ]
    assert specs[0].trace_id == first["accepted"]["trace_id"]
    assert specs[0].trace_id != specs[1].trace_id  # one trace per request of the batch
    assert specs[1].trace_id == specs[2].trace_id == pair["accepted"]["trace_id"]


async def test_more_than_500_requests_are_refused_whole(
    client: httpx.AsyncClient, tenant: tuple[Tenant, str]
) -> None:
    response = await client.post(
        "/v1/messages/batch", json={"messages": [otp()] * 501}, headers=auth(tenant)
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["pointer"] == "/messages"
