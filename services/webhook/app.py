"""webhook's wiring: readers of ``sendarix.events`` and ``sendarix.notices`` that queue each
event for the endpoints of its tenant that want it, and the dispatcher that posts the queue.

The readers only match and queue (one statement per batch; a redelivered record is not queued
twice), then commit: no endpoint, however slow, ever holds a partition. Events of tenants
without an endpoint are skipped by their tenant header, never decoded. The dispatcher
(``dispatch.py``) posts each endpoint's queue on its own, retrying over days.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from libs.batch import Consumed, Outbox
from libs.cache import TtlCache
from libs.events import TENANT_HEADER, header
from libs.service import PipelineService
from libs.settings import Settings
from libs.subscriptions import RawRecord, Tuning, subscribe_events, subscribe_notices
from libs.webhook_endpoints import CHANGES_CHANNEL, Endpoint, enabled_endpoints
from libs.webhook_queue import QueuedEvent, enqueue, store_notices
from schemas.events import DeliveryEvent
from schemas.notices import Notice
from services.webhook.dispatch import Dispatcher

SERVICE = "webhook"
ENDPOINTS_TTL_SECONDS = 5.0
"""How long a tenant's endpoints are trusted from memory: a new, changed or disabled endpoint
applies to events read this much later at most (at once while the change notices of
``CHANGES_CHANNEL`` arrive)."""

T = TypeVar("T", DeliveryEvent, Notice)
log = logging.getLogger(__name__)

EVENTS_TUNING = Tuning(max_records=1000, fetch_min_bytes=16 * 1024, fetch_max_wait_ms=50)
"""Webhooks are the tenant's real-time feed: a batch waits at most 50 ms to fill (the message
log and analytics wait longer for fuller batches)."""


class WebhookService(PipelineService):
    """Queues every event for its tenant's endpoints and posts the queue."""

    name = SERVICE

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self._endpoints: TtlCache[str, list[Endpoint]] = TtlCache(ENDPOINTS_TTL_SECONDS, 100_000)
        self._dispatcher: Dispatcher | None = None
        self._listening: asyncpg.Connection | None = None
        subscribe_events(
            self.broker,
            settings,
            SERVICE,
            "events",
            self.queue_events,
            wanted=self._wanted,
            tuning=EVENTS_TUNING,
        )
        subscribe_notices(self.broker, settings, SERVICE, "notices", self.queue_notices)

    async def prepare(self) -> None:
        self._listening = await asyncpg.connect(self.settings.database_url)
        await self._listening.add_listener(CHANGES_CHANNEL, self._endpoints_changed)
        self._dispatcher = Dispatcher(self.settings, self.pool, self.broker)
        self._dispatcher.start()

    async def stop(self) -> None:
        if self._dispatcher is not None:
            await self._dispatcher.stop()
        if self._listening is not None:
            self._listening.terminate()  # only a listener, and maybe cut by a database restart
        await super().stop()

    def _endpoints_changed(
        self, _: asyncpg.Connection | PoolConnectionProxy, __: int, ___: str, tenant_id: object
    ) -> None:
        self._endpoints.discard(str(tenant_id))

    def _wanted(self, record: RawRecord) -> bool:
        """False for an event of a tenant recently found without an endpoint (by its header)."""
        tenant_id = header(record.headers, TENANT_HEADER)
        return tenant_id is None or self._endpoints.fresh(tenant_id) != []

    async def queue_events(self, batch: list[Consumed[DeliveryEvent]]) -> Outbox:
        """Queue the batch's events for the endpoints that want them."""
        wanted = [item for item in batch if _event_uuid(item.value.id)]
        await self._queue(wanted, lambda e: (e.data.tenant_id, e.type, e.data.stream))
        return Outbox(self.settings.topic_prefix)

    async def queue_notices(self, batch: list[Consumed[Notice]]) -> Outbox:
        """Keep the batch's notices (for replays) and queue them like events."""
        notices = [item for item in batch if _event_uuid(item.value.id)]
        await store_notices(
            self.pool,
            [
                (n.id, n.data.tenant_id, n.type.value, n.time, item.raw.value or b"")
                for item in notices
                for n in [item.value]
            ],
        )
        await self._queue(notices, lambda n: (n.data.tenant_id, n.type.value, None))
        return Outbox(self.settings.topic_prefix)

    async def _queue(
        self, items: Sequence[Consumed[T]], about: Callable[[T], tuple[str, str, str | None]]
    ) -> None:
        """Queue each item for its tenant's endpoints that want it, and wake their workers;
        ``about`` tells an item's tenant, CloudEvent type and stream (None: not a message's)."""
        described = [(item, about(item.value)) for item in items]
        endpoints = await self._endpoints_of([tenant for _, (tenant, _, _) in described])
        queued = [
            QueuedEvent(
                uuid.UUID(endpoint.id),
                uuid.UUID(item.value.id),
                uuid.UUID(endpoint.tenant_id),
                event_type,
                item.raw.value or b"",
                _traceparent(item),
            )
            for item, (tenant, event_type, stream) in described
            for endpoint in endpoints[tenant]
            if endpoint.wants(event_type, stream)
        ]
        woken = await enqueue(self.pool, queued)
        assert self._dispatcher is not None, "the webhook service is not started"
        self._dispatcher.wake(woken)

    async def _endpoints_of(self, tenant_ids: Sequence[str]) -> dict[str, list[Endpoint]]:
        """The enabled endpoints of each tenant, from memory when recent (one query for the
        rest)."""
        found: dict[str, list[Endpoint]] = {}
        for tenant_id in set(tenant_ids):
            cached = self._endpoints.fresh(tenant_id)
            if cached is not None:
                found[tenant_id] = cached
        missing = [t for t in set(tenant_ids) if t not in found]
        if missing:
            loaded = await enabled_endpoints(self.pool, missing)
            for tenant_id, endpoints in loaded.items():
                self._endpoints.put(tenant_id, endpoints)
            found |= loaded
        return found


def _event_uuid(event_id: str) -> bool:
    try:
        uuid.UUID(event_id)
    except ValueError:
        log.error("skipping an event with a non-UUID id %r", event_id)
        return False
    return True


def _traceparent(item: Consumed[Any]) -> str | None:
    """The W3C ``traceparent`` of the event's producer, so each post is a span of its trace."""
    return next((value.decode() for name, value in item.raw.headers if name == "traceparent"), None)
