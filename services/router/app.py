"""router's wiring: a subscriber per lane of ``route.<lane>``, publishing to ``deliver.<lane>``.

A message with a future ``send_at`` goes to ``retry.<lane>`` instead: the retry-scheduler
already holds deferred attempts until they are due, so scheduled sends need nothing new.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from faststream.kafka import KafkaMessage

from libs.broker import publish_record, subscribe_lanes
from libs.events import emit, event_data
from libs.logs import current_message_id
from libs.service import PipelineService
from libs.settings import Settings
from libs.topics import lane_topic
from schemas.events import MessageState
from schemas.pipeline import RenderedMessage
from services.router.decide import delivery_job, scheduled_send

SERVICE = "router"


class RouterService(PipelineService):
    """Turns each cleared message into its first delivery job."""

    name = SERVICE
    uses_database = False

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        subscribe_lanes(self.broker, settings, SERVICE, "route", self._route)

    async def _route(self, message: KafkaMessage) -> None:
        rendered = await self.decode(RenderedMessage, message)
        if rendered is None:
            return
        spec = rendered.message
        current_message_id.set(spec.message_id)
        job = delivery_job(rendered, self.settings)
        deferral = scheduled_send(job, datetime.now(UTC))
        stage, record = ("deliver", job) if deferral is None else ("retry", deferral)
        topic = lane_topic(stage, spec.lane, self.settings.topic_prefix)
        due = deferral.due_at if deferral is not None else None
        routed = event_data(spec, SERVICE, route=job.route, next_attempt_at=due)
        await asyncio.gather(  # both acknowledged before the offset commits; order is free
            publish_record(self.broker, topic, record, spec.message_id),
            emit(self.broker, self.settings, MessageState.ROUTED, routed),
        )
