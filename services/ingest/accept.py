"""Accepting a send request: the one use case behind every door of ingest.

The HTTP gateway and the ``sendarix.send.requests`` intake each turn their input into one call
of ``accept`` and its result — accepted, replayed or refused — back into their own answer.
A request is checked, its idempotency key claimed, then each recipient's message is published
to the render topic of its lane and reported ``accepted`` — both acknowledged by the broker —
before anyone is told it was accepted. Nothing after that may turn the answer into an error:
the stored answer of a keyed request is written afterwards, and a failure there is only logged
(a repeat of the request then re-accepts it under the same ids, which every stage recognises).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import asyncpg
from opentelemetry.context import Context
from opentelemetry.trace import get_current_span
from prometheus_client import Counter

from libs.batch import URGENT_LANES, Outbox, Publication
from libs.broker import Broker
from libs.events import event_data
from libs.keys import ApiKey
from libs.message_tokens import signing_key
from libs.settings import Settings
from libs.template_choice import TemplateChoices, choose_version, template_choices
from libs.templates import TemplateCatalogue
from libs.tenants import Tenant, TenantDirectory
from libs.topics import RENDER
from libs.tracing import traceparent
from libs.webhook_targets import TargetGuard
from schemas.common import Lane, natural_lane
from schemas.events import MessageState
from schemas.pipeline import AcceptedMessage, MessageSpec
from schemas.send import AcceptedRecipient, AcceptedResponse, SendRequest
from services.ingest import store
from services.ingest.ids import keyed_message_ids
from services.ingest.lanes import CriticalRateCap, choose_lane
from services.ingest.limits import SendRateLimits
from services.ingest.permission import key_refusal
from services.ingest.validate import (
    Addresses,
    Violation,
    check_request,
    check_template_data,
    pointer,
    request_fingerprint,
)

log = logging.getLogger(__name__)

SERVICE = "ingest"
PUBLISH_TIMEOUT_SECONDS = 10.0
"""How long a request waits for the broker before it is answered ``unavailable``."""

AFTER_PUBLISH_FAILURES = Counter(
    "sendarix_ingest_after_publish_failures",
    "Requests accepted (published) whose follow-up work failed; they were still answered 202.",
)
REQUESTS = Counter(
    "sendarix_ingest_requests",
    "Send requests by door (http, batch, topic, smtp) and outcome: accepted (with its lane), "
    "replayed (a repeat of an idempotency key), refused (the checks), unavailable (the broker "
    "did not take it).",
    ["door", "lane", "outcome"],
)

Door = Literal["http", "batch", "topic", "smtp"]
"""Where a request came in."""


@dataclass(frozen=True)
class Ingest:
    """What accepting a request needs, whichever door it came through."""

    settings: Settings
    broker: Broker
    pool: asyncpg.Pool
    tenants: TenantDirectory
    templates: TemplateCatalogue
    critical_cap: CriticalRateCap
    send_rates: SendRateLimits
    token_key: bytes
    """Checks the signed tokens of unsubscribe links (``libs.message_tokens``)."""
    webhook_targets: TargetGuard
    """Checks webhook URLs (one resolver, its answers cached for their TTL)."""

    @classmethod
    def on(cls, settings: Settings, broker: Broker, pool: asyncpg.Pool) -> Ingest:
        """Everything accepting needs, over one database pool (look-ups cached in memory)."""
        return cls(
            settings,
            broker,
            pool,
            TenantDirectory(pool),
            TemplateCatalogue(pool),
            CriticalRateCap(),
            SendRateLimits(),
            signing_key(settings),
            TargetGuard(settings),
        )


@dataclass(frozen=True)
class Accepted:
    """The request's messages are on their way; ``response`` is the 202 answer."""

    response: AcceptedResponse


@dataclass(frozen=True)
class Replayed:
    """The request repeats one accepted under the same idempotency key: the earlier answer."""

    response: AcceptedResponse


@dataclass(frozen=True)
class Refused:
    """The request cannot be accepted, for these reasons."""

    violations: list[Violation]


Outcome = Accepted | Replayed | Refused


@dataclass(frozen=True)
class Claim:
    """The ids a keyed request gets, and the earlier answer when it is a repeat."""

    message_ids: list[str]
    replay: AcceptedResponse | None = None


@dataclass(frozen=True)
class Ready:
    """A request checked and made into records: publishing them accepts it."""

    tenant_id: str
    publications: list[Publication]
    response: AcceptedResponse
    key: str | None
    """Its idempotency key: the answer is kept for repeats once the records are published."""
    door: Door
    lane: Lane


