"""retry-scheduler's wiring: a subscriber per lane of ``retry.<lane>`` and the release loop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from datetime import UTC, datetime

import asyncpg
from faststream.kafka import KafkaMessage
from opentelemetry import trace

from libs.broker import SUBSCRIBER_OPTIONS, group_id, make_broker, parse_record
from libs.database import open_pool
from libs.logs import current_message_id
from libs.poison import report_undecodable
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


class RetrySchedulerService:
    """Stores each deferred attempt, then releases it to the sender when it is due."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.broker = make_broker(SERVICE, settings)
        self._pool: asyncpg.Pool | None = None
        self._releaser: asyncio.Task[None] | None = None
        for lane in Lane:
            self.broker.subscriber(
                lane_topic("retry", lane, settings.topic_prefix),
                group_id=f"{group_id(SERVICE)}-{lane.value}",
                **SUBSCRIBER_OPTIONS,
            )(self._handle)

    @property
    def pool(self) -> asyncpg.Pool:
        assert self._pool is not None, "the retry-scheduler is not started"
        return self._pool

    async def start(self) -> None:
        self._pool = await open_pool(self.settings)
        await self.broker.start()
        self._releaser = asyncio.create_task(self._release_forever())

    async def stop(self) -> None:
        if self._releaser is not None:
            self._releaser.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._releaser
        await self.broker.stop()
        if self._pool is not None:
            await self._pool.close()

    async def _handle(self, message: KafkaMessage) -> None:
        request = parse_record(RetryRequest, message)
        if request is None:
            await report_undecodable(self.broker, self.settings, SERVICE, message)
            return
        current_message_id.set(request.job.message.message_id)
        await schedule_attempt(self.pool, request, trace_headers())

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
        async with releasing_due_attempts(self.pool, datetime.now(UTC), RELEASE_BATCH) as due:
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
                json.dumps(attempt.job).encode(),
                lane_topic("deliver", attempt.lane, self.settings.topic_prefix),
                key=attempt.message_id.encode(),
            )
