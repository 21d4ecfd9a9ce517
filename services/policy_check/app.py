"""policy-check's wiring: a subscriber per lane of ``policy.<lane>`` and one on the event stream.

The event-stream subscriber closes the loop from delivery back to policy: a hard bounce or a
complaint reported by the sender suppresses the address for the next message.
"""

from __future__ import annotations

import logging

from aiokafka import ConsumerRecord
from faststream.kafka import KafkaMessage

from libs.broker import parse_value, subscribe_batch, subscribe_lanes
from libs.events import emit, event_data
from libs.logs import current_message_id
from libs.service import PipelineService
from libs.settings import Settings
from libs.topics import EVENTS, lane_topic, public_topic
from schemas.events import DeliveryEvent, MessageState
from schemas.pipeline import RenderedMessage
from services.policy_check import store
from services.policy_check.decide import address_key, learned_suppression, verdict

SERVICE = "policy-check"

log = logging.getLogger(__name__)


class PolicyCheckService(PipelineService):
    """Clears rendered messages for routing unless their recipient is suppressed."""

    name = SERVICE

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        subscribe_lanes(self.broker, settings, SERVICE, "policy", self._check)
        events = public_topic(EVENTS, settings.topic_prefix)
        subscribe_batch(self.broker, settings, SERVICE, "feedback", events, self._learn)

    async def _check(self, message: KafkaMessage) -> None:
        rendered = await self.decode(RenderedMessage, message)
        if rendered is None:
            return
        spec = rendered.message
        current_message_id.set(spec.message_id)
        suppression = await store.suppression_for(
            self.pool, spec.tenant_id, address_key(spec.recipient)
        )
        problem = verdict(spec, suppression)
        if problem is not None:
            data = event_data(spec, SERVICE, problem=problem)
            await emit(self.broker, self.settings, MessageState.SUPPRESSED, data)
            return
        await self.broker.publish(
            message.body,
            lane_topic("route", spec.lane, self.settings.topic_prefix),
            key=spec.message_id.encode(),
        )

    async def _learn(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        """Suppress the recipients that a batch of events shows dead, hostile or gone."""
        for record in records:
            event = parse_value(DeliveryEvent, record.value, record)
            suppression = learned_suppression(event) if event is not None else None
            if event is None or suppression is None:
                continue
            current_message_id.set(event.subject)
            if await store.add_suppression(self.pool, suppression):
                log.info(
                    "recipient suppressed for tenant %s: %s",
                    event.data.tenant_id,
                    suppression.reason,
                )
