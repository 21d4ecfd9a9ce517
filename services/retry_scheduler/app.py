"""retry-scheduler's wiring: a subscriber per lane of ``retry.<lane>`` and the release loop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from datetime import UTC, datetime

from faststream.kafka import KafkaMessage
from opentelemetry import trace

from libs.broker import subscribe_lanes
from libs.logs import current_message_id
from libs.service import PipelineService
from libs.settings import Settings
from libs.topics import lane_topic
from libs.tracing import context_from_headers, trace_headers
from schemas.common import Lane
from schemas.pipeline import RetryRequest
from services.retry_scheduler.store import DueAttempt, releasing_due_attempts, schedule_attempt

SERVICE = "retry-scheduler"
RELEASE_BATCH = 200
"""Attempts released per transaction; a full batch is followed by the next one at once."""

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)


class RetrySchedulerService(PipelineService):
    """Stores each deferred attempt, then releases it to the sender when it is due."""

    name = SERVICE

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self._releaser: asyncio.Task[None] | None = None
        subscribe_lanes(self.broker, settings, SERVICE, "retry", self._handle)

    async def start(self) -> None:
        await super().start()
        self._releaser = asyncio.create_task(self._release_forever())

    async def stop(self) -> None:
        if self._releaser is not None:
            self._releaser.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._releaser
        await super().stop()

    async def _handle(self, message: KafkaMessage) -> None:
        request = await self.decode(RetryRequest, message)
        if request is None:
            return
        spec = request.job.message
        current_message_id.set(spec.message_id)
        topic = lane_topic("deliver", spec.lane, self.settings.topic_prefix)
        await schedule_attempt(self.pool, request, topic, trace_headers())

    async def _release_forever(self) -> None:
        """Release due attempts every ``retry_poll_seconds``; a failure only delays them."""
        while True:
            try:
                released = await self.release_due()
            except Exception:
                log.exception("releasing due attempts failed; trying again")
                released = 0
            if released < RELEASE_BATCH:
                await asyncio.sleep(self.settings.retry_poll_seconds)

    async def release_due(self) -> int:
        """Publish the attempts due now to ``deliver.<lane>`` and forget them, in one transaction.

        A crash after the publish and before the commit publishes them again; the sender's
        claim on each attempt keeps the copy from being sent.
        """
        topics = [lane_topic("deliver", lane, self.settings.topic_prefix) for lane in Lane]
        releasing = releasing_due_attempts(self.pool, topics, datetime.now(UTC), RELEASE_BATCH)
        async with releasing as due:
            await asyncio.gather(*(self._release(attempt) for attempt in due))
        return len(due)

    async def _release(self, attempt: DueAttempt) -> None:
        """Publish one job, continuing the trace of the attempt that was deferred."""
        context = context_from_headers(attempt.headers)
        attributes: dict[str, str | int] = {
            "sendarix.message_id": attempt.message_id,
            "sendarix.attempt": attempt.attempt,
            "sendarix.lane": attempt.lane.value,
        }
        with tracer.start_as_current_span("retry release", context=context, attributes=attributes):
            await self.broker.publish(
                json.dumps(attempt.job).encode(), attempt.topic, key=attempt.message_id.encode()
            )
