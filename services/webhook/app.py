"""webhook's wiring: one subscriber on ``sendarix.events`` posting each event to its tenant.

Posts are retried inside the handler with exponential backoff, then the outcome is recorded
and the handler returns: a dead endpoint costs its tenant's events, never the partition.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime

import httpx
from aiokafka import ConsumerRecord
from opentelemetry import trace
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

from libs.broker import parse_value, subscribe_batch
from libs.logs import current_message_id
from libs.service import PipelineService
from libs.settings import Settings
from libs.tenants import TenantDirectory
from libs.topics import EVENTS, public_topic
from libs.tracing import context_from_headers, setup_tracing
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
        events = public_topic(EVENTS, settings.topic_prefix)
        subscribe_batch(self.broker, settings, SERVICE, "events", events, self._deliver_all)

    async def start(self) -> None:
        await super().start()
        self._tenants = TenantDirectory(self.pool)

    async def stop(self) -> None:
        await super().stop()
        await self.client.aclose()

    async def _deliver_all(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        """Deliver a batch of events in order; each post is a span of its message's trace."""
        for record in records:
            await self._deliver(record)

    async def _deliver(self, record: ConsumerRecord[bytes, bytes]) -> None:
        event = parse_value(DeliveryEvent, record.value, record)
        if event is None or record.value is None:
            return
        current_message_id.set(event.subject)
        try:
            event_id = uuid.UUID(event.id)
        except ValueError:
            log.error("skipping event with a non-UUID id %r", event.id)
            return
        tenant_id = event.data.tenant_id
        assert self._tenants is not None, "the webhook service is not started"
        tenant = await self._tenants.by_id(tenant_id)
        if tenant is None or not tenant.webhook_url or not tenant.webhook_secret:
            return
        url = tenant.webhook_url
        if await store.already_delivered(self.pool, event_id, url):
            return
        headers = {name: value.decode(errors="replace") for name, value in record.headers}
        attributes = {"sendarix.message_id": event.subject, "sendarix.event": event.type}
        with tracer.start_as_current_span(
            "webhook deliver", context=context_from_headers(headers), attributes=attributes
        ):
            delivery = await self._post(url, tenant.webhook_secret, event.id, record.value)
        if delivery.status is DeliveryStatus.FAILED:
            log.warning(
                "webhook of tenant %s gave up on event %s: %s", tenant_id, event.id, delivery
            )
        await store.record_delivery(self.pool, event_id, tenant_id, url, delivery)

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
