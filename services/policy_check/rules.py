"""What a tenant's rules decide for one message: the first enabled rule that matches it.

A pure function of the message and its tenant's rule book, so policy-check asks the database
nothing per message. A ``force_lane`` rule asking for a lane the message does not earn, or a
``force_pool`` rule asking for the security pool, is ignored (it could not be saved either, but
a tenant's ceiling may have been lowered since): the message goes as if no rule matched.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from libs.rules import MessageFacts, Rule, RuleAction, RuleBook, pool_allowed, ruled_lane
from schemas.common import AppliedRule, Lane, Problem
from schemas.pipeline import MessageSpec, RenderedMessage, RoutingDirective

BLOCKED_BY_RULE = "blocked_by_rule"


@dataclass(frozen=True)
class RuleDecision:
    """What the rule that matched a message does with it."""

    rule: Rule
    applied: AppliedRule
    """How the message's events name the rule."""


@dataclass(frozen=True)
class Forward(RuleDecision):
    """Send the message on to the router, in ``lane``, with the rule's directive."""

    lane: Lane
    directive: RoutingDirective

    def applied_to(self, record: RenderedMessage) -> RenderedMessage:
        """``record`` as the router gets it: in the rule's lane, with the rule's directive."""
        spec = record.message.model_copy(update={"lane": self.lane})
        return record.model_copy(update={"message": spec, "directive": self.directive})


@dataclass(frozen=True)
class Stop(RuleDecision):
    """Block the message (``problem`` says by which rule)."""

    problem: Problem


@dataclass(frozen=True)
class Hold(RuleDecision):
    """Keep the message until ``until`` unless it is released or cancelled first."""

    until: datetime


def first_match(spec: MessageSpec, book: RuleBook) -> Rule | None:
    """The first rule of the book (enabled, in order) whose match fits ``spec``."""
    return book.first_match(MessageFacts.of(spec)) if book.rules else None


def decide(spec: MessageSpec, book: RuleBook, now: datetime) -> RuleDecision | None:
    """What the tenant's rules do with ``spec`` (None: no rule matches, or the one that does is
    ignored: the message goes on unchanged)."""
    rule = first_match(spec, book)
    if rule is None:
        return None
    if rule.action is RuleAction.BLOCK:
        detail = f"blocked by rule {rule.id}" + (
            f" ({rule.description})" if rule.description else ""
        )
        return Stop(rule, rule.applied(), Problem(code=BLOCKED_BY_RULE, detail=detail))
    if rule.action is RuleAction.HOLD:
        until = now + rule.hold
        return Hold(rule, rule.applied(hold_until=until), until)
    lane = spec.lane
    if rule.lane is not None:
        forced = ruled_lane(spec, rule.lane, book.ceiling)
        if forced is None:
            return None
        lane = forced
    if rule.pool is not None and not pool_allowed(rule.pool):
        return None
    applied = rule.applied()
    directive = RoutingDirective(rule=applied, route=rule.route, pool=rule.pool)
    return Forward(rule, applied, lane, directive)
