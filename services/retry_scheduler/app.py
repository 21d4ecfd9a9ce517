"""retry-scheduler's wiring: a batch handler per lane of ``retry.<lane>``, and the release loop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import Counter as Tally
from collections.abc import Iterable
from datetime import UTC, datetime

from opentelemetry import trace
from prometheus_client import Counter

from libs.batch import URGENT_LANES, Consumed, Outbox, Publication
from libs.service import PipelineService
from libs.settings import Settings
from libs.subscriptions import subscribe_stage
from libs.topics import DELIVER, RETRY
from libs.tracing import context_from_headers, traceparent
from schemas.common import Lane
from schemas.pipeline import RetryRequest
from services.retry_scheduler.store import DueAttempt, releasing_due_attempts, schedule_attempts

SERVICE = "retry-scheduler"
RELEASE_BATCH = 500
"""Attempts released per transaction; a full batch is followed by the next one at once."""

RETRIES = Counter(
    "sendarix_retries",
    "Deferred attempts by lane and step: scheduled (kept until due), released (published to "
    "the sender when due); scheduled minus released is what waits.",
    ["lane", "step"],
)

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)


def count_retries(step: str, lanes: Iterable[Lane]) -> None:
    """Count a batch of retries that took ``step``, one increment per lane."""
    for lane, count in Tally(lanes).items():
        RETRIES.labels(lane.value, step).inc(count)


class RetrySchedulerService(PipelineService):
    """Stores each deferred attempt, then releases it to the sender when it is due."""

    name = SERVICE

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self._releaser: asyncio.Task[None] | None = None
        subscribe_stage(self.broker, settings, SERVICE, RETRY, self.schedule_batch)

    async def start(self) -> None:
        await super().start()
        self._releaser = asyncio.create_task(self._release_forever())

    async def stop(self) -> None:
        if self._releaser is not None:
            self._releaser.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._releaser
        await super().stop()

    async def schedule_batch(self, batch: list[Consumed[RetryRequest]]) -> Outbox:
        """Keep every deferred attempt of the batch until it is due (one statement)."""
        prefix = self.settings.topic_prefix
        await schedule_attempts(
            self.pool,
            [
                (
                    item.value,
                    DELIVER.topic(item.value.spec.lane, prefix),
                    dict((name, value.decode()) for name, value in traceparent(item.context)),
                )
                for item in batch
            ],
        )
        count_retries("scheduled", (item.value.spec.lane for item in batch))
        return Outbox(prefix)

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
        topics = [DELIVER.topic(lane, self.settings.topic_prefix) for lane in Lane]
        releasing = releasing_due_attempts(self.pool, topics, datetime.now(UTC), RELEASE_BATCH)
        async with releasing as due:
            await self.broker.send_confirmed([self._release(attempt) for attempt in due])
        count_retries("released", (attempt.lane for attempt in due))  # once committed
        return len(due)

    def _release(self, attempt: DueAttempt) -> Publication:
        """One job to publish, in a span that continues the trace of the deferred attempt."""
        attributes: dict[str, str | int] = {
            "sendarix.message_id": attempt.message_id,
            "sendarix.attempt": attempt.attempt,
            "sendarix.lane": attempt.lane.value,
        }
        context = context_from_headers(attempt.headers)
        with tracer.start_as_current_span("retry release", context=context, attributes=attributes):
            headers = traceparent(trace.set_span_in_context(trace.get_current_span()))
        return Publication(
            None,
            attempt.topic,
            json.dumps(attempt.job).encode(),
            attempt.message_id.encode(),
            headers,
            urgent=attempt.lane in URGENT_LANES,
        )
