"""sender on the real broker and database, delivering to the mailbox simulator and to Mailpit."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiosmtpd.smtp import SMTP
from opentelemetry import trace

from deploy.simulator.server import MailboxSimulator
from libs.message_tokens import Purpose, signing_key
from libs.settings import Settings
from libs.topics import EVENTS, lane_topic, public_topic
from libs.verp import read_return_path, return_path
from schemas.common import Lane
from schemas.pipeline import DeliveryJob, RetryRequest, Route
from services.retry_scheduler.app import RetrySchedulerService
from services.sender import app as sender_app
from services.sender.app import SenderService
from services.sender.store import AttemptClaim, claim_attempts
from tests.support import TopicTap, eventually
from tests.unit.sender.jobs import delivery_job

pytestmark = pytest.mark.integration

SIMULATOR = "simulator.sendarix.test"
BOUNCES = "bounces@sendarix.test"
LANE = Lane.CRITICAL
TENANT = str(uuid.uuid4())
"""Every job of this module is this tenant's, so the retries they leave behind can be deleted."""


@pytest.fixture
async def tap(settings: Settings, sender: SenderService) -> AsyncIterator[TopicTap]:
    topics = [
        public_topic(EVENTS, settings.topic_prefix),
        lane_topic("retry", LANE, settings.topic_prefix),
    ]
    async with TopicTap(settings, *topics) as watching:
        yield watching


@pytest.fixture(scope="module", autouse=True)
async def forget_our_retries(pool: asyncpg.Pool) -> AsyncIterator[None]:
    """Delete this module's deferred attempts at its end: any scheduler sharing the database
    would otherwise release them into its own topics."""
    yield
    await pool.execute("DELETE FROM retry_schedule WHERE job->'message'->>'tenant_id' = $1", TENANT)


def simulator_route(simulator: MailboxSimulator, timeout: float = 3.0) -> Route:
    return Route(
        name="simulator",
        host="127.0.0.1",
        port=simulator.port,
        pool="test",
        timeout_seconds=timeout,
    )


def our_job(recipient: str, route: Route) -> DeliveryJob:
    """A job of this module's tenant, with a retry window short enough to end its retries."""
    return delivery_job(recipient, route=route, retry_for=timedelta(seconds=30), tenant_id=TENANT)


def simulated_job(simulator: MailboxSimulator, mailbox: str) -> DeliveryJob:
    return our_job(f"{mailbox}@{SIMULATOR}", simulator_route(simulator))


async def deliver(sender: SenderService, settings: Settings, job: DeliveryJob) -> None:
    await sender.broker.publish(
        job.model_dump_json().encode(),
        lane_topic("deliver", job.message.lane, settings.topic_prefix),
        key=job.message.message_id.encode(),
    )


def event(job: DeliveryJob, state: str) -> Callable[[Any], bool]:
    message_id = job.message.message_id
    return lambda v: v.get("subject") == message_id and v.get("type") == f"sendarix.message.{state}"


def header_id(job: DeliveryJob) -> str:
    return f"<{job.message.message_id}@example.test>"


def mailbox_copies(simulator: MailboxSimulator, job: DeliveryJob) -> list[dict[str, Any]]:
    path = simulator.settings.simulator_log
    lines = path.read_text().splitlines() if path.exists() else []
    return [entry for entry in map(json.loads, lines) if entry["message_id"] == header_id(job)]


async def attempt_row(pool: asyncpg.Pool, job: DeliveryJob) -> asyncpg.Record | None:
    return await pool.fetchrow(
        "SELECT * FROM delivery_attempts WHERE message_id = $1 AND attempt = $2",
        job.message.message_id,
        job.attempt,
    )


