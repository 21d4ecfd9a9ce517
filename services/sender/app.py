"""sender's wiring: a batch handler per lane of ``deliver.<lane>`` and of ``deliver-slow.<lane>``;
retries and holds go to ``retry.<lane>``.

The attempts of a batch run concurrently over the route's connections of their lane; each one is
claimed right before its DATA and its reply recorded right after (claims and replies of
concurrent attempts share their statements), so the guarantee is the one of a single attempt.
An attempt of a message cancelled through the API is dropped: nothing is sent or reported.

Before its exchange an attempt is admitted (``admission``): a pause or a drain without fallback
holds it, a drained route hands it to its fallback, its site's rate may hold it (shaped), and a
slow site sends it to ``deliver-slow``. On ``deliver.<lane>`` an attempt that has not reached
its claim within ``slow_site_budget_seconds`` is abandoned (nothing was sent) and goes to
``deliver-slow`` too, so one slow destination never holds the other mail of its batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from libs.batch import URGENT_LANES, Consumed, Outbox
from libs.broker import retry_forever
from libs.events import event_data
from libs.group_commit import GroupCommit
from libs.message_tokens import signing_key
from libs.queue_controls import ControlView, QueueControl
from libs.sendable import domain_of
from libs.sending_domains import DkimKeyring
from libs.service import PipelineService
from libs.settings import Settings
from libs.subscriptions import records_waiting, subscribe_stage
from libs.topics import DELIVER, DELIVER_SLOW, RETRY
from libs.verp import return_path
from schemas.common import Lane, Problem
from schemas.events import MessageState
from schemas.pipeline import DeliveryJob, RetryRequest, RouteKind
from services.sender.admission import Admit, admit, hold_request, undrained
from services.sender.classify import Verdict, expired, judge, outcome_unknown
from services.sender.destinations import Destination, resolve
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
from services.sender.site_store import forget_sites, write_sites
from services.sender.sites import Site, Sites, SiteTransition
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
from services.sender.stragglers import BatchProgress, ExchangeTimes
from services.sender.tls_auth import RoutePasswords

SERVICE = "sender"
IN_FLIGHT_POLL_SECONDS = 0.1
SNAPSHOT_SECONDS = 1.0
"""How often the sites' snapshot and state changes are written for the queue view."""
RECENT_SITE_SECONDS = 60.0
"""A site the sender has not talked to for this long leaves its snapshot."""

