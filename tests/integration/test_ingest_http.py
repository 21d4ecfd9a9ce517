"""The HTTP gateway on the real broker and database: accepted, refused, replayed, looked up."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from opentelemetry import trace

from libs.events import event_data
from libs.settings import Settings
from libs.templates import put_template
from libs.tenants import Tenant, create_tenant
from libs.topics import EVENTS, lane_topic, public_topic
from libs.tracing import setup_tracing
from schemas.common import Lane, Mailbox
from schemas.events import MessageState, delivery_event
from schemas.pipeline import MessageSpec, Route, SmtpReply
from services.ingest import accept as accept_module
from services.ingest.accept import Ingest
from services.ingest.api import build_api
from services.ingest.app import IngestService
from tests.records import message_spec
from tests.support import TopicTap, emit, eventually

pytestmark = pytest.mark.integration


def auth(tenant: tuple[Tenant, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tenant[1]}"}


def otp(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "from": "Acme Security <security@mail.example.test>",
        "to": ["jane@example.org"],
        "subject": "Your code",
        "text": "123456",
        "category": "otp",
        "tags": ["login"],
        "metadata": {"user": "42"},
    }
    return body | fields


def body(**fields: Any) -> str:
    """An OTP request body as JSON text; a field set to None is left out."""
    return json.dumps({k: v for k, v in otp(**fields).items() if v is not None})


def accepted_of(message_id: str) -> Any:
    return lambda v: v.get("message", {}).get("message_id") == message_id


def event_of(message_id: str, state: str) -> Any:
    return lambda v: v.get("subject") == message_id and v.get("type") == f"sendarix.message.{state}"


async def end_offsets(settings: Settings, *topics: str) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    await consumer.start()
    try:
        partitions = [
            TopicPartition(topic, p)
            for topic in topics
            for p in consumer.partitions_for_topic(topic) or await _partitions(consumer, topic)
        ]
        offsets: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
        return offsets
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()
    return consumer.partitions_for_topic(topic) or set()


async def test_a_message_is_published_to_its_lane_and_reported_accepted(
    client: httpx.AsyncClient, settings: Settings, tenant: tuple[Tenant, str]
) -> None:
    render = lane_topic("render", Lane.CRITICAL, settings.topic_prefix)
    async with TopicTap(settings, render, public_topic(EVENTS, settings.topic_prefix)) as tap:
        response = await client.post("/v1/messages", json=otp(), headers=auth(tenant))
        assert response.status_code == 202, response.text
        body = response.json()
        message_id = body["id"]
        assert body["status"] == "accepted"
        assert body["messages"] == [{"id": message_id, "to": "jane@example.org"}]
        assert len(body["trace_id"]) == 32 and set(body["trace_id"]) != {"0"}

        [record] = await tap.wait_for(accepted_of(message_id))
        [accepted] = await tap.wait_for(event_of(message_id, "accepted"))
    spec = MessageSpec.model_validate(record["message"])
    assert spec.tenant_id == tenant[0].id
    assert spec.lane is Lane.CRITICAL
    assert spec.trace_id == body["trace_id"]
    assert spec.sender == Mailbox(address="security@mail.example.test", name="Acme Security")
    assert spec.recipient == Mailbox(address="jane@example.org")
    assert (spec.tags, spec.metadata) == (["login"], {"user": "42"})
    assert accepted["data"]["trace_id"] == body["trace_id"]
    assert accepted["data"]["lane"] == "critical"

    async def logged() -> dict[str, Any] | None:  # the recorder writes the log from the events
        found = await client.get(f"/v1/messages/{message_id}", headers=auth(tenant))
        return found.json() if found.status_code == 200 else None

    view = await eventually(logged)
    assert (view["status"], view["lane"], view["category"]) == ("accepted", "critical", "otp")
    assert (view["from"], view["to"], view["subject"]) == (
        "security@mail.example.test",
        "jane@example.org",
        "Your code",
    )
    assert [e["type"] for e in view["events"]] == ["accepted"]
    assert view["events"][0]["service"] == "ingest"


async def test_each_recipient_gets_its_own_message_in_the_lane_of_its_category(
    client: httpx.AsyncClient, settings: Settings, tenant: tuple[Tenant, str]
) -> None:
    recipients = ["a@example.org", "B <b@example.org>", "c@example.org"]
    body = otp(to=recipients, category="billing")
    async with TopicTap(settings, lane_topic("render", Lane.HIGH, settings.topic_prefix)) as tap:
        response = await client.post("/v1/messages", json=body, headers=auth(tenant))
        assert response.status_code == 202, response.text
        messages = response.json()["messages"]
        # in the order given, each by its address (the display name is not part of it)
        assert [m["to"] for m in messages] == ["a@example.org", "b@example.org", "c@example.org"]
        assert response.json()["id"] == messages[0]["id"]
        for message in messages:
            await tap.wait_for(accepted_of(message["id"]))
    assert len({m["id"] for m in messages}) == 3


async def test_bad_requests_are_problems_never_500s(
    client: httpx.AsyncClient, pool: asyncpg.Pool, tenant: tuple[Tenant, str]
) -> None:
    await put_template(pool, tenant[0].id, "otp", "Code {{ code }}", None, "{{ code }}")
    good = auth(tenant)
    as_json = {"Content-Type": "application/json"}
    key = {"Idempotency-Key": "k" * 257}
    bad = {**good, "Content-Type": "text/plain"}
    cases: list[tuple[dict[str, str], bytes | str, int, str, list[str]]] = [
        ({}, body(), 401, "unauthorized", []),
        ({"Authorization": "Basic eDp5"}, body(), 401, "unauthorized", []),
        ({"Authorization": "Bearer sx_nope"}, body(), 401, "unauthorized", []),
        (good, body(**{"from": "a@other.test"}), 403, "sender_not_allowed", ["/from"]),
        (good, b"{" + b" " * (10 * 1024 * 1024) + b"}", 413, "payload_too_large", []),
        (bad, "hello", 415, "unsupported_media_type", []),
        (good, '{"from": "a@example.test",', 400, "malformed_json", [""]),
        (good, b"\xff\xfe\x00", 400, "malformed_json", [""]),
        (good, "[]", 422, "invalid_request", [""]),
        (good, "null", 422, "invalid_request", [""]),
        (good, body(surprise=1), 422, "invalid_request", ["/surprise"]),
        (good, body(to=[1], priority="now"), 422, "invalid_request", ["/to/0", "/priority"]),
        (good, body(to=["not an address"]), 422, "invalid_address", ["/to/0"]),
        (good, body(subject=None, template="nope"), 422, "unknown_template", ["/template"]),
        (good, body(headers={"From": "x@y.z"}), 422, "forbidden_header", ["/headers/From"]),
        (good | key, body(), 400, "invalid_idempotency_key", []),
        (
            good,
            body(subject=None, text=None, template="otp"),
            422,
            "missing_template_data",
            ["/data/code"],
        ),
    ]
    for headers, content, status, code, pointers in cases:
        response = await client.post("/v1/messages", content=content, headers=as_json | headers)
        assert response.status_code == status, (code, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert (problem["status"], problem["code"]) == (status, code)
        assert problem["type"].endswith(code) and problem["title"] and problem["detail"]
        assert sorted(e["pointer"] for e in problem["errors"]) == sorted(pointers), problem
    missing = await client.get("/v1/nowhere")
    assert (missing.status_code, missing.json()["code"]) == (404, "not_found")


async def test_send_at_more_than_72_hours_ahead_is_refused(
    client: httpx.AsyncClient, tenant: tuple[Tenant, str]
) -> None:
    later = (datetime.now(UTC) + timedelta(hours=73)).isoformat()
    response = await client.post("/v1/messages", json=otp(send_at=later), headers=auth(tenant))
    assert (response.status_code, response.json()["code"]) == (422, "send_at_too_far")


async def test_a_repeated_idempotency_key_replays_and_publishes_nothing_new(
    client: httpx.AsyncClient, settings: Settings, tenant: tuple[Tenant, str]
) -> None:
    headers = auth(tenant) | {"Idempotency-Key": f"order-{uuid.uuid4()}"}
    body = otp(to=["x@example.org", "y@example.org"])
    first = await client.post("/v1/messages", json=body, headers=headers)
    assert first.status_code == 202, first.text
    assert "idempotent-replayed" not in first.headers

    topics = (
        lane_topic("render", Lane.CRITICAL, settings.topic_prefix),
        public_topic(EVENTS, settings.topic_prefix),
    )
    before = await end_offsets(settings, *topics)
    respelled = json.dumps(dict(reversed(body.items())), indent=2)
    again = await client.post(
        "/v1/messages", content=respelled, headers=headers | {"Content-Type": "application/json"}
    )
    assert again.status_code == 202, again.text
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert await end_offsets(settings, *topics) == before

    other = await client.post("/v1/messages", json=otp(to=["z@example.org"]), headers=headers)
    assert other.status_code == 409
    assert other.json()["code"] == "idempotency_key_reused"


async def test_the_same_key_of_another_tenant_is_another_request(
    client: httpx.AsyncClient, tenant: tuple[Tenant, str], pool: asyncpg.Pool
) -> None:
    other = await create_tenant(pool, "other", ["example.test"], dev_mode=True)
    key = {"Idempotency-Key": "shared-key"}
    mine = await client.post("/v1/messages", json=otp(), headers=auth(tenant) | key)
    theirs = await client.post("/v1/messages", json=otp(), headers=auth(other) | key)
    assert mine.status_code == theirs.status_code == 202
    assert mine.json()["id"] != theirs.json()["id"]


async def test_a_message_is_visible_to_its_tenant_only(
    client: httpx.AsyncClient, tenant: tuple[Tenant, str], pool: asyncpg.Pool
) -> None:
    sent = await client.post("/v1/messages", json=otp(), headers=auth(tenant))
    message_id = sent.json()["id"]
    stranger = await create_tenant(pool, "stranger", ["example.test"], dev_mode=True)
    for path, who in [
        (f"/v1/messages/{message_id}", stranger),
        (f"/v1/messages/{uuid.uuid4()}", tenant),
        ("/v1/messages/not-a-uuid", tenant),
    ]:
        response = await client.get(path, headers=auth(who))
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "not_found"
    unauthenticated = await client.get(f"/v1/messages/{message_id}")
    assert unauthenticated.status_code == 401


async def test_the_timeline_follows_the_events_recorded_once_each(
    client: httpx.AsyncClient,
    service: IngestService,
    settings: Settings,
    tenant: tuple[Tenant, str],
) -> None:
    sent = await client.post("/v1/messages", json=otp(), headers=auth(tenant))
    message_id = sent.json()["id"]

    async def logged() -> httpx.Response | None:  # the recorder writes it from the events
        found = await client.get(f"/v1/messages/{message_id}", headers=auth(tenant))
        return found if found.status_code == 200 else None

    accepted = await eventually(logged)
    spec = MessageSpec.model_validate(
        {
            "message_id": message_id,
            "tenant_id": tenant[0].id,
            "trace_id": sent.json()["trace_id"],
            "accepted_at": accepted.json()["accepted_at"],
            "sender": {"address": "security@mail.example.test", "name": "Acme Security"},
            "recipient": {"address": "jane@example.org"},
            "category": "otp",
            "lane": "critical",
        }
    )
    route = Route(name="simulator", host="127.0.0.1", port=2525, pool="shared")
    retry_at = datetime.now(UTC) + timedelta(seconds=30)
    steps: list[tuple[MessageState, dict[str, Any]]] = [
        (
            MessageState.RENDERED,
            {"template_version": 3, "layout_version": 2, "locale": "pt", "subject": "Your code"},
        ),
        (MessageState.ROUTED, {"route": route}),
        (
            MessageState.DEFERRED,
            {
                "attempt": 1,
                "route": route,
                "smtp": SmtpReply(code=421, enhanced_status="4.7.0", text="try later"),
                "next_attempt_at": retry_at,
            },
        ),
        (MessageState.DELIVERED, {"attempt": 2, "smtp": SmtpReply(code=250, text="OK")}),
        (MessageState.DELIVERED, {"attempt": 2, "smtp": SmtpReply(code=250, text="OK")}),
        (MessageState.COMPLAINED, {}),
    ]
    for state, details in steps:
        data = event_data(spec, "test", **details)
        await emit(service.broker, settings, state, data)

    async def complained() -> dict[str, Any] | None:
        response = await client.get(f"/v1/messages/{message_id}", headers=auth(tenant))
        view: dict[str, Any] = response.json()
        return view if view["status"] == "complained" else None

    view = await eventually(complained, timeout=20)
    assert [e["type"] for e in view["events"]] == [
        "accepted",
        "rendered",
        "routed",
        "deferred",
        "delivered",
        "complained",
    ]
    deferred, delivered = view["events"][3], view["events"][4]
    assert deferred["smtp"] == {"code": 421, "enhanced_status": "4.7.0", "text": "try later"}
    assert deferred["attempt"] == 1
    assert datetime.fromisoformat(deferred["next_attempt_at"]) == retry_at
    assert (delivered["attempt"], delivered["smtp"]["code"]) == (2, 250)
    assert view["route"]["name"] == "simulator"
    assert (view["template_version"], view["layout_version"], view["locale"]) == (3, 2, "pt")
    assert view["tags"] == ["login"] and view["metadata"] == {"user": "42"}
    assert view["trace_id"] == sent.json()["trace_id"]


async def test_the_gateway_listens_and_describes_itself(
    service: IngestService, tenant: tuple[Tenant, str]
) -> None:
    base = f"http://127.0.0.1:{service.http_port}"
    async with httpx.AsyncClient(base_url=base) as http:
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        assert (await http.get("/readyz")).json() == {"status": "ready"}
        document = (await http.get("/openapi.json")).json()
        assert (await http.get("/docs")).status_code == 200
        sent = await http.post("/v1/messages", json=otp(), headers=auth(tenant))
        assert sent.status_code == 202
    body = document["components"]["schemas"]["SendRequest"]
    assert {"from", "to", "template", "send_at"} <= set(body["properties"])
    assert "sender" not in body["properties"]
    operation = document["paths"]["/v1/messages"]["post"]
    assert operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/SendRequest"
    )
    assert "application/problem+json" in operation["responses"]["422"]["content"]


async def test_the_request_starts_the_trace_in_jaeger(
    client: httpx.AsyncClient,
    service: IngestService,
    settings: Settings,
    tenant: tuple[Tenant, str],
) -> None:
    render = lane_topic("render", Lane.CRITICAL, settings.topic_prefix)
    async with TopicTap(settings, render) as tap:
        sent = await client.post("/v1/messages", json=otp(), headers=auth(tenant))
        message_id, trace_id = sent.json()["id"], sent.json()["trace_id"]
        await tap.wait_for(accepted_of(message_id))
    provider = trace.get_tracer_provider()
    provider.force_flush()  # type: ignore[attr-defined]

    async def spans() -> list[dict[str, Any]] | None:
        async with httpx.AsyncClient() as http:
            response = await http.get(f"{settings.jaeger_ui_url}/api/traces/{trace_id}")
        if response.status_code != 200:
            return None
        found = [s for t in response.json()["data"] for s in t["spans"]]
        return found if any(s["operationName"] == "POST /v1/messages" for s in found) else None

    found = await eventually(spans, timeout=15, every=0.5)
    [root] = [s for s in found if not s["references"]]
    assert root["operationName"] == "POST /v1/messages"
    # what the request published continues its trace: render's span will hang below it
    [record] = [r for r in tap.records if r.key == message_id.encode()]
    traceparent = dict(record.headers)["traceparent"].decode()
    assert traceparent.split("-")[1] == trace_id


async def test_the_recorder_skips_poison_and_keeps_unknown_event_types(
    client: httpx.AsyncClient,
    service: IngestService,
    settings: Settings,
    tenant: tuple[Tenant, str],
) -> None:
    events = public_topic(EVENTS, settings.topic_prefix)
    spec = message_spec(tenant_id=tenant[0].id, lane=Lane.NORMAL)
    rendered = delivery_event(MessageState.RENDERED, event_data(spec, "render"), datetime.now(UTC))
    opened = rendered.model_copy(  # a moment later: events at the same instant have no order
        update={
            "id": str(uuid.uuid4()),
            "type": "sendarix.message.opened",
            "time": rendered.time + timedelta(milliseconds=1),
        }
    )
    not_uuid = rendered.model_copy(update={"id": "x", "subject": "not-a-uuid"})
    poison = [b"\xff{", b'{"specversion": "1.0"}', not_uuid.model_dump_json().encode()]
    for value in [*poison, rendered.model_dump_json().encode(), opened.model_dump_json().encode()]:
        await service.broker.publish(
            value, events, partition=0, headers={"content-type": "application/json"}
        )

    async def logged() -> dict[str, Any] | None:
        response = await client.get(f"/v1/messages/{spec.message_id}", headers=auth(tenant))
        view: dict[str, Any] = response.json()
        return view if len(view.get("events", [])) == 2 else None

    view = await eventually(logged, timeout=20)
    assert view["status"] == "rendered"
    assert [e["type"] for e in view["events"]] == ["rendered", "opened"]
    assert view["to"] == spec.recipient.address


async def test_a_message_the_broker_cannot_take_is_answered_503(
    service: IngestService,
    settings: Settings,
    pool: asyncpg.Pool,
    tenant: tuple[Tenant, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(accept_module, "PUBLISH_TIMEOUT_SECONDS", 1.0)
    nowhere = settings.model_copy(update={"topic_prefix": f"absent{uuid.uuid4().hex[:6]}."})
    gateway = build_api(setup_tracing("ingest", settings))
    gateway.state.ingest = Ingest.on(nowhere, service.broker, pool)
    transport = httpx.ASGITransport(app=gateway)
    async with httpx.AsyncClient(transport=transport, base_url="http://ingest.test") as http:
        response = await http.post("/v1/messages", json=otp(), headers=auth(tenant))
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "unavailable"
    assert int(response.headers["retry-after"]) > 0