async def test_success_is_delivered_once(
    sender: SenderService,
    simulator: MailboxSimulator,
    settings: Settings,
    tap: TopicTap,
    pool: asyncpg.Pool,
) -> None:
    job = simulated_job(simulator, "success+otp")
    await deliver(sender, settings, job)

    [delivered] = await tap.wait_for(event(job, "delivered"))
    data = delivered["data"]
    assert data["smtp"]["code"] == 250 and data["attempt"] == 1
    assert data["route"]["port"] == simulator.port
    [copy] = mailbox_copies(simulator, job)
    assert copy["rcpt"] == f"success+otp@{SIMULATOR}"
    spec = job.message
    key = signing_key(settings)
    assert copy["mail_from"] == return_path(key, spec.tenant_id, spec.message_id, BOUNCES)
    token = read_return_path(copy["mail_from"], BOUNCES)
    assert token is not None and token.verified(key, Purpose.RETURN_PATH, spec.tenant_id)
    row = await attempt_row(pool, job)
    assert row is not None and (row["state"], row["outcome"]) == ("done", "delivered")


async def test_bounce_is_reported_with_the_reply(
    sender: SenderService,
    simulator: MailboxSimulator,
    settings: Settings,
    tap: TopicTap,
    pool: asyncpg.Pool,
) -> None:
    job = simulated_job(simulator, "bounce")
    await deliver(sender, settings, job)

    [bounced] = await tap.wait_for(event(job, "bounced"))
    assert bounced["data"]["smtp"] == {
        "code": 550,
        "enhanced_status": "5.1.1",
        "text": "No such mailbox",
    }
    assert bounced["data"]["bounce"] == {
        "category": "invalid_recipient",
        "hard": True,
        "async": False,
    }
    assert mailbox_copies(simulator, job) == []
    assert await attempt_row(pool, job) is None  # refused at RCPT: never claimed for DATA


async def test_softbounce_is_deferred_to_the_next_attempt(
    sender: SenderService, simulator: MailboxSimulator, settings: Settings, tap: TopicTap
) -> None:
    job = simulated_job(simulator, "softbounce")
    await deliver(sender, settings, job)

    [deferred] = await tap.wait_for(event(job, "deferred"))
    data = deferred["data"]
    assert (data["attempt"], data["smtp"]["code"], data["smtp"]["enhanced_status"]) == (
        1,
        452,
        "4.2.2",
    )
    assert data["bounce"] == {"category": "mailbox_full", "hard": False, "async": False}
    [raw] = await tap.wait_for(
        lambda v: "due_at" in v and v["job"]["message"]["message_id"] == job.message.message_id
    )
    retry = RetryRequest.model_validate(raw)
    assert retry.job == job.model_copy(update={"attempt": 2})
    assert retry.reply.code == 452
    assert retry.due_at.isoformat() == data["next_attempt_at"].replace("Z", "+00:00")


async def test_the_same_job_twice_is_sent_once(
    sender: SenderService, simulator: MailboxSimulator, settings: Settings, tap: TopicTap
) -> None:
    job = simulated_job(simulator, "success")
    await deliver(sender, settings, job)
    await deliver(sender, settings, job)

    first, second = await tap.wait_for(event(job, "delivered"), count=2)
    assert first["id"] == second["id"]  # the same event again: consumers drop the copy
    assert first["data"]["smtp"] == second["data"]["smtp"]
    assert len(mailbox_copies(simulator, job)) == 1
    assert simulator.handler.attempts[header_id(job)] == 1  # the second run sent no DATA