log = logging.getLogger(__name__)


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Outcome:
    """What became of one attempt of a batch: a verdict to report, a hold for the
    retry-scheduler (not an attempt: no event), or a trip to ``deliver-slow`` (``slow``); none of
    them when the message was cancelled. ``job`` is the attempt as made (a drain may have moved
    it to a fallback route)."""

    job: DeliveryJob
    verdict: Verdict | None = None
    hold: RetryRequest | None = None
    slow: bool = False


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
        self.sites = Sites()
        self._site_slots: dict[tuple[str, Lane], asyncio.Semaphore] = {}
        """At most ``max_connections`` exchanges per site and lane at a time."""
        self._controls: ControlView | None = None
        self._unwritten: list[SiteTransition] = []
        self._exchange_times = ExchangeTimes()
        self._patient_cpu = asyncio.Lock()
        """Taken by a normal or bulk attempt while it builds and signs its message (about 1 ms):
        a batch of 250 would otherwise do all of it in one turn of the event loop, ahead of
        any OTP that arrived meanwhile; one at a time, an OTP waits for one signature."""
        self._snapshots: asyncio.Task[None] | None = None
        # The SMTP exchanges wait on the network, not the CPU: no lane holds the gate for them,
        # and each lane has connections of its own.
        subscribe_stage(self.broker, settings, SERVICE, DELIVER, self.deliver_batch, gated=False)
        subscribe_stage(
            self.broker,
            settings,
            SERVICE,
            DELIVER_SLOW,
            self.deliver_slow_batch,
            gated=False,
            role_prefix="slow-",
        )

    async def prepare(self) -> None:
        pool = self.pool
        self._signer = MessageSigner(DkimKeyring(pool))
        claimer = self._claimer
        for urgent in (True, False):
            self._claims[urgent] = GroupCommit(lambda claims: claim_attempts(pool, claims, claimer))
            self._finishes[urgent] = GroupCommit(lambda rows: finish_attempts(pool, rows))
        self._controls = ControlView(pool, self.settings.queue_control_poll_seconds)

    async def start(self) -> None:
        await super().start()
        self._snapshots = asyncio.create_task(self._write_sites_forever())

    async def stop(self) -> None:
        if self._snapshots is not None:
            self._snapshots.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._snapshots
            with contextlib.suppress(Exception):
                await forget_sites(self.pool, self._claimer)
        await super().stop()
        await self.connections.close()

    async def _write_sites_forever(self) -> None:
        """Every second, this sender's sites and their state changes for the queue view; a
        failure keeps the changes for the next write."""
        while True:
            await asyncio.sleep(SNAPSHOT_SECONDS)
            now = time.monotonic()
            self._unwritten.extend(self.sites.transitions(now))
            try:
                recent = self.sites.recent(now, RECENT_SITE_SECONDS)
                await write_sites(self.pool, self._claimer, recent, self._unwritten)
            except Exception:
                log.exception("writing the sites' snapshot failed; trying again")
            else:
                self._unwritten.clear()

    async def deliver_batch(self, batch: list[Consumed[DeliveryJob]]) -> Outbox:
        """A batch of ``deliver.<lane>``: an attempt slower than the budget goes to
        ``deliver-slow``."""
        return await self._deliver(batch, impatient=True)

    async def deliver_slow_batch(self, batch: list[Consumed[DeliveryJob]]) -> Outbox:
        """A batch of ``deliver-slow.<lane>``: attempts get the route's whole timeout."""
        return await self._deliver(batch, impatient=False)

    async def _deliver(self, batch: list[Consumed[DeliveryJob]], impatient: bool) -> Outbox:
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
        assert self._controls is not None, "the sender is started"
        controls = await self._controls.current()
        settings = self.settings
        budget = settings.slow_site_budget_seconds
        grace = self._exchange_times.grace(settings.slow_site_grace_seconds, budget)
        progress = BatchProgress(budget, grace, len(attempts)) if impatient else None

        async def counted(item: Consumed[DeliveryJob], key: AttemptKey) -> Outcome:
            """The attempt, counted done in the batch's ``progress`` however it ends."""
            try:
                return await self._attempt(item, recorded.get(key), controls, progress)
            finally:
                if progress is not None:
                    progress.finished(time.monotonic())

        outcomes = dict(
            zip(
                attempts,
                await asyncio.gather(*(counted(item, key) for key, item in attempts.items())),
                strict=True,
            )
        )
        outbox = Outbox(self.settings.topic_prefix)
        for item in batch:
            self._report(outbox, item, outcomes[self._key(item.value)])
        return outbox

    @staticmethod
    def _key(job: DeliveryJob) -> AttemptKey:
        return (job.message.message_id, job.attempt)

    async def _attempt(
        self,
        item: Consumed[DeliveryJob],
        recorded: RecordedAttempt | None,
        controls: list[QueueControl],
        progress: BatchProgress | None,
    ) -> Outcome:
        """Make the attempt unless it was made before or is not admitted now; what became of
        it."""
        job = item.value
        if not _is_uuid(job.message.message_id):
            problem = Problem(code="invalid_record", detail="the message id is not a UUID")
            return Outcome(job, Verdict(MessageState.FAILED, None, problem))
        if recorded is not None:
            return Outcome(job, await self._made_before(job, recorded))
        job, drain = undrained(job, controls)
        destination = await resolve(
            job.route, domain_of(job.message.recipient.address), self.settings
        )
        site = self.sites.get(destination.site, job.message.lane, time.monotonic())
        now = datetime.now(UTC)
        admission = admit(job, site, controls, drain, now, time.monotonic(), progress is None)
        if admission.decision is Admit.EXPIRED:
            return Outcome(job, expired(job, None))
        if admission.decision is Admit.SLOW:
            return Outcome(job, slow=True)
        if admission.decision is not Admit.SEND:
            return Outcome(job, hold=hold_request(job, admission, site.name, now))
        patient = job.message.lane not in URGENT_LANES
        async with self._patient_cpu if patient else contextlib.nullcontext():
            built = build_message(job, self._unsubscribe(job))
            if isinstance(built, Problem):
                return Outcome(job, Verdict(MessageState.FAILED, None, built))
            assert self._signer is not None, "the sender is started"
            content = await self._signer.signed(job, built)
        handover = await self._send(item, job, destination, site, content, progress)
        if handover is None:
            return Outcome(job, slow=True)
        verdict = await self._verdict(job, handover)
        if verdict is not None and verdict.retry is not None:  # it waits for this site
            verdict = replace(verdict, retry=verdict.retry.model_copy(update={"site": site.name}))
        return Outcome(job, verdict)

    async def _verdict(self, job: DeliveryJob, handover: Handover) -> Verdict | None:
        """The verdict on an exchange (None: the message was cancelled meanwhile)."""
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

    def _site_slot(self, site: Site) -> asyncio.Semaphore:
        slot = self._site_slots.get((site.name, site.lane))
        if slot is None:
            slot = asyncio.Semaphore(site.limits.max_connections)
            self._site_slots[(site.name, site.lane)] = slot
        return slot

    async def _send(
        self,
        item: Consumed[DeliveryJob],
        job: DeliveryJob,
        destination: Destination,
        site: Site,
        content: bytes,
        progress: BatchProgress | None,
    ) -> Handover | None:
        """The SMTP exchange, or None when it was abandoned before its claim as ``progress``
        says (``services.sender.stragglers``; nothing was sent; once the claim began, it is never
        abandoned).

        An exchange that took longer than the budget after its claim marks the site slow too
        (the batch waited for it; the next ones go to ``deliver-slow``); one on ``deliver-slow``
        (no budget) that took less marks it fast again.
        """
        spec = job.message
        assert self._claims, "the sender is started"
        claims = self._claims[spec.lane in URGENT_LANES]
        key = self._key(job)
        queued = time.monotonic()
        began: list[float] = []  # when the exchange took its connection slot
        claimed_at: list[float] = []
        abandoned = False

        def claim() -> Awaitable[bool]:
            if abandoned:  # cancelled meanwhile: never claim an attempt given up on
                raise asyncio.CancelledError
            claimed_at.append(time.monotonic())
            return self._claim(claims, key, spec.tenant_id, content)

        talk = asyncio.ensure_future(self._exchange(job, destination, site, content, claim, began))
        try:
            if progress is None:  # deliver-slow: the whole timeout
                await asyncio.wait([talk])
            while not talk.done() and not claimed_at:
                assert progress is not None
                now = time.monotonic()
                if not began:  # queued behind the batch's other exchanges with the site
                    if progress.waits_too_long(queued, site.finished_at, now):
                        break
                    await asyncio.wait([talk], timeout=progress.grace)
                    continue
                waited_on = progress.alone(began[0], now) and await records_waiting()
                if progress.gives_up(began[0], now, waited_on):
                    break
                await asyncio.wait([talk], timeout=progress.next_look(began[0], time.monotonic()))
        except asyncio.CancelledError:
            if not claimed_at:
                talk.cancel()
            raise
        if not talk.done() and not claimed_at:
            abandoned = True
            talk.cancel()
            await asyncio.wait([talk])
            if talk.cancelled():
                site.mark_slow(time.monotonic(), self.settings.slow_site_cooldown_seconds)
                item.span.add_event("abandoned for deliver-slow", {"sendarix.site": site.name})
                return None
        handover = await talk
        finished = time.monotonic()
        seconds = finished - (began[0] if began else queued)
        if progress is not None:
            self._exchange_times.add(seconds)
        budget = self.settings.slow_site_budget_seconds
        if progress is not None and claimed_at and finished - claimed_at[0] > budget:
            site.mark_slow(finished, self.settings.slow_site_cooldown_seconds)
        elif progress is None and seconds <= budget:
            site.answered_quickly(finished)
        if handover.kind is not HandoverKind.CLAIMED_BEFORE:
            count_exchange(job, handover.reply, seconds)
        route = job.route
        exchange: dict[str, str | int | float] = {
            "sendarix.attempt": job.attempt,
            "sendarix.route": route.name,
            "sendarix.site": site.name,
            "server.address": route.host,
            "server.port": route.port,
            "smtp.handover": handover.kind.value,
            "smtp.duration_ms": round(1000 * seconds, 2),
        }
        if route.kind is RouteKind.MX:  # support sees whether the domain asked for verified TLS
            exchange["smtp.mta_sts"] = destination.mta_sts or "none"
        if handover.reply is not None:
            exchange["smtp.reply_code"] = handover.reply.code
            exchange["smtp.reply"] = handover.reply.text
        item.span.set_attributes(exchange)
        item.span.add_event("smtp exchange", exchange)
        return handover

    async def _exchange(
        self,
        job: DeliveryJob,
        destination: Destination,
        site: Site,
        content: bytes,
        claim: Callable[[], Awaitable[bool]],
        began: list[float],
    ) -> Handover:
        """``hand_over`` within the site's connection limit, its reply observed by the site;
        when it took its connection slot is appended to ``began``."""
        spec = job.message
        async with self._site_slot(site):
            began.append(time.monotonic())
            site.started(began[0])
            reply = None
            try:
                handover = await hand_over(
                    self.connections,
                    destination,
                    job.route,
                    spec.lane,
                    return_path(
                        self._token_key,
                        spec.tenant_id,
                        spec.message_id,
                        self.settings.bounce_address,
                        job.route.return_path_domain,
                    ),
                    spec.recipient.address,
                    content,
                    claim=claim,
                    most_messages=site.limits.messages_per_connection,
                )
                reply = handover.reply
                return handover
            finally:
                site.finished(reply, time.monotonic())

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

    def _report(self, outbox: Outbox, item: Consumed[DeliveryJob], outcome: Outcome) -> None:
        """Hand a hold or a deferral to the retry-scheduler, a slow site's attempt to
        ``deliver-slow``, and report the verdict."""
        job = outcome.job
        if outcome.hold is not None:
            outbox.forward(item, RETRY, outcome.hold)
        if outcome.slow:
            outbox.forward(item, DELIVER_SLOW, job)
        if (verdict := outcome.verdict) is None:
            return
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
