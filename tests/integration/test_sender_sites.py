"""sender's sites on the real broker and database: a slow site holds no lane, a throttling site is
slowed and says so, a paused tenant's mail waits in the retry-scheduler until resumed."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from libs.settings import Settings
from libs.topics import EVENTS, lane_topic, public_topic
from schemas.common import Lane
from schemas.pipeline import DeliveryJob, Route
from services.retry_scheduler.app import RetrySchedulerService
from services.sender.app import SenderService
from services.sender.destinations import server_site
from tests.integration.test_sender_delivery import deliver, event
from tests.support import TopicTap, eventually, started
from tests.unit.sender.jobs import delivery_job

pytestmark = pytest.mark.integration

LANE = Lane.CRITICAL
TENANT = str(uuid.uuid4())
BUDGET_SECONDS = 1.0
SLOW_RCPT_SECONDS = 4.0


class Mailbox:
    """A loopback SMTP server: ``slow@`` is answered at RCPT after a few seconds, ``throttle@``
    with a 421; everything else is taken at once."""

    def __init__(self) -> None:
        self.received: list[str] = []

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address.startswith("slow@"):
            await asyncio.sleep(SLOW_RCPT_SECONDS)
        if address.startswith("throttle@"):
            return "421 4.7.0 Too many messages, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.received.extend(envelope.rcpt_tos)
        return "250 2.0.0 OK"


@asynccontextmanager
async def two_sites(
    handler: object, names: tuple[str, str], timeout_seconds: float
) -> AsyncIterator[tuple[Route, Route]]:
    """``handler``'s SMTP server on two ports (two sites), a route to each: one for the slow
    recipient, one for the others."""
    loop = asyncio.get_running_loop()
    servers = [
        await loop.create_server(lambda: SMTP(handler, loop=loop), "127.0.0.1", 0) for _ in range(2)
    ]
    slow, fast = (
        Route(
            name=name,
            host="127.0.0.1",
            port=server.sockets[0].getsockname()[1],
            pool="test",
            timeout_seconds=timeout_seconds,
        )
        for name, server in zip(names, servers, strict=True)
    )
    try:
        yield slow, fast
    finally:
        for server in servers:
            server.close()
            await server.wait_closed()


@pytest.fixture(scope="module")
async def mailbox() -> AsyncIterator[tuple[Mailbox, Route, Route]]:
    handler = Mailbox()
    async with two_sites(handler, ("slow-site", "fast-site"), 10.0) as (slow, fast):
        yield handler, slow, fast


@pytest.fixture(scope="module")
async def sender(settings: Settings) -> AsyncIterator[SenderService]:
    impatient = settings.model_copy(update={"slow_site_budget_seconds": BUDGET_SECONDS})
    async with started(SenderService(impatient)) as running:
        yield running


@pytest.fixture
async def tap(settings: Settings, sender: SenderService) -> AsyncIterator[TopicTap]:
    topics = [
        public_topic(EVENTS, settings.topic_prefix),
        lane_topic("deliver-slow", LANE, settings.topic_prefix),
    ]
    async with TopicTap(settings, *topics) as watching:
        yield watching


@pytest.fixture(scope="module", autouse=True)
async def forget_ours(pool: asyncpg.Pool) -> AsyncIterator[None]:
    yield
    await pool.execute("DELETE FROM retry_schedule WHERE tenant_id = $1", TENANT)
    await pool.execute("DELETE FROM queue_controls WHERE tenant_id = $1", TENANT)


def our_job(recipient: str, route: Route) -> DeliveryJob:
    return delivery_job(recipient, route=route, retry_for=timedelta(minutes=5), tenant_id=TENANT)


async def queue_event(pool: asyncpg.Pool, kind: str, site: str) -> asyncpg.Record:
    """The first ``kind`` change of ``site`` in ``queue_events``, once written."""
    return await eventually(
        lambda: pool.fetchrow(
            "SELECT * FROM queue_events WHERE kind = $1 AND scope->>'site' = $2 ORDER BY id",
            kind,
            site,
        )
    )


def site_of(route: Route) -> str:
    return server_site(route.host, route.port)


async def test_a_slow_site_holds_no_other_mail_of_its_lane(
    sender: SenderService,
    settings: Settings,
    tap: TopicTap,
    pool: asyncpg.Pool,
    mailbox: tuple[Mailbox, Route, Route],
) -> None:
    handler, slow_route, fast_route = mailbox
    slow = our_job("slow@example.test", slow_route)
    fast = [our_job(f"user{n}@example.test", fast_route) for n in range(5)]
    sent_at = time.monotonic()
    for job in (slow, *fast):
        await deliver(sender, settings, job)

    for job in fast:
        await tap.wait_for(event(job, "delivered"))
    fast_seconds = time.monotonic() - sent_at
    assert not [v for v in tap.json_values() if event(slow, "delivered")(v)]  # still pending
    assert fast_seconds < BUDGET_SECONDS + 2.0, fast_seconds

    [moved] = await tap.wait_for(
        lambda v: v.get("message", {}).get("message_id") == slow.message.message_id
    )
    assert DeliveryJob.model_validate(moved) == slow  # the same attempt, unchanged
    [delivered] = await tap.wait_for(event(slow, "delivered"), timeout=20)
    assert delivered["data"]["attempt"] == 1
    assert "slow@example.test" in handler.received
    row = await queue_event(pool, "site_slow", site_of(slow_route))
    assert row["actor"] == "sender" and row["scope"]["lane"] == LANE.value


async def test_a_throttling_site_is_slowed_and_says_so(
    sender: SenderService,
    settings: Settings,
    tap: TopicTap,
    pool: asyncpg.Pool,
    mailbox: tuple[Mailbox, Route, Route],
) -> None:
    _, _, fast_route = mailbox
    route = fast_route.model_copy(update={"name": "throttled"})
    job = our_job("throttle@example.test", route)
    await deliver(sender, settings, job)

    [deferred] = await tap.wait_for(event(job, "deferred"))
    assert deferred["data"]["smtp"]["code"] == 421
    site = site_of(route)
    row = await eventually(
        lambda: pool.fetchrow(
            "SELECT * FROM delivery_sites WHERE site = $1 AND lane = $2 AND state = 'throttled'",
            site,
            LANE.value,
        )
    )
    assert row["rate_per_minute"] is not None
    assert row["last_replies"][-1]["code"] == 421
    change = await queue_event(pool, "site_throttled", site)
    assert change["detail"]["reply"]["enhanced_status"] == "4.7.0"


async def test_a_paused_tenant_waits_until_resumed(
    sender: SenderService,
    settings: Settings,
    tap: TopicTap,
    pool: asyncpg.Pool,
    mailbox: tuple[Mailbox, Route, Route],
) -> None:
    handler, slow_route, _ = mailbox
    route = Route(name="paused", host="127.0.0.1", port=slow_route.port, pool="test")
    job = our_job("paused@example.test", route)
    control = uuid.uuid4()
    await pool.execute(
        "INSERT INTO queue_controls (id, kind, tenant_id, created_by)"
        " VALUES ($1, 'pause', $2, 'test')",
        control,
        TENANT,
    )
    async with started(RetrySchedulerService(settings)):
        await asyncio.sleep(2 * settings.queue_control_poll_seconds)  # the sender saw the pause
        await deliver(sender, settings, job)

        def held() -> Any:
            return pool.fetchrow(
                "SELECT * FROM retry_schedule WHERE message_id = $1", job.message.message_id
            )

        row = await eventually(held)
        assert (row["reason"], row["attempt"], row["tenant_id"]) == ("paused", 1, TENANT)
        assert (row["route"], row["site"], row["domain"]) == (
            "paused",
            site_of(route),
            "example.test",
        )
        await asyncio.sleep(3 * settings.retry_poll_seconds)  # polls that must not release it
        assert await held() is not None
        assert "paused@example.test" not in handler.received

        resumed_at = time.monotonic()
        await pool.execute("DELETE FROM queue_controls WHERE id = $1", control)
        [delivered] = await tap.wait_for(event(job, "delivered"))
        assert time.monotonic() - resumed_at < 3.0
    assert delivered["data"]["attempt"] == 1
    assert not [v for v in tap.json_values() if event(job, "deferred")(v)]  # not an attempt
    assert "paused@example.test" in handler.received
