"""Hostile input against the whole topology: every door refuses what cannot be sent, nothing
stalls, and an OTP sent right after is delivered within seconds.

The requests are the ones that broke the platform when it was first tried as a new user would
(issue "no input may stall a partition"); the topic is fed random bytes, invalid UTF-8, deeply
nested JSON and malformed CloudEvents.
"""

from __future__ import annotations

import base64
import json
import random
import uuid
from functools import partial
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from libs.broker import group_id
from libs.sendable import MAX_ATTACHMENT_BYTES, MAX_MESSAGE_BYTES
from libs.settings import Settings
from libs.tenants import Tenant
from libs.topics import EVENTS, MAX_RECORD_BYTES, SEND_REQUESTS, public_topic
from services.ingest.ids import RecordOrigin, record_message_ids
from tests.e2e.conftest import Topology
from tests.support import eventually

pytestmark = pytest.mark.e2e

SIMULATOR = "simulator.sendarix.test"
DELIVERED_WITHIN_SECONDS = 10.0
"""The acceptance: an OTP after the hostile input is delivered and shown within this time."""

SENDER = "login@example.test"


def otp(**fields: Any) -> dict[str, Any]:
    body = {
        "from": f"Acme <{SENDER}>",
        "to": f"success+{uuid.uuid4().hex[:8]}@{SIMULATOR}",
        "subject": "Your code",
        "text": "Your code is 123456",
        "category": "otp",
    }
    return body | fields


REFUSED: list[tuple[str, dict[str, Any], int, str]] = [
    ("NUL in the subject", {"subject": "a\u0000b"}, 422, "/subject"),
    ("line separator in the sender's name", {"from": f"Rev\u2028Team <{SENDER}>"}, 422, "/from"),
    ("NEL in the sender's name", {"from": f"Rev\u0085Team <{SENDER}>"}, 422, "/from"),
    ("NEL in reply_to", {"reply_to": "Help\u0085Desk <help@example.test>"}, 422, "/reply_to"),
    ("NEL in a header value", {"headers": {"X-Campaign": "a\u0085b"}}, 422, "/headers/X-Campaign"),
    (
        "CR/LF in an attachment filename",
        {"attachments": [{"filename": "a\r\nBcc: x@evil.test", "content": "aGk="}]},
        422,
        "/attachments/0/filename",
    ),
    (
        "non-ASCII in attachment content",
        {"attachments": [{"filename": "a.txt", "content": "aGk=é"}]},
        422,
        "/attachments/0/content",
    ),
    (
        "an encoded word posing as another sender",
        {"from": f"=?utf-8?q?ceo=40bank.example?= <{SENDER}>"},
        422,
        "/from",
    ),
    ("an address as display name", {"from": f'"ceo@bank.example" <{SENDER}>'}, 422, "/from"),
    (
        "a 100-character header name",
        {"headers": {"X-" + "a" * 98: "v"}},
        422,
        "/headers/X-" + "a" * 98,
    ),
    ("a UTF-8 local part", {"to": "josé@example.com"}, 422, "/to/0"),
]


@pytest.mark.parametrize(
    ("case", "fields", "status", "where"), REFUSED, ids=[r[0] for r in REFUSED]
)
async def test_the_edge_refuses_what_cannot_be_sent(
    topology: Topology,
    tenant: tuple[Tenant, str],
    case: str,
    fields: dict[str, Any],
    status: int,
    where: str,
) -> None:
    _, api_key = tenant
    answer = await topology.http.post(
        "/v1/messages", json=otp(**fields), headers={"Authorization": f"Bearer {api_key}"}
    )
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert where in [error["pointer"] for error in answer.json()["errors"]], answer.json()


async def test_deep_nesting_is_a_bad_request(
    topology: Topology, tenant: tuple[Tenant, str]
) -> None:
    _, api_key = tenant
    body = b'{"from": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    answer = await topology.http.post(
        "/v1/messages",
        content=body,
        headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] == "too_deep"


async def test_what_the_edge_takes_is_delivered_as_written(
    topology: Topology, tenant: tuple[Tenant, str]
) -> None:
    """Accented names, IDN domains and large inline HTML: 202, then delivered, never failed."""
    _, api_key = tenant
    token = uuid.uuid4().hex
    accented = await topology.send(
        api_key,
        otp(
            **{"from": f"Équipe Sécurité <{SENDER}>"},
            to="Ana María <ana.maria@example.com>",
            subject=f"Olá {token}",
        ),
    )
    idn = await topology.send(api_key, otp(to="user@bücher.example.com", subject=f"IDN {token}"))
    large = await topology.send(
        api_key,
        otp(subject=f"Large {token}", html="<p>" + "x" * 700_000 + "</p>", text=None),
    )
    for accepted in (accented, idn, large):
        await topology.settled(api_key, accepted["id"], "delivered")
    shown = await topology.in_mailpit(f"Olá {token}")
    assert shown["From"] == {"Name": "Équipe Sécurité", "Address": SENDER}
    assert shown["To"] == [{"Name": "Ana María", "Address": "ana.maria@example.com"}]
    assert (await topology.in_mailpit(f"IDN {token}"))["To"][0]["Address"] == (
        "user@xn--bcher-kva.example.com"
    )


