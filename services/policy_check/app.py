"""policy-check's wiring: a batch handler per lane of ``policy.<lane>``, and the feedback reader.

A batch is checked in named steps: the suppressions (read from the in-process view,
``view.py``), then the tenants' rules (hold, block, allow, force a lane, a route or a pool).

The feedback reader closes the loop from delivery back to policy: a hard bounce, a complaint,
an unsubscribe or repeated soft bounces reported on the event stream suppress the address for
the next message. It reads only the event types it learns from, by their header, and decodes
nothing else.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from libs import held
from libs.batch import Consumed, Outbox
from libs.events import TYPE_HEADER, event_data, header
from libs.service import PipelineService
from libs.settings import Settings
from libs.subscriptions import RawRecord, subscribe_events, subscribe_stage
from libs.suppressions import Suppression, add_suppressions, record_soft_bounces
from libs.topics import POLICY, ROUTE
from schemas.common import Problem
from schemas.events import DeliveryEvent, MessageState
from schemas.pipeline import RenderedMessage
from services.policy_check.decide import (
    LEARNED_FROM,
    SoftBouncePolicy,
    learned_suppressions,
    paused,
    soft_bounce,
)
from services.policy_check.rule_cache import RuleCache
from services.policy_check.rules import Forward, Hold, Stop, decide
from services.policy_check.view import SuppressionView

SERVICE = "policy-check"

log = logging.getLogger(__name__)


def held_message(item: Consumed[RenderedMessage], decision: Hold) -> held.HeldMessage:
    """What is stored of a message a rule holds: its record as read, and its trace."""
    traceparent = dict(item.traceparent).get("traceparent")
    return held.HeldMessage(
        record=item.value,
        raw=item.raw.value or b"",
        rule_id=decision.rule.id,
        expires_at=decision.until,
        traceparent=traceparent.decode() if traceparent else None,
    )


def teaches(record: RawRecord) -> bool:
    """Whether an event may suppress an address (by its type header; unlabelled: look inside)."""
    event_type = header(record.headers, TYPE_HEADER)
    return event_type is None or event_type in LEARNED_FROM


def soft_bounce_policy(settings: Settings) -> SoftBouncePolicy:
    """The settings' pause for repeated soft bounces."""
    return SoftBouncePolicy(
        count=settings.soft_bounce_count,
        window=timedelta(days=settings.soft_bounce_window_days),
        pause=timedelta(days=settings.soft_bounce_pause_days),
    )


class PolicyCheckService(PipelineService):
    """Clears rendered messages for routing unless their recipient is suppressed or a rule of
    their tenant holds or blocks them."""

    name = SERVICE

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.rules = RuleCache()
        self.soft_bounces = soft_bounce_policy(settings)
        self._view: SuppressionView | None = None
        subscribe_stage(self.broker, settings, SERVICE, POLICY, self.check_batch)
        subscribe_events(self.broker, settings, SERVICE, "feedback", self.learn, wanted=teaches)

    @property
    def view(self) -> SuppressionView:
        """The in-process suppression view, once started."""
        if self._view is None:
            raise RuntimeError(f"{self.name} is not started")
        return self._view

    async def prepare(self) -> None:
        self._view = SuppressionView(self.pool, self.settings.suppression_poll_seconds)
        await self._view.start()

    async def stop(self) -> None:
        if self._view is not None:
            await self._view.stop()
        await super().stop()

    async def check_batch(self, batch: list[Consumed[RenderedMessage]]) -> Outbox:
        """Suppressed recipients stop here; the tenants' rules decide for the others."""
        outbox = Outbox(self.settings.topic_prefix)
        problems = self.suppression_problems(batch)
        cleared = []
        for item, problem in zip(batch, problems, strict=True):
            spec = item.value.message
            if problem is not None:
                data = event_data(spec, SERVICE, problem=problem)
                outbox.emit(item, MessageState.SUPPRESSED, data)
                continue
            cleared.append(item)
        await self.apply_rules(cleared, outbox)
        return outbox

    async def apply_rules(self, batch: list[Consumed[RenderedMessage]], outbox: Outbox) -> None:
        """Each tenant's rules decide: held messages are stored, blocked ones stop, the others
        go on to the router (as read when no rule matched; re-encoded with its directive when one
        did, so the router can name the rule)."""
        books = await self.rules.books(self.pool, (item.value.message.tenant_id for item in batch))
        now = datetime.now(UTC)
        holds: list[tuple[Consumed[RenderedMessage], Hold]] = []
        for item in batch:
            spec = item.value.message
            decision = decide(spec, books[spec.tenant_id], now)
            if isinstance(decision, Hold):
                holds.append((item, decision))
            elif isinstance(decision, Stop):
                data = event_data(spec, SERVICE, problem=decision.problem, rule=decision.applied)
                outbox.emit(item, MessageState.BLOCKED, data)
            elif isinstance(decision, Forward):
                outbox.forward(item, ROUTE, decision.applied_to(item.value))
            else:
                outbox.forward_value(item, ROUTE, spec.lane, spec.message_id, item.raw.value or b"")
        cancelled = await held.hold(self.pool, [held_message(item, h) for item, h in holds])
        for item, decision in holds:
            if item.value.message.message_id in cancelled:
                continue
            data = event_data(item.value.message, SERVICE, rule=decision.applied)
            outbox.emit(item, MessageState.HELD, data)

    def suppression_problems(self, batch: list[Consumed[RenderedMessage]]) -> list[Problem | None]:
        """The suppression that stops each message of the batch, as its problem (None: none)."""
        specs = [item.value.message for item in batch]
        return self.view.problems(specs, datetime.now(UTC))

    async def learn(self, batch: list[Consumed[DeliveryEvent]]) -> Outbox:
        """Suppress the recipients that a batch of events shows dead, hostile, gone or failing."""
        events = [item.value for item in batch]
        taught = [s for event in events for s in learned_suppressions(event)]
        taught += await self._pauses(events)
        stored = await add_suppressions(self.pool, taught)
        self.view.learned(stored)
        for suppression in stored:
            log.info(
                "recipient suppressed for tenant %s in %s: %s",
                suppression.tenant_id,
                suppression.stream.value,
                suppression.reason.value,
            )
        return Outbox(self.settings.topic_prefix)

    async def _pauses(self, events: list[DeliveryEvent]) -> list[Suppression]:
        """The pauses the batch's soft bounces call for, once counted in the database."""
        bounces = [b for event in events if (b := soft_bounce(event)) is not None]
        if not bounces:
            return []
        counted = await record_soft_bounces(self.pool, bounces, self.soft_bounces.window)
        return paused(counted, self.soft_bounces, datetime.now(UTC))
