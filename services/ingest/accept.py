"""The accept path both doors of ingest share: the HTTP gateway and the send-requests topic.

A request is checked, its idempotency key claimed, then each recipient's message is published
to the render topic of its lane and reported ``accepted`` — both acknowledged by the broker —
before anyone is told it was accepted. The database writes after that (the message log, the
stored answer) may fail without losing anything: the recorder rebuilds the log from the
``accepted`` events, and a repeat of a keyed request re-accepts it under the same ids.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
from faststream.kafka import KafkaBroker

from libs.broker import publish_record
from libs.database import DATABASE_DOWN
from libs.events import emit, event_data
from libs.priority import LANE_RANK
from libs.settings import Settings
from libs.templates import TemplateCatalogue
from libs.tenants import Tenant, TenantDirectory
from libs.topics import lane_topic
from libs.tracing import current_trace_id
from schemas.common import lane_for
from schemas.events import MessageState
from schemas.pipeline import AcceptedMessage, MessageSpec
from schemas.send import AcceptedRecipient, AcceptedResponse, SendRequest
from services.ingest import store
from services.ingest.ids import keyed_message_ids
from services.ingest.recorder import record
from services.ingest.validate import Violation, check_request, request_fingerprint

log = logging.getLogger(__name__)

SERVICE = "ingest"
PUBLISH_TIMEOUT_SECONDS = 10.0
"""How long a request waits for the broker before it is answered ``unavailable``."""


@dataclass(frozen=True)
class Ingest:
    """What accepting a request needs, whichever door it came through."""

    settings: Settings
    broker: KafkaBroker
    pool: asyncpg.Pool
    tenants: TenantDirectory
    templates: TemplateCatalogue

    @classmethod
    def on(cls, settings: Settings, broker: KafkaBroker, pool: asyncpg.Pool) -> Ingest:
        """Everything accepting needs, over one database pool (look-ups cached in memory)."""
        return cls(settings, broker, pool, TenantDirectory(pool), TemplateCatalogue(pool))


@dataclass(frozen=True)
class Claim:
    """The ids a keyed request gets, and the earlier answer when it is a repeat."""

    message_ids: list[str]
    replay: AcceptedResponse | None = None


def request_rank(request: SendRequest) -> int:
    """The priority-gate rank of a request: that of its lane.

    Both doors take their turn at the gate with it before they check and accept the request,
    so an OTP is not kept waiting by a burst of bulk requests being validated and published.
    """
    return LANE_RANK[lane_for(request.category, request.stream, request.priority)]


async def check(ingest: Ingest, request: SendRequest, tenant: Tenant) -> list[Violation]:
    """Everything wrong with a schema-valid request of ``tenant`` (empty: acceptable)."""
    template = (
        await ingest.templates.latest(tenant.id, request.template, request.locale)
        if request.template is not None
        else None
    )
    return check_request(request, tenant.domains, template, datetime.now(UTC))


async def claim(
    ingest: Ingest, tenant_id: str, key: str, request: SendRequest
) -> Claim | Violation:
    """Claim an idempotency key for ``request``, or learn it is a repeat or a reuse."""
    fingerprint = request_fingerprint(request)
    stored = await store.claim_key(ingest.pool, tenant_id, key, fingerprint)
    if stored.request_hash != fingerprint:
        return Violation(
            "idempotency_key_reused", "", "this Idempotency-Key was used for another request"
        )
    if stored.response is not None:
        replay = AcceptedResponse.model_validate(stored.response)
        return Claim([m.id for m in replay.messages], replay)
    return Claim(keyed_message_ids(tenant_id, key, stored.claimed_at, len(request.to)))


async def accept(
    ingest: Ingest,
    tenant_id: str,
    request: SendRequest,
    message_ids: list[str],
    key: str | None = None,
) -> AcceptedResponse:
    """Send one message per recipient on its way, under ``message_ids``; the 202 answer.

    Raises when the broker does not acknowledge in time: then nothing may be answered 202.
    """
    trace_id = current_trace_id()
    accepted_at = datetime.now(UTC)
    lane = lane_for(request.category, request.stream, request.priority)
    specs = [
        MessageSpec(
            message_id=message_id,
            tenant_id=tenant_id,
            trace_id=trace_id,
            accepted_at=accepted_at,
            sender=request.sender,
            recipient=recipient,
            reply_to=request.reply_to,
            subject=request.subject,
            html=request.html,
            text=request.text,
            template=request.template,
            data=request.data,
            locale=request.locale,
            stream=request.stream,
            category=request.category,
            lane=lane,
            tags=request.tags,
            metadata=request.metadata,
            headers=request.headers,
            attachments=request.attachments,
            send_at=request.send_at,
        )
        for message_id, recipient in zip(message_ids, request.to, strict=True)
    ]
    settings, broker = ingest.settings, ingest.broker
    async with asyncio.timeout(PUBLISH_TIMEOUT_SECONDS):
        await asyncio.gather(
            *(
                publish_record(
                    broker,
                    lane_topic("render", spec.lane, settings.topic_prefix),
                    AcceptedMessage(message=spec),
                    spec.message_id,
                )
                for spec in specs
            )
        )
        events = await asyncio.gather(
            *(
                emit(
                    broker,
                    settings,
                    MessageState.ACCEPTED,
                    event_data(spec, SERVICE, subject=spec.subject),
                )
                for spec in specs
            )
        )
    response = AcceptedResponse(
        id=message_ids[0],
        trace_id=trace_id,
        messages=[AcceptedRecipient(id=s.message_id, to=s.recipient) for s in specs],
    )
    try:
        for event in events:
            await record(ingest.pool, event)
        if key is not None:
            await store.save_response(ingest.pool, tenant_id, key, response.model_dump(mode="json"))
    except DATABASE_DOWN as error:
        log.warning("accepted %s but could not log it yet: %s", message_ids, error)
    return response
