"""analytics' wiring: large batches of ``sendarix.events`` added to the aggregates, and the
monitor that turns the aggregates into deliverability alerts.

1. ``aggregate_batch``: skip what was added before (offsets in the database), add up the batch
   in memory, one upsert per table, the offsets moved in the same transaction.
2. ``_monitor_forever``: every ``alert_evaluation_seconds``, evaluate the alerts of every tenant
   and publish their notices; every ``RETENTION_EVERY_SECONDS``, drop expired buckets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime, timedelta

from prometheus_client import Counter

from libs.analytics import Granularity
from libs.batch import Consumed, Outbox
from libs.service import PipelineService
from libs.settings import Settings
from libs.subscriptions import Tuning, subscribe_events
from schemas.events import DeliveryEvent, MessageState
from services.analytics import store
from services.analytics.aggregate import RecentAcceptances, Tally, accept_to_delivery_ms
from services.analytics.alerts import thresholds
from services.analytics.monitor import evaluate

SERVICE = "analytics"
TUNING = Tuning(max_records=5000, fetch_min_bytes=256 * 1024, fetch_max_wait_ms=500)
"""Aggregates may lag half a second: a batch of thousands costs one transaction."""
RECENT_ACCEPTANCES = 200_000
RETENTION_EVERY_SECONDS = 600.0

EVENTS_AGGREGATED = Counter(
    "sendarix_analytics_events_total", "Delivery events added to the analytics", ["type"]
)
EVENTS_SKIPPED = Counter(
    "sendarix_analytics_redelivered_total",
    "Delivery events read again after a crash or rebalance and not counted twice",
)

log = logging.getLogger(__name__)


class AnalyticsService(PipelineService):
    """Keeps the analytics aggregates and raises deliverability alerts."""

    name = SERVICE

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.accepted = RecentAcceptances(RECENT_ACCEPTANCES)
        self._monitor: asyncio.Task[None] | None = None
        subscribe_events(
            self.broker, settings, SERVICE, "events", self.aggregate_batch, tuning=TUNING
        )

    async def start(self) -> None:
        await super().start()
        self._monitor = asyncio.create_task(self._monitor_forever())

    async def stop(self) -> None:
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
        await super().stop()

    async def aggregate_batch(self, batch: list[Consumed[DeliveryEvent]]) -> Outbox:
        """Add the batch's events to the aggregates, each exactly once."""
        tally = Tally()
        async with self.pool.acquire() as connection, connection.transaction():
            fresh = await store.unseen(connection, batch)
            for item in fresh:
                if item.value.type == MessageState.ACCEPTED.event_type:
                    self.accepted.remember(item.value.subject, item.value.time)
            delivered = [
                item.value.subject
                for item in fresh
                if item.value.type == MessageState.DELIVERED.event_type
                and self.accepted.get(item.value.subject) is None
            ]
            logged = await store.accepted_times(connection, delivered)
            for item in fresh:
                event = item.value
                accepted_at = self.accepted.get(event.subject) or logged.get(event.subject)
                tally.add(event, accept_to_delivery_ms(event, accepted_at))
            await store.add_tally(connection, tally)
            await store.advance_offsets(connection, batch)
        for state, count in tally.events.items():
            EVENTS_AGGREGATED.labels(state).inc(count)
        EVENTS_SKIPPED.inc(len(batch) - len(fresh))
        return Outbox(self.settings.topic_prefix)

    async def evaluate_alerts(self, now: datetime | None = None) -> int:
        """One evaluation of every tenant's alerts as of ``now`` (default: now); the alerts
        opened, escalated or resolved."""
        return await evaluate(
            self.pool,
            thresholds(self.settings),
            self.settings.alert_resolve_ratio,
            self.broker.send_confirmed,
            self.settings.topic_prefix,
            now or datetime.now(UTC),
        )

    async def drop_expired(self) -> int:
        """Delete the buckets past their retention."""
        s = self.settings
        keep = {
            Granularity.MINUTE: timedelta(hours=s.analytics_minute_retention_hours),
            Granularity.HOUR: timedelta(days=s.analytics_hour_retention_days),
            Granularity.DAY: timedelta(days=s.analytics_day_retention_days),
        }
        return await store.drop_expired(self.pool, keep, datetime.now(UTC))

    async def _monitor_forever(self) -> None:
        """Evaluate alerts periodically and drop expired buckets now and then; a failure (the
        database or broker down) only delays the next round."""
        pruned_at = -RETENTION_EVERY_SECONDS
        while True:
            try:
                await self.evaluate_alerts()
                if time.monotonic() - pruned_at >= RETENTION_EVERY_SECONDS:
                    pruned_at = time.monotonic()
                    log.info("dropped %d expired analytics rows", await self.drop_expired())
            except Exception:
                log.exception("evaluating alerts failed; trying again")
            await asyncio.sleep(self.settings.alert_evaluation_seconds)
