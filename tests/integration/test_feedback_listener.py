"""The feedback listener over real SMTP, against the real broker and database: what comes back
to a return path becomes an event of its message, and nothing else changes anything."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosmtplib
import asyncpg
import pytest

from deploy.simulator.reports import auto_reply, complaint_report
from deploy.simulator.server import MailboxSimulator
from libs.ip_pools import NewPool, create_pool
from libs.message_log import UNVERIFIED_TOKENS
from libs.message_tokens import Purpose, sign, signing_key
from libs.settings import Settings
from libs.topics import EVENTS, public_topic
from libs.verp import return_path
from schemas.events import MessageState, event_id
from services.feedback.app import FEEDBACK, FeedbackService
from tests.support import (
    TopicTap,
    delivery_status,
    logged_delivered,
    mail_from_null_sender,
    sent_headers,
    started,
)

pytestmark = pytest.mark.integration

SIMULATOR = "simulator.sendarix.test"


@pytest.fixture(scope="module")
async def listener(settings: Settings) -> AsyncIterator[FeedbackService]:
    async with started(FeedbackService(settings.model_copy(update={"feedback_port": 0}))) as up:
        yield up


@pytest.fixture
async def tap(settings: Settings) -> AsyncIterator[TopicTap]:
    async with TopicTap(settings, public_topic(EVENTS, settings.topic_prefix)) as running:
        yield running


def verp(settings: Settings, row: Any, key: bytes | None = None) -> str:
    key = key or signing_key(settings)
    return return_path(key, str(row["tenant_id"]), str(row["id"]), settings.bounce_address)


def original_headers(row: Any) -> str:
    return sent_headers(str(row["id"]), row["recipient"])


def dsn(row: Any, action: str = "failed", status: str = "5.1.1", to: str | None = None) -> bytes:
    return delivery_status(str(row["id"]), to or row["recipient"], action, status)


async def mail(listener: FeedbackService, to: str, content: bytes) -> Any:
    return await mail_from_null_sender(listener.port, to, content)


def events_of(tap: TopicTap, row: Any) -> list[dict[str, Any]]:
    return [e for e in tap.json_values() if e.get("subject") == str(row["id"])]


async def test_an_async_bounce_is_bounced_in_the_messages_trace(
    listener: FeedbackService, pool: asyncpg.Pool, tap: TopicTap, settings: Settings
) -> None:
    row = await logged_delivered(pool, f"gone-{uuid.uuid4().hex[:6]}@example.com")

    await mail(listener, verp(settings, row), dsn(row))
    await mail(listener, verp(settings, row).upper(), dsn(row))  # re-delivered, case-folded

    first, again = await tap.wait_for(lambda e: e.get("subject") == str(row["id"]), count=2)
    assert first["id"] == again["id"] == event_id(str(row["id"]), MessageState.BOUNCED)
    assert first["type"] == "sendarix.message.bounced"
    data = first["data"]
    assert data["bounce"] == {"category": "invalid_recipient", "hard": True, "async": True}
    assert data["smtp"]["code"] == 550 and data["smtp"]["enhanced_status"] == "5.1.1"
    assert (data["trace_id"], data["tenant_id"]) == (row["trace_id"], str(row["tenant_id"]))
    assert data["service"] == "feedback" and data["recipient"] == row["recipient"]
    [record] = [r for r in tap.records if r.key == str(row["id"]).encode()][:1]
    traceparent = dict(record.headers)["traceparent"].decode()
    assert traceparent.split("-")[1] == row["trace_id"]


async def test_a_bounce_to_a_pools_return_path_domain_is_taken(
    listener: FeedbackService, pool: asyncpg.Pool, tap: TopicTap, settings: Settings
) -> None:
    row = await logged_delivered(pool, f"gone-{uuid.uuid4().hex[:6]}@example.com")
    domain = f"rp-{uuid.uuid4().hex[:6]}.example.net"
    fields = NewPool(name="bulk-b", return_path_domain=domain)
    await create_pool(pool, str(row["tenant_id"]), fields)
    key = signing_key(settings)
    address = return_path(
        key, str(row["tenant_id"]), str(row["id"]), settings.bounce_address, domain
    )
    listener.domain_cache.discard("all")  # read the new pool now, not within 30 s

    await mail(listener, address, dsn(row))

    [bounced] = await tap.wait_for(lambda e: e.get("subject") == str(row["id"]))
    assert bounced["type"] == "sendarix.message.bounced"
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused):  # no pool answers for this one
        await mail(listener, address.replace(domain, "elsewhere.example.net"), dsn(row))


async def test_a_delay_report_is_delayed(
    listener: FeedbackService, pool: asyncpg.Pool, tap: TopicTap, settings: Settings
) -> None:
    row = await logged_delivered(pool, f"slow-{uuid.uuid4().hex[:6]}@example.com")

    await mail(listener, verp(settings, row), dsn(row, action="delayed", status="4.4.7"))

    [event] = await tap.wait_for(lambda e: e.get("subject") == str(row["id"]))
    assert event["type"] == "sendarix.message.delayed"
    assert event["data"]["bounce"]["hard"] is False and event["data"]["bounce"]["async"] is True


async def test_a_complaint_report_is_complained(
    listener: FeedbackService, pool: asyncpg.Pool, tap: TopicTap, settings: Settings
) -> None:
    row = await logged_delivered(pool, f"complaint+{uuid.uuid4().hex[:6]}@{SIMULATOR}")
    address = verp(settings, row)
    original = (original_headers(row) + "\r\nbody\r\n").encode()
    report = complaint_report(original, address, row["recipient"], SIMULATOR, datetime.now(UTC))

    await mail(listener, address, report.as_bytes())

    [event] = await tap.wait_for(lambda e: e.get("subject") == str(row["id"]))
    assert event["type"] == "sendarix.message.complained"
    assert event["data"]["feedback_type"] == "abuse"


async def test_the_unsubscribe_mailto_unsubscribes_from_the_stream(
    listener: FeedbackService, pool: asyncpg.Pool, tap: TopicTap, settings: Settings
) -> None:
    row = await logged_delivered(pool, f"reader-{uuid.uuid4().hex[:6]}@example.com", "broadcast")
    key, tenant = signing_key(settings), str(row["tenant_id"])
    wrong_stream = sign(key, Purpose.UNSUBSCRIBE, tenant, str(row["id"]), "transactional")
    token = sign(key, Purpose.UNSUBSCRIBE, tenant, str(row["id"]), "broadcast")

    await mail(listener, f"unsub+{wrong_stream}@sendarix.test", b"Subject: unsubscribe\r\n\r\n")
    await mail(listener, f"unsub+{token}@sendarix.test", b"Subject: unsubscribe\r\n\r\n")

    [event] = await tap.wait_for(lambda e: e.get("subject") == str(row["id"]))
    assert event["type"] == "sendarix.message.unsubscribed"
    await asyncio.sleep(1)
    assert len(events_of(tap, row)) == 1


async def test_forged_foreign_malformed_and_automatic_mail_changes_nothing(
    listener: FeedbackService, pool: asyncpg.Pool, tap: TopicTap, settings: Settings
) -> None:
    victim = await logged_delivered(pool, f"victim-{uuid.uuid4().hex[:6]}@example.com")
    other = await logged_delivered(pool, f"other-{uuid.uuid4().hex[:6]}@example.com")
    ooto = await logged_delivered(pool, f"ooto-{uuid.uuid4().hex[:6]}@{SIMULATOR}")
    forged_before = UNVERIFIED_TOKENS.labels("return-path", "forged")._value.get()
    outcomes = ("unreadable", "auto_reply", "other_message", "other_recipient")
    before = {outcome: FEEDBACK.labels(outcome)._value.get() for outcome in outcomes}

    # a token made with another secret (a forger's), and one of another tenant's message
    await mail(listener, verp(settings, victim, key=b"not-the-secret"), dsn(victim))
    foreign = dict(victim) | {"tenant_id": other["tenant_id"]}
    await mail(listener, verp(settings, foreign), dsn(victim))
    # a genuine token of one message, carrying a report about another, or another recipient
    await mail(listener, verp(settings, victim), dsn(other))
    await mail(listener, verp(settings, victim), dsn(victim, to="someone@else.example"))
    # an auto-reply, and garbage: taken (250) and dropped
    reply = auto_reply(
        (original_headers(ooto) + "\r\nhi\r\n").encode(),
        verp(settings, ooto),
        ooto["recipient"],
        SIMULATOR,
        datetime.now(UTC),
    )
    await mail(listener, verp(settings, ooto), reply.as_bytes())
    answer = await mail(listener, verp(settings, victim), bytes(range(256)) * 40)
    assert answer[1] == "2.0.0 OK"
    # an address that is no return path does not exist here
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
        await mail(listener, "postmaster@sendarix.test", dsn(victim))
    assert refused.value.recipients[0].code == 550

    # the listener still serves, and the genuine report is the only event
    await mail(listener, verp(settings, other), dsn(other))
    await tap.wait_for(lambda e: e.get("subject") == str(other["id"]))
    await asyncio.sleep(1)
    assert events_of(tap, victim) == [] and events_of(tap, ooto) == []
    assert UNVERIFIED_TOKENS.labels("return-path", "forged")._value.get() == forged_before + 2
    for outcome in outcomes:  # each of these mails counted once, under its own outcome
        assert FEEDBACK.labels(outcome)._value.get() == before[outcome] + 1, outcome


async def test_a_report_about_a_message_not_logged_yet_is_deferred(
    listener: FeedbackService, pool: asyncpg.Pool, settings: Settings
) -> None:
    unknown = {"id": uuid.uuid4(), "tenant_id": uuid.uuid4(), "recipient": "x@example.com"}

    with pytest.raises(aiosmtplib.SMTPResponseException) as deferred:
        await mail(listener, verp(settings, unknown), dsn(unknown))

    assert (deferred.value.code, deferred.value.message[:5]) == (451, "4.4.0")


async def test_the_simulators_complaint_reaches_the_listener_even_before_the_log(
    listener: FeedbackService,
    pool: asyncpg.Pool,
    tap: TopicTap,
    settings: Settings,
    tmp_path: Path,
) -> None:
    tenant_id, message_id = str(uuid.uuid4()), str(uuid.uuid4())
    recipient = f"complaint@{SIMULATOR}"
    update = {
        "simulator_port": 0,
        "simulator_log": tmp_path / "mailbox.jsonl",
        "feedback_port": listener.port,
    }
    async with started(MailboxSimulator(settings.model_copy(update=update))) as simulator:
        await aiosmtplib.send(
            (sent_headers(message_id, recipient) + "\r\nYour receipt\r\n").encode(),
            sender=verp(settings, {"id": message_id, "tenant_id": tenant_id}),
            recipients=[recipient],
            hostname="127.0.0.1",
            port=simulator.port,
            timeout=10,
        )
        await asyncio.sleep(0.5)  # the report comes back before the recorder logged the message
        row = await logged_delivered(pool, recipient, tenant_id=tenant_id, message_id=message_id)
        [event] = await tap.wait_for(lambda e: e.get("subject") == str(row["id"]))
    assert event["type"] == "sendarix.message.complained"


async def test_mail_over_the_size_limit_is_refused(
    listener: FeedbackService, pool: asyncpg.Pool, settings: Settings
) -> None:
    row = await logged_delivered(pool, f"big-{uuid.uuid4().hex[:6]}@example.com")
    huge = dsn(row) + b"x" * settings.feedback_max_bytes

    with pytest.raises(aiosmtplib.SMTPResponseException) as refused:
        await mail(listener, verp(settings, row), huge)

    assert refused.value.code == 552