async def test_nobody_buys_the_critical_lane(
    topology: Topology, tenant: tuple[Tenant, str]
) -> None:
    _, api_key = tenant
    broadcast = await topology.send(
        api_key, otp(stream="broadcast", priority="critical", category="newsletter")
    )
    shown = await topology.settled(api_key, broadcast["id"], "delivered")
    assert shown["lane"] == "bulk"


async def test_an_otp_after_hostile_requests_is_delivered_within_seconds(
    topology: Topology, tenant: tuple[Tenant, str]
) -> None:
    _, api_key = tenant
    for _, fields, _, _ in REFUSED:
        await topology.http.post(
            "/v1/messages", json=otp(**fields), headers={"Authorization": f"Bearer {api_key}"}
        )
    accepted = await topology.send(api_key, otp())
    await topology.settled(api_key, accepted["id"], "delivered", timeout=DELIVERED_WITHIN_SECONDS)


def garbage(count: int, seed: int) -> list[bytes]:
    """Random byte strings (a few of them megabytes long), invalid UTF-8, deep nesting."""
    rng = random.Random(seed)
    values = [rng.randbytes(rng.randint(0, 2048)) for _ in range(count - 10)]
    values += [rng.randbytes(rng.randint(1, 5_000_000)) for _ in range(3)]
    values += [
        b"\xff" * 600_000,
        b"\xc3\x28 invalid utf-8",
        b"[" * 100_000,
        b'{"tenant_id": ' + b"[" * 5_000 + b"]" * 5_000 + b"}",
        b'{"tenant_id": "\\ud800", "from": "\\u0000"}',
        b"null",
        b'"text"',
    ]
    return values


def malformed_events(tenant_id: str) -> list[bytes]:
    """Records on the event stream that no reader can use as they are."""
    message_id = str(uuid.uuid4())
    event = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/elsewhere",
        "type": "sendarix.message.delivered",
        "subject": message_id,
        "time": "2026-11-29T00:00:00Z",
        "data": {"message_id": message_id, "tenant_id": tenant_id, "trace_id": "0", "service": "x"},
    }
    nul_subject = json.loads(json.dumps(event))
    nul_subject["id"] = str(uuid.uuid4())
    nul_subject["data"]["subject"] = "a\u0000b"
    return [
        b"\xff\xfe",
        b"{}",
        b"[" * 100_000,
        json.dumps(event | {"id": "not-a-uuid"}).encode(),
        json.dumps(event | {"time": "yesterday"}).encode(),
        json.dumps(nul_subject).encode(),
        json.dumps(event | {"type": "sendarix.message.bounced"})
        .replace('"x"}', '"x", "recipient": "\\ud800@example.test"}')
        .encode(),
    ]


async def test_garbage_on_the_topics_stalls_no_consumer(
    topology: Topology, tenant: tuple[Tenant, str]
) -> None:
    account, api_key = tenant
    settings = topology.settings
    requests = public_topic(SEND_REQUESTS, settings.topic_prefix)
    events = public_topic(EVENTS, settings.topic_prefix)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, max_request_size=MAX_RECORD_BYTES
    )
    await producer.start()
    try:
        sent = [await producer.send(requests, value) for value in garbage(1000, seed=7)]
        sent += [await producer.send(events, value) for value in malformed_events(account.id)]
        for pending in sent:
            await pending
        valid = otp(tenant_id=account.id)
        metadata = await producer.send_and_wait(requests, json.dumps(valid).encode())
    finally:
        await producer.stop()

    [message_id] = record_message_ids(
        RecordOrigin(metadata.topic, metadata.partition, metadata.offset), 1
    )
    await topology.settled(api_key, message_id, "delivered", timeout=120)
    readers = {
        requests: [("ingest", "intake")],
        events: [("ingest", "recorder"), ("policy-check", "feedback"), ("webhook", "events")],
    }
    for topic, groups in readers.items():
        for service, role in groups:
            await eventually(partial(caught_up, settings, topic, service, role), timeout=60)


async def caught_up(settings: Settings, topic: str, service: str, role: str) -> bool | None:
    """True once the group of ``service``/``role`` has committed the end of every partition."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    await consumer.start()
    try:
        committed = await admin.list_consumer_group_offsets(group_id(service, role, settings))
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not partitions:
            await consumer.topics()
            partitions = [
                TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()
            ]
        ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
        await admin.close()
    behind = [p for p, end in ends.items() if (committed[p].offset if p in committed else 0) < end]
    return True if not behind else None


async def test_a_message_of_the_documented_maximum_size_is_delivered(
    topology: Topology, tenant: tuple[Tenant, str]
) -> None:
    """7 MiB of attachments plus HTML: a body near the 10 MiB limit goes through every topic."""
    _, api_key = tenant
    attachment = base64.b64encode(random.Random(3).randbytes(MAX_ATTACHMENT_BYTES)).decode()
    body = otp(
        subject="Your statement",
        html="<p>" + "Statement line. " * 20_000 + "</p>",
        attachments=[{"filename": "statement.pdf", "content": attachment}],
    )
    size = len(json.dumps(body).encode())
    assert MAX_MESSAGE_BYTES * 0.9 < size <= MAX_MESSAGE_BYTES
    accepted = await topology.send(api_key, body)
    await topology.settled(api_key, accepted["id"], "delivered", timeout=120)
    [received] = [m for m in topology.simulator_deliveries() if accepted["id"] in m["message_id"]]
    assert received["size"] > MAX_ATTACHMENT_BYTES
