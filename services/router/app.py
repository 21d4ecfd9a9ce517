"""router's wiring: a subscriber per lane of ``route.<lane>``, publishing to ``deliver.<lane>``.

A message with a future ``send_at`` goes to ``retry.<lane>`` instead: the retry-scheduler
already holds deferred attempts until they are due, so scheduled sends need nothing new.
"""

from __future__ import annotations

from datetime import UTC, datetime

from faststream.kafka import KafkaMessage

from libs.broker import make_broker, parse_record, publish_record, subscribe_lanes
from libs.events import emit, event_data
from libs.logs import current_message_id
from libs.poison import report_undecodable
from libs.settings import Settings
from libs.topics import lane_topic
from schemas.events import MessageState
from schemas.pipeline import RenderedMessage
from services.router.decide import delivery_job, scheduled_send

SERVICE = "router"


class RouterService:
    """Turns each cleared message into its first delivery job."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.broker = make_broker(SERVICE, settings)
        subscribe_lanes(self.broker, settings, SERVICE, "route", self._route)

    async def start(self) -> None:
        await self.broker.start()

    async def stop(self) -> None:
        await self.broker.stop()

    async def _route(self, message: KafkaMessage) -> None:
        rendered = parse_record(RenderedMessage, message)
        if rendered is None:
            await report_undecodable(self.broker, self.settings, SERVICE, message)
            return
        spec = rendered.message
        current_message_id.set(spec.message_id)
        job = delivery_job(rendered, self.settings)
        deferral = scheduled_send(job, datetime.now(UTC))
        stage, record = ("deliver", job) if deferral is None else ("retry", deferral)
        topic = lane_topic(stage, spec.lane, self.settings.topic_prefix)
        await publish_record(self.broker, topic, record, spec.message_id)
        due = deferral.due_at if deferral is not None else None
        routed = event_data(spec, SERVICE, route=job.route, next_attempt_at=due)
        await emit(self.broker, self.settings, MessageState.ROUTED, routed)