async def test_a_claim_whose_answer_was_lost_is_withdrawn_and_the_message_sent_once(
    sender: SenderService,
    simulator: MailboxSimulator,
    settings: Settings,
    tap: TopicTap,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The database restarts after committing a claim and before answering: the sender knows it
    sent nothing, withdraws its own claim when the database is back, and delivers once."""
    job = simulated_job(simulator, "success")
    lost = [(job.message.message_id, job.attempt)]

    async def committed_then_cut_off(
        pool: asyncpg.Pool, claims: Sequence[AttemptClaim], claimer: str
    ) -> dict[AttemptClaim, bool]:
        claimed = await claim_attempts(pool, claims, claimer)
        if lost and lost[0] in [claim.key for claim in claims]:
            lost.clear()
            raise asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed")
        return claimed

    monkeypatch.setattr(sender_app, "claim_attempts", committed_then_cut_off)
    await deliver(sender, settings, job)

    await tap.wait_for(event(job, "delivered"))
    assert not [v for v in tap.json_values() if event(job, "failed")(v)]
    assert len(mailbox_copies(simulator, job)) == 1


async def test_an_attempt_left_in_data_is_never_sent_again(
    sender: SenderService,
    simulator: MailboxSimulator,
    settings: Settings,
    tap: TopicTap,
    pool: asyncpg.Pool,
) -> None:
    job = simulated_job(simulator, "success")
    await pool.execute(
        "INSERT INTO delivery_attempts (message_id, attempt, state, started_at)"
        " VALUES ($1, $2, 'data', now() - interval '1 hour')",  # a crash mid-DATA, long ago
        job.message.message_id,
        job.attempt,
    )
    await deliver(sender, settings, job)

    [failed] = await tap.wait_for(event(job, "failed"))
    assert failed["data"]["problem"]["code"] == "delivery_outcome_unknown"
    assert mailbox_copies(simulator, job) == []
    assert simulator.handler.attempts[header_id(job)] == 0


async def test_an_attempt_in_flight_elsewhere_is_awaited_not_repeated(
    sender: SenderService,
    simulator: MailboxSimulator,
    settings: Settings,
    tap: TopicTap,
    pool: asyncpg.Pool,
) -> None:
    job = simulated_job(simulator, "success")
    key = (job.message.message_id, job.attempt)
    await pool.execute(
        "INSERT INTO delivery_attempts (message_id, attempt, state) VALUES ($1, $2, 'data')", *key
    )
    await deliver(sender, settings, job)
    await asyncio.sleep(1.0)  # lets the sender find the claim in flight; it waits up to 7 s
    reply = {"code": 250, "enhanced_status": "2.0.0", "text": "accepted elsewhere"}
    await pool.execute(  # the other instance's DATA ends
        "UPDATE delivery_attempts SET state = 'done', outcome = 'delivered', reply = $3,"
        " finished_at = now() WHERE message_id = $1 AND attempt = $2",
        *key,
        reply,
    )

    [delivered] = await tap.wait_for(event(job, "delivered"))
    assert delivered["data"]["smtp"] == reply
    assert not [v for v in tap.json_values() if event(job, "failed")(v)]
    assert simulator.handler.attempts[header_id(job)] == 0


class SlowAfterData:
    """An SMTP server that takes the whole message, then answers too late."""

    def __init__(self) -> None:
        self.copies = 0

    async def handle_DATA(self, server: SMTP, session: object, envelope: object) -> str:
        self.copies += 1
        await asyncio.sleep(1.0)
        return "250 2.0.0 OK, but too late"


async def test_a_timeout_after_data_is_never_sent_again(
    sender: SenderService, settings: Settings, tap: TopicTap, pool: asyncpg.Pool
) -> None:
    loop, handler = asyncio.get_running_loop(), SlowAfterData()
    server = await loop.create_server(lambda: SMTP(handler, loop=loop), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    route = Route(name="late", host="127.0.0.1", port=port, pool="test", timeout_seconds=0.3)
    job = our_job("user@example.test", route)
    try:
        await deliver(sender, settings, job)
        [failed] = await tap.wait_for(event(job, "failed"))
        await deliver(sender, settings, job)
        await tap.wait_for(event(job, "failed"), count=2)
    finally:
        server.close()
        await server.wait_closed()
    assert failed["data"]["problem"]["code"] == "delivery_outcome_unknown"
    assert failed["data"]["smtp"]["code"] == 0
    assert handler.copies == 1
    row = await attempt_row(pool, job)
    assert row is not None and row["state"] == "data"


async def test_a_server_slower_than_the_timeout_defers(
    sender: SenderService, settings: Settings, tap: TopicTap, tmp_path: Path
) -> None:
    impatient = settings.model_copy(
        update={
            "simulator_port": 0,
            "simulator_log": tmp_path / "log.jsonl",
            "smtp_timeout_seconds": 0.3,
        }
    )
    slow_simulator = MailboxSimulator(impatient)
    await slow_simulator.start()
    try:
        job = our_job(f"slow@{SIMULATOR}", simulator_route(slow_simulator, timeout=0.3))
        await deliver(sender, settings, job)
        [deferred] = await tap.wait_for(event(job, "deferred"))
    finally:
        await slow_simulator.stop()
    assert deferred["data"]["smtp"]["code"] == 0
    assert "Timeout" in deferred["data"]["smtp"]["text"]


async def test_relay_route_reaches_mailpit(
    sender: SenderService, settings: Settings, tap: TopicTap
) -> None:
    relay = Route(
        name="default-relay", host=settings.relay_host, port=settings.relay_port, pool="test"
    )
    job = our_job("someone@example.test", relay)
    await deliver(sender, settings, job)
    await tap.wait_for(event(job, "delivered"))

    search = f"{settings.mailpit_ui_url}/api/v1/search"
    query = {"query": f"message-id:{job.message.message_id}@example.test"}
    async with httpx.AsyncClient() as client:
        found = (await client.get(search, params=query)).json()
    [message] = found["messages"]
    assert message["Subject"] == "Your code"
    assert message["To"] == [{"Name": "", "Address": "someone@example.test"}]


async def sender_span(settings: Settings, trace_id: str) -> dict[str, Any]:
    """The sender's span of trace ``trace_id``, once Jaeger has it."""
    url = f"{settings.jaeger_ui_url}/api/traces/{trace_id}"

    async def smtp_span() -> dict[str, Any] | None:
        async with httpx.AsyncClient() as client:
            response = await client.get(url)
        if response.status_code != 200:
            return None
        spans = [s for t in response.json()["data"] for s in t["spans"]]
        return next((s for s in spans if s["operationName"] == "sender"), None)

    return await eventually(smtp_span, timeout=15, every=0.5)


async def test_the_smtp_reply_is_in_the_message_trace(
    sender: SenderService, simulator: MailboxSimulator, settings: Settings, tap: TopicTap
) -> None:
    job = simulated_job(simulator, "success")
    with trace.get_tracer("tests").start_as_current_span("test publish") as span:
        trace_id = format(span.get_span_context().trace_id, "032x")
        await deliver(sender, settings, job)
    await tap.wait_for(event(job, "delivered"))

    span_found = await sender_span(settings, trace_id)
    [exchange] = [
        log
        for log in span_found["logs"]
        if {"key": "event", "type": "string", "value": "smtp exchange"} in log["fields"]
    ]
    assert {"key": "smtp.reply_code", "type": "int64", "value": 250} in exchange["fields"]
    tags = {tag["key"]: tag["value"] for tag in span_found["tags"]}
    assert tags["smtp.reply_code"] == 250
    assert tags["sendarix.attempt"] == 1
    assert tags["sendarix.route"] == "simulator"


async def test_throttled_mail_is_delivered_on_the_fourth_attempt(
    sender: SenderService, simulator: MailboxSimulator, settings: Settings, tap: TopicTap
) -> None:
    scheduler = RetrySchedulerService(settings)
    await scheduler.start()
    try:
        job = simulated_job(simulator, "throttle+retry")
        await deliver(sender, settings, job)
        [delivered] = await tap.wait_for(event(job, "delivered"), timeout=30)
    finally:
        await scheduler.stop()
    assert delivered["data"]["attempt"] == 4
    deferrals = await tap.wait_for(event(job, "deferred"), count=3)
    assert sorted(d["data"]["attempt"] for d in deferrals) == [1, 2, 3]
    assert {d["data"]["smtp"]["code"] for d in deferrals} == {421}
    assert len(mailbox_copies(simulator, job)) == 1
