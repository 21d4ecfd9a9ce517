"""sender's wiring: a batch handler per lane of ``deliver.<lane>``; retries go to ``retry.<lane>``.

The attempts of a batch run concurrently over the route's connections of their lane; each one is
claimed right before its DATA and its reply recorded right after (claims and replies of
concurrent attempts share their statements), so the guarantee is the one of a single attempt.
An attempt of a message cancelled through the API is dropped: nothing is sent or reported.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from datetime import UTC, datetime

from libs.batch import URGENT_LANES, Consumed, Outbox
from libs.broker import retry_forever
from libs.events import event_data
from libs.group_commit import GroupCommit
from libs.message_tokens import signing_key
from libs.sendable import domain_of
from libs.sending_domains import DkimKeyring
from libs.service import PipelineService
from libs.settings import Settings
from libs.subscriptions import subscribe_stage
from libs.topics import DELIVER, RETRY
from libs.verp import return_path
from schemas.common import Problem
from schemas.events import MessageState
from schemas.pipeline import DeliveryJob
from services.sender.classify import Verdict, judge, outcome_unknown
from services.sender.destinations import resolve
from services.sender.dkim_signing import MessageSigner
from services.sender.handover import (
    Handover,
    HandoverKind,
    RouteConnections,
    hand_over,
    longest_data,
)
from services.sender.list_unsubscribe import OneClick, offers_unsubscribe, one_click
from services.sender.metrics import count_exchange, count_verdict
from services.sender.mime import build_message
from services.sender.store import (
    AttemptClaim,
    AttemptKey,
    AttemptState,
    FinishedAttempt,
    RecordedAttempt,
    claim_attempts,
    compressed,
    finish_attempts,
    recorded_attempts,
    release_unsent,
)
from services.sender.tls_auth import RoutePasswords

SERVICE = "sender"
IN_FLIGHT_POLL_SECONDS = 0.1

log = logging.getLogger(__name__)


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
        self.connections = RouteConnections(settings, RoutePasswords(settings, lambda: self.pool))
        self._claimer = uuid.uuid4().hex
        """This process, as the claims it writes name it."""
        self._unsent: set[AttemptKey] = set()
        """Attempts whose claim may have been written though its answer was lost: this process
        knows it never handed them to SMTP, and withdraws the claim before trying again."""
        self._claims: dict[bool, GroupCommit[AttemptClaim, bool]] = {}
        self._finishes: dict[bool, GroupCommit[FinishedAttempt, None]] = {}
        """Per urgency: an OTP's claim never waits for a statement carrying bulk claims."""
        self._signer: MessageSigner | None = None
        self._token_key = signing_key(settings)
        """Signs return paths and unsubscribe links (``libs.message_tokens``)."""
        # The SMTP exchanges wait on the network, not the CPU: no lane holds the gate for them,
        # and each lane has connections of its own.
        subscribe_stage(self.broker, settings, SERVICE, DELIVER, self.deliver_batch, gated=False)

    async def prepare(self) -> None:
        pool = self.pool
        self._signer = MessageSigner(DkimKeyring(pool))
        claimer = self._claimer
        for urgent in (True, False):
            self._claims[urgent] = GroupCommit(lambda claims: claim_attempts(pool, claims, claimer))
            self._finishes[urgent] = GroupCommit(lambda rows: finish_attempts(pool, rows))

    async def stop(self) -> None:
        await super().stop()
        await self.connections.close()

    async def deliver_batch(self, batch: list[Consumed[DeliveryJob]]) -> Outbox:
        """Make every attempt of the batch (concurrently) and report each outcome.

        A record that repeats an attempt already in the batch (a stage upstream published it
        twice) shares that attempt's verdict: two concurrent claims of one attempt must never
        both be granted, so each attempt is made once here.
        """
        attempts: dict[AttemptKey, Consumed[DeliveryJob]] = {}
        for item in batch:
            attempts.setdefault(self._key(item.value), item)
        keys = [key for key in attempts if _is_uuid(key[0])]
        if unsent := [key for key in keys if key in self._unsent]:
            await release_unsent(self.pool, unsent, self._claimer)
            self._unsent.difference_update(unsent)
        recorded = await recorded_attempts(self.pool, keys)
        verdicts = dict(
            zip(
                attempts,
                await asyncio.gather(
                    *(self._attempt(item, recorded.get(key)) for key, item in attempts.items())
                ),
                strict=True,
            )
        )
        outbox = Outbox(self.settings.topic_prefix)
        for item in batch:
            if (verdict := verdicts[self._key(item.value)]) is not None:
                self._report(outbox, item, verdict)
        return outbox

    @staticmethod
    def _key(job: DeliveryJob) -> AttemptKey:
        return (job.message.message_id, job.attempt)

    async def _attempt(
        self, item: Consumed[DeliveryJob], recorded: RecordedAttempt | None
    ) -> Verdict | None:
        """Make the attempt unless it was made before; either way, the verdict on it (None:
        the message was cancelled, there is nothing to report)."""
        job = item.value
        if not _is_uuid(job.message.message_id):
            problem = Problem(code="invalid_record", detail="the message id is not a UUID")
            return Verdict(MessageState.FAILED, None, problem)
        if recorded is not None:
            return await self._made_before(job, recorded)
        built = build_message(job, self._unsubscribe(job))
        if isinstance(built, Problem):
            return Verdict(MessageState.FAILED, None, built)
        assert self._signer is not None, "the sender is started"
        handover = await self._send(item, await self._signer.signed(job, built))
        now = datetime.now(UTC)
        if handover.kind is HandoverKind.CLAIMED_BEFORE:
            again = (await recorded_attempts(self.pool, [self._key(job)])).get(self._key(job))
            if again is None:  # another attempt of the message is in DATA
                return outcome_unknown(None)
            return await self._made_before(job, again)
        if handover.kind is HandoverKind.INTERRUPTED:
            return outcome_unknown(handover.reply)
        assert handover.reply is not None
        verdict = judge(job, handover.reply, now, self.settings)
        count_verdict(job, verdict.state, now)
        if handover.kind is HandoverKind.ANSWERED:
            assert self._finishes, "the sender is started"
            finished = FinishedAttempt(
                job.message.message_id, job.attempt, verdict.state, handover.reply, now
            )
            finishes = self._finishes[job.message.lane in URGENT_LANES]
            await retry_forever(
                "recording the DATA reply",  # lost, it would turn a known outcome unknown
                lambda: finishes.submit(finished),
            )
        return verdict

    async def _made_before(self, job: DeliveryJob, recorded: RecordedAttempt) -> Verdict | None:
        """The verdict of an attempt claimed before, or None when its message was cancelled."""
        if recorded.state is AttemptState.CANCELLED:
            log.info("dropping attempt %s: cancelled", job.attempt, extra=self._about(job))
            return None
        return self._replay(job, await self._settled(job, recorded))

    @staticmethod
    def _about(job: DeliveryJob) -> dict[str, str]:
        return {"message_id": job.message.message_id}

    async def _settled(self, job: DeliveryJob, recorded: RecordedAttempt) -> RecordedAttempt:
        """The record of a claimed attempt once it is settled.

        A claim younger than DATA's longest duration may be another instance's DATA still in
        flight (two consumers briefly own a partition during a rebalance): its outcome is
        awaited rather than declared unknown.
        """
        while recorded.state is AttemptState.DATA and recorded.age <= longest_data(job.route):
            await asyncio.sleep(IN_FLIGHT_POLL_SECONDS)
            recorded = (await recorded_attempts(self.pool, [self._key(job)]))[self._key(job)]
        return recorded

    def _unsubscribe(self, job: DeliveryJob) -> OneClick | None:
        """The one-click unsubscribe the message offers, if it offers one."""
        if not offers_unsubscribe(job.message):
            return None
        settings = self.settings
        return one_click(self._token_key, job.message, settings.public_url, settings.bounce_address)

    async def _send(self, item: Consumed[DeliveryJob], content: bytes) -> Handover:
        """The SMTP exchange; the message's span in the sender records how it went and the reply
        (one span per message: the exchange is an event of it, with its duration)."""
        job = item.value
        spec, route = job.message, job.route
        assert self._claims, "the sender is started"
        claims = self._claims[spec.lane in URGENT_LANES]
        key = self._key(job)
        started = time.monotonic()
        handover = await hand_over(
            self.connections,
            await resolve(route, domain_of(spec.recipient.address), self.settings),
            route,
            spec.lane,
            return_path(
                self._token_key,
                spec.tenant_id,
                spec.message_id,
                self.settings.bounce_address,
                route.return_path_domain,
            ),
            spec.recipient.address,
            content,
            claim=lambda: self._claim(claims, key, spec.tenant_id, content),
        )
        seconds = time.monotonic() - started
        if handover.kind is not HandoverKind.CLAIMED_BEFORE:
            count_exchange(job, handover.reply, seconds)
        exchange: dict[str, str | int | float] = {
            "sendarix.attempt": job.attempt,
            "sendarix.route": route.name,
            "server.address": route.host,
            "server.port": route.port,
            "smtp.handover": handover.kind.value,
            "smtp.duration_ms": round(1000 * seconds, 2),
        }
        if handover.reply is not None:
            exchange["smtp.reply_code"] = handover.reply.code
            exchange["smtp.reply"] = handover.reply.text
        item.span.set_attributes(exchange)
        item.span.add_event("smtp exchange", exchange)
        return handover

    async def _claim(
        self,
        claims: GroupCommit[AttemptClaim, bool],
        key: AttemptKey,
        tenant_id: str,
        content: bytes,
    ) -> bool:
        """Claim an attempt right before its DATA, keeping the bytes it sends; a claim whose
        answer is lost is remembered as never sent (its batch is tried again once the database
        answers)."""
        kept = await compressed(content)
        try:
            return await claims.submit(AttemptClaim(key, tenant_id, kept))
        except Exception:
            self._unsent.add(key)
            raise

    def _replay(self, job: DeliveryJob, recorded: RecordedAttempt) -> Verdict:
        """The verdict of an attempt made before, derived again from what was recorded.

        A finished attempt yields the same events (same ids) and the same retry; one left in
        DATA had its outcome lost with the process that made it.
        """
        if recorded.state is AttemptState.DONE and recorded.reply and recorded.finished_at:
            return judge(job, recorded.reply, recorded.finished_at, self.settings)
        return outcome_unknown(recorded.reply)

    def _report(self, outbox: Outbox, item: Consumed[DeliveryJob], verdict: Verdict) -> None:
        """Hand a deferral to the retry-scheduler, and report the verdict."""
        job = item.value
        spec = job.message
        if verdict.retry is not None:
            outbox.forward(item, RETRY, verdict.retry)
        data = event_data(
            spec,
            SERVICE,
            subject=job.content.subject,
            template_version=job.content.template_version,
            route=job.route,
            attempt=job.attempt,
            smtp=verdict.reply,
            bounce=verdict.bounce,
            problem=verdict.problem,
            next_attempt_at=verdict.retry.due_at if verdict.retry else None,
        )
        outbox.emit(item, verdict.state, data)
        log.debug(
            "attempt %s via %s: %s (%s)",
            job.attempt,
            job.route.name,
            verdict.state.value,
            verdict.problem.code if verdict.problem else verdict.reply,
            extra=self._about(job),
        )