async def accept(
    ingest: Ingest,
    tenant: Tenant,
    request: SendRequest,
    message_ids: Sequence[str],
    trace: Context,
    key: str | None = None,
    api_key: ApiKey | None = None,
    *,
    door: Door,
) -> Outcome:
    """Accept ``request`` of ``tenant``: one message per recipient, under ``message_ids``
    unless ``key`` (an idempotency key) fixes them. ``api_key``, the caller's key (None on
    the topic door), limits what may be sent and is recorded on every message.

    Raises only when nothing was published and it is worth a retry (the broker or the database
    is down): then nothing may be answered 202.
    """
    prepared = await prepare(ingest, tenant, request, message_ids, trace, key, api_key, door=door)
    if not isinstance(prepared, Ready):
        return prepared
    [failure] = await publish(ingest, [prepared])
    if failure is not None:
        raise failure
    return Accepted(prepared.response)


async def prepare(
    ingest: Ingest,
    tenant: Tenant,
    request: SendRequest,
    message_ids: Sequence[str],
    trace: Context,
    key: str | None = None,
    api_key: ApiKey | None = None,
    *,
    door: Door,
) -> Ready | Replayed | Refused:
    """Everything ``accept`` does before publishing: the checks, the idempotency claim, the
    records. Many requests prepared apart are published together (a batch, a topic batch)."""
    prepared = await _prepare(ingest, tenant, request, message_ids, trace, key, api_key, door)
    if not isinstance(prepared, Ready):
        outcome = "refused" if isinstance(prepared, Refused) else "replayed"
        REQUESTS.labels(door, "", outcome).inc()
    return prepared


async def _prepare(
    ingest: Ingest,
    tenant: Tenant,
    request: SendRequest,
    message_ids: Sequence[str],
    trace: Context,
    key: str | None,
    api_key: ApiKey | None,
    door: Door,
) -> Ready | Replayed | Refused:
    choices = (
        await template_choices(
            ingest.templates, tenant.id, request.template, request.template_version
        )
        if request.template is not None
        else None
    )
    checked = _check(ingest, request, tenant, choices)
    if not isinstance(checked, Addresses):
        return Refused(checked)
    categorised = _with_template_category(request, choices)
    versions = _versions(categorised, checked, choices)
    if violations := _variant_data(request, choices, versions):
        return Refused(violations)
    if refusal := key_refusal(api_key, checked.sender, request.stream):
        return Refused([refusal])
    ids = list(message_ids)
    if key is not None:
        claimed = await _claim(ingest, tenant.id, key, request)
        if isinstance(claimed, Violation):
            return Refused([claimed])
        if claimed.replay is not None:
            return Replayed(claimed.replay)
        ids = claimed.message_ids
    choice = choose_lane(categorised, tenant, ingest.critical_cap)
    key_id = api_key.id if api_key else None
    specs = _specs(tenant, categorised, checked, ids, versions, choice.lane, trace, key_id)
    outbox = Outbox(ingest.settings.topic_prefix)
    for spec in specs:
        outbox.add(
            None,
            RENDER.topic(spec.lane, outbox.prefix),
            AcceptedMessage(message=spec).model_dump_json().encode(),
            spec.message_id.encode(),
            urgent=spec.lane in URGENT_LANES,
        )
        data = event_data(spec, SERVICE, subject=spec.subject, lane_reason=choice.reason)
        outbox.emit(None, MessageState.ACCEPTED, data)
    response = AcceptedResponse(
        id=ids[0],
        trace_id=specs[0].trace_id,
        messages=[AcceptedRecipient(id=s.message_id, to=s.recipient.address) for s in specs],
    )
    return Ready(tenant.id, _traced(outbox, trace), response, key, door, choice.lane)


async def publish(ingest: Ingest, ready: Sequence[Ready]) -> list[BaseException | None]:
    """Publish the records of every prepared request in one go and wait for the broker's
    answer to all of them; then keep the answers of keyed ones for their repeats.

    One outcome per request: None when the broker acknowledged every record of it (it is
    accepted), else why not (it must not be answered 202; a retry publishes it again under
    the same ids, which every stage recognises). Raises when the broker did not answer at all.
    """
    async with asyncio.timeout(PUBLISH_TIMEOUT_SECONDS):
        sent = await ingest.broker.send_all([p for item in ready for p in item.publications])
    outcomes: list[BaseException | None] = []
    for item in ready:
        mine, sent = sent[: len(item.publications)], sent[len(item.publications) :]
        failure = next((o for o in mine if isinstance(o, BaseException)), None)
        outcomes.append(failure)
        REQUESTS.labels(item.door, item.lane.value, "unavailable" if failure else "accepted").inc()
        if failure is None and item.key is not None:
            await _keep_answer(ingest, item.tenant_id, item.key, item.response)
    return outcomes


