"""sender on the real broker: a slow destination alone in its batch holds the lane only for a
moment once mail waits behind it, not for the whole budget (``services.sender.stragglers``)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from libs.settings import Settings
from libs.topics import EVENTS, lane_topic, public_topic
from schemas.common import Lane
from schemas.pipeline import DeliveryJob, Route
from services.sender.app import SenderService
from tests.integration.test_sender_delivery import deliver, event
from tests.integration.test_sender_sites import two_sites
from tests.support import TopicTap, started
from tests.unit.sender.jobs import delivery_job

pytestmark = pytest.mark.integration

LANE = Lane.CRITICAL
BUDGET_SECONDS = 30.0
"""Far longer than the slow answer: mail that waited for the budget would wait for the answer."""
SLOW_RCPT_SECONDS = 8.0


class SlowToAnswer:
    """A loopback SMTP server that answers ``slow@``'s RCPT after a while and says when it began
    waiting; everything else is taken at once."""

    def __init__(self) -> None:
        self.received: list[str] = []
        self.slow_rcpt_began = asyncio.Event()

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address.startswith("slow@"):
            self.slow_rcpt_began.set()
            await asyncio.sleep(SLOW_RCPT_SECONDS)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.received.extend(envelope.rcpt_tos)
        return "250 2.0.0 OK"


@pytest.fixture
async def mailbox() -> AsyncIterator[tuple[SlowToAnswer, Route, Route]]:
    handler = SlowToAnswer()
    async with two_sites(handler, ("lone-slow-site", "lone-fast-site"), 20.0) as (slow, fast):
        yield handler, slow, fast


async def test_a_slow_attempt_alone_in_its_batch_lets_the_mail_behind_it_go(
    settings: Settings, mailbox: tuple[SlowToAnswer, Route, Route]
) -> None:
    handler, slow_route, fast_route = mailbox
    patient = settings.model_copy(update={"slow_site_budget_seconds": BUDGET_SECONDS})
    tenant = str(uuid.uuid4())

    def job(recipient: str, route: Route) -> DeliveryJob:
        return delivery_job(
            recipient, route=route, retry_for=timedelta(minutes=5), tenant_id=tenant
        )

    slow = job("slow@example.test", slow_route)
    fast = [job(f"user{n}@example.test", fast_route) for n in range(3)]
    topics = [
        public_topic(EVENTS, settings.topic_prefix),
        lane_topic("deliver-slow", LANE, settings.topic_prefix),
    ]
    async with started(SenderService(patient)) as sender, TopicTap(settings, *topics) as tap:
        await deliver(sender, settings, slow)
        await asyncio.wait_for(handler.slow_rcpt_began.wait(), timeout=20)  # alone in its batch
        behind_at = time.monotonic()
        for waiting in fast:
            await deliver(sender, settings, waiting)

        for waiting in fast:
            await tap.wait_for(event(waiting, "delivered"), timeout=20)
        waited = time.monotonic() - behind_at
        assert waited < SLOW_RCPT_SECONDS / 2, waited  # not held until the slow answer
        assert "slow@example.test" not in handler.received

        [moved] = await tap.wait_for(
            lambda v: v.get("message", {}).get("message_id") == slow.message.message_id
        )
        assert DeliveryJob.model_validate(moved) == slow  # the same attempt, unchanged
        [delivered] = await tap.wait_for(event(slow, "delivered"), timeout=30)
    assert delivered["data"]["attempt"] == 1
    assert handler.received.count("slow@example.test") == 1
