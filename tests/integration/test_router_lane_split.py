"""A stage service split by lanes (``SENDARIX_LANES``), on the real broker and database: the
urgent process takes only the urgent lanes' records, and the patient process beside it, in
the same consumer groups, takes the rest."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from libs.broker import ensure_topics
from libs.settings import Settings
from libs.topics import lane_topic
from schemas.common import Lane
from schemas.pipeline import RenderedMessage
from services.router.app import RouterService
from tests.records import rendered_message
from tests.support import TopicTap, started

pytestmark = pytest.mark.integration

RECIPIENT = "success@simulator.sendarix.test"


def job_of(message: RenderedMessage, value: dict[str, object]) -> bool:
    """Whether ``value`` is the delivery job the router made of ``message``."""
    job = value.get("message")
    return isinstance(job, dict) and job.get("message_id") == message.message.message_id


async def test_the_urgent_process_leaves_bulk_to_the_patient_one(settings: Settings) -> None:
    own = settings.model_copy(update={"topic_prefix": f"t{uuid.uuid4().hex[:8]}."})
    await ensure_topics(own)
    otp = rendered_message(lane=Lane.CRITICAL, category="otp", recipient=RECIPIENT)
    notice = rendered_message(lane=Lane.BULK, recipient=RECIPIENT)
    deliver = [lane_topic("deliver", lane, own.topic_prefix) for lane in (Lane.CRITICAL, Lane.BULK)]
    async with (
        TopicTap(own, *deliver) as tap,
        started(RouterService(own.model_copy(update={"lanes": "high, critical"}))) as urgent,
    ):
        for message in (notice, otp):
            await urgent.broker.publish(
                message.model_dump_json().encode(),
                lane_topic("route", message.message.lane, own.topic_prefix),
                key=message.message.message_id.encode(),
            )
        await tap.wait_for(lambda value: job_of(otp, value))
        await asyncio.sleep(2)  # the bulk record was published first: long enough to be taken
        assert not any(job_of(notice, value) for value in tap.json_values())

        async with started(RouterService(own.model_copy(update={"lanes": "normal,bulk"}))):
            await tap.wait_for(lambda value: job_of(notice, value))
        assert sum(job_of(otp, value) for value in tap.json_values()) == 1