def _specs(
    tenant: Tenant,
    request: SendRequest,
    checked: Addresses,
    message_ids: list[str],
    versions: list[int | None],
    lane: Lane,
    trace: Context,
    key_id: str | None,
) -> list[MessageSpec]:
    """One message per recipient, as the rest of the pipeline will carry it; ``versions``
    are the template versions they render, in recipient order."""
    accepted_at = datetime.now(UTC)
    trace_id = format(get_current_span(trace).get_span_context().trace_id, "032x")
    return [
        MessageSpec(
            message_id=message_id,
            tenant_id=tenant.id,
            trace_id=trace_id,
            accepted_at=accepted_at,
            sender=checked.sender,
            recipient=recipient,
            reply_to=checked.reply_to,
            subject=request.subject,
            html=request.html,
            text=request.text,
            template=request.template,
            template_version=version,
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
            key_id=key_id,
        )
        for message_id, recipient, version in zip(
            message_ids, checked.recipients, versions, strict=True
        )
    ]


def _traced(outbox: Outbox, trace: Context) -> list[Publication]:
    """The outbox's records, stamped with the request's trace context."""
    headers = traceparent(trace)
    return [
        Publication(None, p.topic, p.value, p.key, [*p.headers, *headers], p.urgent)
        for p in outbox.publications
    ]


def _check(
    ingest: Ingest, request: SendRequest, tenant: Tenant, choices: TemplateChoices | None
) -> Addresses | list[Violation]:
    """The request's parsed addresses, or everything wrong with it (its data checked against
    the active version of its template)."""
    active = choices.active if choices is not None else None
    sendable = tenant.sendable_domains(ingest.settings.dev_mode)
    checked = check_request(request, tenant.domains, active, datetime.now(UTC), sendable)
    if isinstance(checked, list) and choices is not None and active is None:
        unusable = _unusable(choices)
        return [unusable if v.code == "unknown_template" else v for v in checked]
    return checked


def _unusable(choices: TemplateChoices) -> Violation:
    """Why a template that exists cannot be sent: archived, no such version as the request
    pins, or no version active yet."""
    template = choices.template
    if template.archived_at is not None:
        return Violation(
            "template_archived",
            pointer("template"),
            f"template {template.alias!r} is archived: restore it to send with it",
        )
    if choices.pinned is not None:
        return Violation(
            "unknown_template_version",
            pointer("template_version"),
            f"template {template.alias!r} has no version {choices.pinned}",
        )
    return Violation(
        "unknown_template",
        pointer("template"),
        f"template {template.alias!r} has no active version yet",
    )


def _with_template_category(request: SendRequest, choices: TemplateChoices | None) -> SendRequest:
    """``request``, taking its template's category when it names none: a template says what
    kind of mail it is (an OTP template's mail travels as OTP mail, in the lane that earns)."""
    if request.category is not None or choices is None or choices.template.category is None:
        return request
    return request.model_copy(update={"category": choices.template.category})


def _versions(
    request: SendRequest, checked: Addresses, choices: TemplateChoices | None
) -> list[int | None]:
    """The template version each recipient renders, in recipient order (None: no template)."""
    if choices is None or choices.active is None:
        return [None] * len(checked.recipients)
    lane = natural_lane(request.category, request.stream)
    now = datetime.now(UTC)
    active, experiment, variant = choices.active, choices.experiment, choices.variant
    return [
        choose_version(active, experiment, variant, recipient.address, lane, now)[0].version
        for recipient in checked.recipients
    ]


def _variant_data(
    request: SendRequest, choices: TemplateChoices | None, versions: list[int | None]
) -> list[Violation]:
    """What is wrong with ``data`` for the experiment's variant, when a recipient got it (the
    active version's check is part of ``check_request``)."""
    variant = choices.variant if choices is not None and choices.active is not None else None
    if variant is None or variant.version not in versions:
        return []
    return check_template_data(request, variant)


async def _claim(
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


async def _keep_answer(
    ingest: Ingest, tenant_id: str, key: str, response: AcceptedResponse
) -> None:
    """Store the answer for repeats of the request; never fail the request once published."""
    try:
        await store.save_response(ingest.pool, tenant_id, key, response.model_dump(mode="json"))
    except Exception as error:
        AFTER_PUBLISH_FAILURES.inc()
        log.warning("accepted %s but could not keep its answer yet: %r", response.id, error)
