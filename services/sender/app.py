"""sender's wiring: a subscriber per lane of ``deliver.<lane>``; retries go to ``retry.<lane>``."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime

from faststream.kafka import KafkaMessage
from opentelemetry import trace

from libs.broker import (
    publish_record,
    retry_forever,
    subscribe_lanes,
)
from libs.events import emit, event_data
from libs.logs import current_message_id
from libs.service import PipelineService
from libs.settings import Settings
from libs.topics import lane_topic
from schemas.common import Problem
from schemas.events import MessageState
from schemas.pipeline import DeliveryJob
from services.sender.classify import Verdict, judge, outcome_unknown
from services.sender.handover import (
    Handover,
    HandoverKind,
    RouteConnections,
    hand_over,
    longest_data,
)
from services.sender.mime import build_message, envelope_sender
from services.sender.store import (
    AttemptState,
    RecordedAttempt,
    claim_attempt,
    finish_attempt,
    recorded_attempt,
)

SERVICE = "sender"
IN_FLIGHT_POLL_SECONDS = 0.1

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


class SenderService(PipelineService):
    """Delivers each job over SMTP and reports the outcome; deferrals go to the retry-scheduler."""

    name = SERVICE

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.connections = RouteConnections(settings.smtp_helo_name)
        subscribe_lanes(self.broker, settings, SERVICE, "deliver", self._handle)

    async def stop(self) -> None:
        await super().stop()
        await self.connections.close()

    async def _handle(self, message: KafkaMessage) -> None:
        job = await self.decode(DeliveryJob, message)
        if job is None:
            return
        current_message_id.set(job.message.message_id)
        verdict = await self._attempt(job)
        await self._report(job, verdict)

    async def _attempt(self, job: DeliveryJob) -> Verdict:
        """Make the attempt unless it was made before; either way, the verdict on it."""
        message_id = job.message.message_id
        if not _is_uuid(message_id):
            problem = Problem(code="invalid_record", detail="the message id is not a UUID")
            return Verdict(MessageState.FAILED, None, problem)
        recorded = await self._recorded(job)
        if recorded is not None:
            return self._replay(job, recorded)
        built = build_message(job)
        if isinstance(built, Problem):
            return Verdict(MessageState.FAILED, None, built)
        handover = await self._send(job, built.as_bytes())
        now = datetime.now(UTC)
        if handover.kind is HandoverKind.CLAIMED_BEFORE:
            recorded = await self._recorded(job)
            assert recorded is not None, "a claimed attempt has a row"
            return self._replay(job, recorded)
        if handover.kind is HandoverKind.INTERRUPTED:
            return outcome_unknown(handover.reply)
        assert handover.reply is not None
        verdict = judge(job, handover.reply, now, self.settings)
        if handover.kind is HandoverKind.ANSWERED:
            reply = handover.reply
            await retry_forever(
                "recording the DATA reply",  # lost, it would turn a known outcome unknown
                lambda: finish_attempt(
                    self.pool, message_id, job.attempt, verdict.state, reply, now
                ),
            )
        return verdict

    async def _recorded(self, job: DeliveryJob) -> RecordedAttempt | None:
        """The record of this attempt once it is settled, or None if it was never claimed.

        A claim younger than DATA's longest duration may be another instance's DATA still in
        flight (two consumers briefly own a partition during a rebalance): its outcome is
        awaited rather than declared unknown.
        """
        while True:
            recorded = await recorded_attempt(self.pool, job.message.message_id, job.attempt)
            if (
                recorded is None
                or recorded.state is AttemptState.DONE
                or recorded.age > longest_data(job.route)
            ):
                return recorded
            await asyncio.sleep(IN_FLIGHT_POLL_SECONDS)

    async def _send(self, job: DeliveryJob, content: bytes) -> Handover:
        """The SMTP exchange, in a span of the message's trace that carries the reply."""
        spec, route = job.message, job.route
        attributes: dict[str, str | int] = {
            "sendarix.message_id": spec.message_id,
            "sendarix.attempt": job.attempt,
            "sendarix.route": route.name,
            "server.address": route.host,
            "server.port": route.port,
        }
        with tracer.start_as_current_span("smtp send", attributes=attributes) as span:
            handover = await hand_over(
                self.connections,
                route,
                envelope_sender(spec.message_id, self.settings.bounce_address),
                spec.recipient,
                content,
                claim=lambda: claim_attempt(self.pool, spec.message_id, job.attempt),
            )
            span.set_attribute("smtp.handover", handover.kind.value)
            if handover.reply is not None:
                span.set_attribute("smtp.reply_code", handover.reply.code)
                span.set_attribute("smtp.reply", handover.reply.text)
            return handover

    def _replay(self, job: DeliveryJob, recorded: RecordedAttempt) -> Verdict:
        """The verdict of an attempt made before, derived again from what was recorded.

        A finished attempt yields the same events (same ids) and the same retry; one left in
        DATA had its outcome lost with the process that made it.
        """
        if recorded.state is AttemptState.DONE and recorded.reply and recorded.finished_at:
            return judge(job, recorded.reply, recorded.finished_at, self.settings)
        return outcome_unknown(recorded.reply)

    async def _report(self, job: DeliveryJob, verdict: Verdict) -> None:
        """Hand a deferral to the retry-scheduler, then emit the event of the verdict."""
        spec = job.message
        if verdict.retry is not None:
            retry_topic = lane_topic("retry", spec.lane, self.settings.topic_prefix)
            await publish_record(self.broker, retry_topic, verdict.retry, spec.message_id)
        data = event_data(
            spec,
            SERVICE,
            subject=job.content.subject,
            template_version=job.content.template_version,
            route=job.route,
            attempt=job.attempt,
            smtp=verdict.reply,
            problem=verdict.problem,
            next_attempt_at=verdict.retry.due_at if verdict.retry else None,
        )
        await emit(self.broker, self.settings, verdict.state, data)
        log.info(
            "attempt %s via %s: %s (%s)",
            job.attempt,
            job.route.name,
            verdict.state.value,
            verdict.problem.code if verdict.problem else verdict.reply,
        )
