"""Send requests produced straight onto ``sendarix.send.requests`` by applications.

The triage (``triage.py``) sorts the records by urgency onto ``sendarix.intake.<lane>``; the
intake of each lane takes a batch at a time and accepts its requests concurrently (their records
pipelined to the broker). A record that cannot be accepted is never retried and never blocks its
partition: it is parked on ``sendarix.send.requests.dlq`` with its original bytes and the
reason, and when its tenant is known, that tenant hears of it as a ``rejected`` event. A valid
record takes the same accept path as an HTTP request, its message ids derived from the place the
application produced it (or its idempotency key), so a record delivered twice is accepted twice
under the same ids.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from libs.batch import Consumed, Outbox
from libs.broker import Broker
from libs.poison import park, parking_note
from libs.priority import LANE_RANK
from libs.settings import Settings
from libs.subscriptions import LANE_TUNING, Handler, Subscription, Tuning, subscribe
from libs.tenants import Tenant
from libs.topics import SEND_REQUESTS, SEND_REQUESTS_DLQ, intake_topic, public_topic
from schemas.common import Lane, Stream
from schemas.events import EventData, MessageState
from schemas.send import TopicSendRequest
from services.ingest.accept import SERVICE, Ingest, Ready, Refused, Replayed, prepare, publish
from services.ingest.ids import record_message_ids, rejection_id
from services.ingest.lanes import requested_rank_lane
from services.ingest.triage import origin_of, triage
from services.ingest.validate import Violation, as_problem, parse_request, pointer

log = logging.getLogger(__name__)

ROLE = "intake"

TRIAGE_TUNING = Tuning(max_records=1000, fetch_max_wait_ms=20, chunk=200)
"""The triage takes records the moment they arrive, many at a time: it only forwards them. Its
topic has the four partitions the contract fixes, so it polls briefly (see ``Tuning``)."""

Parsed = TopicSendRequest | list[Violation]
"""A record of the topic: a request, or why it is not one (decoding never fails)."""


def parse(value: bytes) -> Parsed:
    """The request in a record, or the violations that make it none."""
    return parse_request(value, TopicSendRequest)


def unread(value: bytes) -> bytes:
    """The triage forwards records as they are."""
    return value


def subscribe_intake(broker: Broker, settings: Settings, handle: Handler[Parsed]) -> None:
    """The triage of ``sendarix.send.requests`` and the intake of every lane behind it."""
    prefix = settings.topic_prefix
    dead_letters = public_topic(SEND_REQUESTS_DLQ, prefix)

    async def triaged(batch: list[Consumed[bytes]]) -> Outbox:
        return triage(prefix, batch)

    subscribe(
        broker,
        settings,
        Subscription(
            service=SERVICE,
            role="triage",
            topic=public_topic(SEND_REQUESTS, prefix),
            decode=unread,
            handle=triaged,
            dead_letters=dead_letters,
            rank=LANE_RANK[Lane.CRITICAL],  # cheap, and it is what lets an OTP overtake
            tuning=TRIAGE_TUNING,
            traced=False,
        ),
    )
    for lane in Lane:
        intake: Subscription[Parsed] = Subscription(
            service=SERVICE,
            role=f"{ROLE}-{lane.value}",
            topic=intake_topic(lane, prefix),
            decode=parse,
            handle=handle,
            dead_letters=dead_letters,
            rank=LANE_RANK[lane],
            tuning=LANE_TUNING[lane],
        )
        subscribe(broker, settings, intake)


async def take_in(ingest: Ingest, batch: list[Consumed[Parsed]]) -> Outbox:
    """Accept every record of the batch, their messages published together; refusals go back
    to be parked."""
    outbox = Outbox(ingest.settings.topic_prefix)
    prepared = await asyncio.gather(*(_prepare_one(ingest, item) for item in batch))
    ready = [outcome for outcome in prepared if isinstance(outcome, Ready)]
    if ready:
        failure = next((f for f in await publish(ingest, ready) if f is not None), None)
        if failure is not None:  # the batch is taken in again (or split) by the runtime
            raise failure
    for item, outcome in zip(batch, prepared, strict=True):
        if isinstance(outcome, tuple):
            violations, tenant, request = outcome
            refuse(ingest, outbox, item, violations, tenant, request)
    return outbox


Refusal = tuple[list[Violation], Tenant | None, TopicSendRequest | None]


async def _prepare_one(ingest: Ingest, item: Consumed[Parsed]) -> Ready | Refusal | None:
    """One record's request made ready to publish; None when it repeats an accepted one, a
    refusal (why, and whose) when it cannot be accepted."""
    request = item.value
    if isinstance(request, list):
        return request, await _claimed_tenant(ingest, item.raw.value), None
    tenant = await ingest.tenants.by_id(request.tenant_id)
    if tenant is None:
        return [Violation("unknown_tenant", pointer("tenant_id"), "no such tenant")], None, request
    origin = origin_of(item)
    ids = record_message_ids(origin, len(request.to))
    outcome = await prepare(
        ingest, tenant, request, ids, item.context, request.idempotency_key, door="topic"
    )
    if isinstance(outcome, Refused):
        return outcome.violations, tenant, request
    if isinstance(outcome, Replayed):
        log.info("%s repeats an accepted request (key %r)", origin, request.idempotency_key)
        return None
    return outcome


async def _claimed_tenant(ingest: Ingest, body: bytes | None) -> Tenant | None:
    """The tenant an invalid record names, if it names a real one."""
    try:
        tenant_id = json.loads(body or b"").get("tenant_id")
    except (ValueError, AttributeError, RecursionError):
        return None
    return await ingest.tenants.by_id(tenant_id) if isinstance(tenant_id, str) else None


def refuse(
    ingest: Ingest,
    outbox: Outbox,
    item: Consumed[Parsed],
    violations: list[Violation],
    tenant: Tenant | None,
    request: TopicSendRequest | None,
) -> None:
    """Park a record with the reason; tell its tenant, if known, with a ``rejected`` event."""
    problem = as_problem(violations)
    origin = origin_of(item)
    note = parking_note(
        item.raw,
        SERVICE,
        ROLE,
        problem.code,
        problem.detail,
        pointers=problem.pointers,
        message_id=rejection_id(origin),
        origin=(origin.topic, origin.partition, origin.offset),
    )
    park(outbox, item.raw, public_topic(SEND_REQUESTS_DLQ, ingest.settings.topic_prefix), note)
    if tenant is None:
        return
    described: dict[str, Any] = (
        {
            "recipient": request.to[0] if len(request.to) == 1 else None,
            "stream": request.stream,
            "lane": requested_rank_lane(request),
            "category": request.category,
            "tags": request.tags,
            "metadata": request.metadata,
            "template": request.template,
        }
        if request is not None
        else {"stream": Stream.TRANSACTIONAL}
    )
    rejected = EventData(
        message_id=rejection_id(origin),
        tenant_id=tenant.id,
        trace_id=format(item.span.get_span_context().trace_id, "032x"),
        service=SERVICE,
        problem=problem,
        **described,
    )
    outbox.emit(item, MessageState.REJECTED, rejected)
