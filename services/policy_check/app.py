"""policy-check's wiring: a batch handler per lane of ``policy.<lane>``, and the feedback reader.

A batch is checked in named steps: the suppressions, then the tenants' rules (hold, block,
allow, force a lane, a route or a pool).

The feedback reader closes the loop from delivery back to policy: a hard bounce or a complaint
reported on the event stream suppresses the address for the next message. It reads only the
event types it learns from, by their header, and decodes nothing else.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from libs import held
from libs.batch import Consumed, Outbox
from libs.events import TYPE_HEADER, event_data, header
from libs.service import PipelineService
from libs.settings import Settings
from libs.subscriptions import RawRecord, subscribe_events, subscribe_stage
from libs.topics import POLICY, ROUTE
from schemas.events import DeliveryEvent, MessageState
from schemas.pipeline import RenderedMessage
from services.policy_check import store
from services.policy_check.decide import (
    LEARNED_FROM,
    address_key,
    learned_suppression,
    verdict,
)
from services.policy_check.rule_cache import RuleCache
from services.policy_check.rules import Forward, Hold, Stop, decide

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


class PolicyCheckService(PipelineService):
    """Clears rendered messages for routing unless their recipient is suppressed or a rule of
    their tenant holds or blocks them."""

    name = SERVICE

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.rules = RuleCache()
        subscribe_stage(self.broker, settings, SERVICE, POLICY, self.check_batch)
        subscribe_events(self.broker, settings, SERVICE, "feedback", self.learn, wanted=teaches)

    async def check_batch(self, batch: list[Consumed[RenderedMessage]]) -> Outbox:
        """Suppressed recipients stop here; the tenants' rules decide for the others."""
        outbox = Outbox(self.settings.topic_prefix)
        keys = [
            (item.value.message.tenant_id, address_key(item.value.message.recipient.address))
            for item in batch
        ]
        found = await store.suppressions_for(self.pool, keys)
        cleared = []
        for item, key in zip(batch, keys, strict=True):
            spec = item.value.message
            problem = verdict(spec, found.get(key))
            if problem is not None:
                data = event_data(spec, SERVICE, problem=problem)
                outbox.emit(item, MessageState.SUPPRESSED, data)
                continue
            cleared.append(item)
        await self.apply_rules(cleared, outbox)
        return outbox

    async def apply_rules(self, batch: list[Consumed[RenderedMessage]], outbox: Outbox) -> None:
        """Each tenant's rules decide: held messages are stored, blocked ones stop, the others
        go on to the router (re-encoded only when a rule changed their lane or route)."""
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
        await held.hold(self.pool, [held_message(item, h) for item, h in holds])
        for item, decision in holds:
            data = event_data(item.value.message, SERVICE, rule=decision.applied)
            outbox.emit(item, MessageState.HELD, data)

    async def learn(self, batch: list[Consumed[DeliveryEvent]]) -> Outbox:
        """Suppress the recipients that a batch of events shows dead, hostile or gone."""
        learned = [s for item in batch if (s := learned_suppression(item.value)) is not None]
        for suppression in await store.add_suppressions(self.pool, learned):
            log.info(
                "recipient suppressed for tenant %s: %s", suppression.tenant_id, suppression.reason
            )
        return Outbox(self.settings.topic_prefix)
