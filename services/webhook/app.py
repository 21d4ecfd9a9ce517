"""webhook's wiring: a batch reader of ``sendarix.events`` posting each event to its tenant.

Events of tenants without an endpoint are skipped by their tenant header, never decoded. The
events of one batch go to their endpoints concurrently, each endpoint's in order. Posts are
retried inside the handler with exponential backoff, then the outcome is recorded: a dead
endpoint costs its tenant's events, never the partition.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime

import httpx
from opentelemetry import trace
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

from libs.batch import Consumed, Outbox
from libs.events import TENANT_HEADER, header
from libs.service import PipelineService
from libs.settings import Settings
from libs.subscriptions import RawRecord, subscribe_events
from libs.tenants import Tenant, TenantDirectory
from libs.tracing import setup_tracing
from schemas.events import DeliveryEvent
from services.webhook import store
from services.webhook.delivery import (
    DeliveryStatus,
    WebhookDelivery,
    backoff_seconds,
    retryable,
)
from services.webhook.signing import signature_headers

SERVICE = "webhook"
CONTENT_TYPE = "application/cloudevents+json"
QUIET_TENANT_SECONDS = 5.0
"""How long a tenant found without an endpoint has its events skipped unread: an endpoint
added meanwhile gets its tenant's events this late at most."""

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)


class WebhookService(PipelineService):
    """Delivers every delivery event to the webhook endpoint of the event's tenant."""

    name = SERVICE

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.client = httpx.AsyncClient(timeout=settings.webhook_timeout_seconds)
        HTTPXClientInstrumentor.instrument_client(
            self.client, tracer_provider=setup_tracing(SERVICE, settings)
        )
        self._tenants: TenantDirectory | None = None
        self._quiet: dict[str, float] = {}
        """Tenants without an endpoint, and until when (monotonic) that is trusted."""
        subscribe_events(
            self.broker, settings, SERVICE, "events", self.deliver_batch, wanted=self._wanted
        )

    async def prepare(self) -> None:
        self._tenants = TenantDirectory(self.pool)

    async def stop(self) -> None:
        await super().stop()
        await self.client.aclose()

    def _wanted(self, record: RawRecord) -> bool:
        """False for an event of a tenant recently found without an endpoint (by its header)."""
        tenant_id = header(record.headers, TENANT_HEADER)
        until = self._quiet.get(tenant_id) if tenant_id is not None else None
        return until is None or until < time.monotonic()

    async def deliver_batch(self, batch: list[Consumed[DeliveryEvent]]) -> Outbox:
        """Post the batch's events, each endpoint's in order; each post a span of its trace."""
        assert self._tenants is not None, "the webhook service is not started"
        by_endpoint: defaultdict[tuple[str, str], list[Consumed[DeliveryEvent]]] = defaultdict(list)
        tenants: dict[str, Tenant] = {}
        for item in batch:
            tenant = await self._tenants.by_id(item.value.data.tenant_id)
            if tenant is None or not tenant.webhook_url or not tenant.webhook_secret:
                quiet_until = time.monotonic() + QUIET_TENANT_SECONDS
                self._quiet[item.value.data.tenant_id] = quiet_until
                continue
            if not _event_uuid(item.value):
                log.error("skipping event with a non-UUID id %r", item.value.id)
                continue
            tenants[tenant.id] = tenant
            by_endpoint[(tenant.id, tenant.webhook_url)].append(item)
        delivered = await store.delivered_already(
            self.pool,
            [
                (uuid.UUID(i.value.id), url)
                for (_, url), items in by_endpoint.items()
                for i in items
            ],
        )
        outcomes = await asyncio.gather(
            *(
                self._post_in_order(tenants[tenant_id], url, items, delivered)
                for (tenant_id, url), items in by_endpoint.items()
            )
        )
        await store.record_deliveries(self.pool, [row for rows in outcomes for row in rows])
        return Outbox(self.settings.topic_prefix)

    async def _post_in_order(
        self,
        tenant: Tenant,
        url: str,
        items: list[Consumed[DeliveryEvent]],
        delivered: set[tuple[uuid.UUID, str]],
    ) -> list[store.DeliveryRow]:
        rows = []
        assert tenant.webhook_secret is not None
        for item in items:
            event_id = uuid.UUID(item.value.id)
            if (event_id, url) in delivered:  # before, or earlier in this very batch
                continue
            delivered.add((event_id, url))
            attributes = {
                "sendarix.message_id": item.value.subject,
                "sendarix.event": item.value.type,
            }
            with tracer.start_as_current_span(
                "webhook deliver", context=item.context, attributes=attributes
            ):
                delivery = await self._post(
                    url, tenant.webhook_secret, item.value.id, item.raw.value or b""
                )
            if delivery.status is DeliveryStatus.FAILED:
                log.warning(
                    "webhook of tenant %s gave up on event %s: %s",
                    tenant.id,
                    item.value.id,
                    delivery,
                )
            rows.append(store.DeliveryRow(event_id, tenant.id, url, delivery))
        return rows

    async def _post(self, url: str, secret: str, event_id: str, body: bytes) -> WebhookDelivery:
        """Post ``body`` until the endpoint takes it, refuses it, or the attempts run out."""
        attempts = self.settings.webhook_max_attempts
        code: int | None = None
        error: str | None = None
        for attempt in range(1, attempts + 1):
            headers = signature_headers(secret, event_id, datetime.now(UTC), body)
            headers["content-type"] = CONTENT_TYPE
            try:
                response = await self.client.post(url, content=body, headers=headers)
            except (httpx.InvalidURL, httpx.UnsupportedProtocol) as invalid:
                return WebhookDelivery(DeliveryStatus.FAILED, attempt, None, repr(invalid))
            except httpx.TransportError as failure:  # network errors and timeouts
                code, error = None, repr(failure)
            else:
                code = response.status_code
                if response.is_success:
                    return WebhookDelivery(DeliveryStatus.DELIVERED, attempt, code)
                error = f"HTTP {code} {response.reason_phrase}".rstrip()
                if not retryable(code):
                    return WebhookDelivery(DeliveryStatus.FAILED, attempt, code, error)
            if attempt < attempts:
                await asyncio.sleep(
                    backoff_seconds(attempt, self.settings.webhook_retry_base_seconds)
                )
        return WebhookDelivery(DeliveryStatus.FAILED, attempts, code, error)


def _event_uuid(event: DeliveryEvent) -> bool:
    try:
        uuid.UUID(event.id)
    except ValueError:
        return False
    return True
