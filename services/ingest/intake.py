"""Send requests produced straight onto ``sendarix.send.requests`` by applications.

A record that cannot be accepted is never retried and never blocks its partition: it goes to
``sendarix.send.requests.dlq`` with the reason, and when its tenant is known, that tenant hears
of it as a ``rejected`` event. A valid record takes the same accept path as an HTTP request, its
message ids derived from the record's place on the topic (or its idempotency key), so a record
delivered twice is accepted twice under the same ids.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from faststream.kafka import KafkaMessage

from libs.events import emit
from libs.priority import gate
from libs.tenants import Tenant
from libs.topics import SEND_REQUESTS_DLQ, public_topic
from libs.tracing import current_trace_id
from schemas.common import lane_for
from schemas.events import EventData, MessageState
from schemas.pipeline import DeadLetter
from schemas.send import TopicSendRequest
from services.ingest.accept import SERVICE, Ingest, accept, check, claim, request_rank
from services.ingest.ids import RecordOrigin, record_message_ids, rejection_id
from services.ingest.validate import Violation, as_problem, parse_request, pointer

log = logging.getLogger(__name__)


async def take_in(ingest: Ingest, message: KafkaMessage) -> None:
    """Accept one send-requests record, or dead-letter it with the reason."""
    raw: Any = message.raw_message
    origin = RecordOrigin(raw.topic, raw.partition, raw.offset)
    parsed = parse_request(message.body, TopicSendRequest)
    if isinstance(parsed, list):
        tenant = await _claimed_tenant(ingest, message.body)
        await refuse(ingest, message, origin, parsed, tenant)
        return
    async with gate.turn(request_rank(parsed)):
        await _take_in_request(ingest, message, origin, parsed)


async def _take_in_request(
    ingest: Ingest, message: KafkaMessage, origin: RecordOrigin, request: TopicSendRequest
) -> None:
    tenant = await ingest.tenants.by_id(request.tenant_id)
    if tenant is None:
        unknown = Violation("unknown_tenant", pointer("tenant_id"), "no such tenant")
        await refuse(ingest, message, origin, [unknown])
        return
    violations = await check(ingest, request, tenant)
    if violations:
        await refuse(ingest, message, origin, violations, tenant, request)
        return
    message_ids = record_message_ids(origin, len(request.to))
    if request.idempotency_key is not None:
        claimed = await claim(ingest, tenant.id, request.idempotency_key, request)
        if isinstance(claimed, Violation):
            await refuse(ingest, message, origin, [claimed], tenant, request)
            return
        if claimed.replay is not None:
            log.info("%s repeats an accepted request (key %r)", origin, request.idempotency_key)
            return
        message_ids = claimed.message_ids
    await accept(ingest, tenant.id, request, message_ids, request.idempotency_key)


async def _claimed_tenant(ingest: Ingest, body: bytes) -> Tenant | None:
    """The tenant an invalid record names, if it names a real one."""
    try:
        tenant_id = json.loads(body).get("tenant_id")
    except (ValueError, AttributeError):
        return None
    return await ingest.tenants.by_id(tenant_id) if isinstance(tenant_id, str) else None


async def refuse(
    ingest: Ingest,
    message: KafkaMessage,
    origin: RecordOrigin,
    violations: list[Violation],
    tenant: Tenant | None = None,
    request: TopicSendRequest | None = None,
) -> None:
    """Dead-letter a record; tell its tenant, if known, with a ``rejected`` event."""
    problem = as_problem(violations)
    raw: Any = message.raw_message
    key: bytes | None = raw.key
    letter = DeadLetter(
        topic=origin.topic,
        partition=origin.partition,
        offset=origin.offset,
        received_at=datetime.now(UTC),
        reason=problem.code,
        detail=problem.detail,
        pointers=problem.pointers,
        key=key.decode(errors="backslashreplace") if key is not None else None,
        value=message.body.decode(errors="backslashreplace"),
    )
    settings = ingest.settings
    await ingest.broker.publish(
        letter.model_dump_json().encode(),
        public_topic(SEND_REQUESTS_DLQ, settings.topic_prefix),
        key=key,
    )
    log.info("dead-lettered %s: %s", origin, problem.detail)
    if tenant is None:
        return
    described: dict[str, Any] = (
        {
            "recipient": request.to[0] if len(request.to) == 1 else None,
            "sender": request.sender,
            "stream": request.stream,
            "lane": lane_for(request.category, request.stream, request.priority),
            "category": request.category,
            "tags": request.tags,
            "metadata": request.metadata,
            "template": request.template,
            "subject": request.subject,
        }
        if request is not None
        else {}
    )
    rejected = EventData(
        message_id=rejection_id(origin),
        tenant_id=tenant.id,
        trace_id=current_trace_id(),
        service=SERVICE,
        problem=problem,
        **described,
    )
    await emit(ingest.broker, settings, MessageState.REJECTED, rejected)
