"""Customer rules: what matches, which rule wins, and that no rule buys a lane or a pool."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from libs.rules import (
    DEFAULT_HOLD,
    MessageFacts,
    Rule,
    RuleAction,
    RuleBook,
    RuleFields,
    RuleMatch,
    domain_matches,
    refusal,
)
from libs.sendable import domain_of
from schemas.common import Lane, Stream
from schemas.pipeline import MessageSpec, Pool, RouteName
from services.policy_check.rules import BLOCKED_BY_RULE, Forward, Hold, Stop, decide, first_match
from tests.records import message_spec, rendered_message

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def rule(action: RuleAction = RuleAction.BLOCK, position: int = 10, **fields: Any) -> Rule:
    """A stored rule; ``match`` is given as a dict of criteria."""
    return Rule(
        id=str(uuid.uuid4()),
        tenant_id="t",
        position=position,
        created_at=NOW,
        updated_at=NOW,
        action=action,
        match=RuleMatch(**fields.pop("match", {})),
        **fields,
    )


def book(*rules: Rule, ceiling: Lane = Lane.HIGH) -> RuleBook:
    return RuleBook(ceiling=ceiling, rules=rules)


def spec(**fields: Any) -> MessageSpec:
    return message_spec(**({"recipient": "user@example.org"} | fields))


@pytest.mark.parametrize(
    ("pattern", "address", "matches"),
    [
        ("example.org", "a@example.org", True),
        ("example.org", "a@EXAMPLE.org", True),
        ("example.org", "a@mail.example.org", False),
        ("*.example.org", "a@mail.example.org", True),
        ("*.example.org", "a@example.org", False),
        ("*.example.org", "a@badexample.org", False),
        ("example.org", "a@example.org.evil", False),
    ],
)
def test_domain_criteria_are_exact_or_subdomains(pattern: str, address: str, matches: bool) -> None:
    stored = RuleMatch(recipient_domain=pattern).recipient_domain or ""
    assert domain_matches(stored, domain_of(address)) is matches


def test_domain_criteria_are_normalised() -> None:
    assert RuleMatch(recipient_domain=" Example.ORG. ").recipient_domain == "example.org"
    assert RuleMatch(sender_domain="*.Bücher.de").sender_domain == "*.xn--bcher-kva.de"
    with pytest.raises(ValidationError):
        RuleMatch(recipient_domain="not a domain")


def test_a_match_is_the_and_of_what_it_sets() -> None:
    message = MessageFacts.of(
        spec(
            stream=Stream.TRANSACTIONAL,
            category="billing",
            lane=Lane.HIGH,
            sender="app@shop.example.com",
            tags=["invoice", "eu"],
            metadata={"plan": "pro", "region": "eu"},
        )
    )
    everything = {
        "stream": "transactional",
        "category": "billing",
        "lane": "high",
        "sender_domain": "*.example.com",
        "recipient_domain": "example.org",
        "tag": "eu",
        "metadata": {"plan": "pro"},
    }
    assert RuleMatch().fits(message)
    assert RuleMatch(**everything).fits(message)
    for name, other in [
        ("stream", "broadcast"),
        ("category", "receipt"),
        ("lane", "normal"),
        ("sender_domain", "example.com"),
        ("recipient_domain", "example.net"),
        ("tag", "us"),
        ("metadata", {"plan": "pro", "region": "us"}),
    ]:
        assert not RuleMatch(**(everything | {name: other})).fits(message), name


def test_the_first_enabled_matching_rule_wins() -> None:
    off = rule(RuleAction.BLOCK, enabled=False)
    other = rule(RuleAction.BLOCK, match={"recipient_domain": "example.net"})
    allow = rule(RuleAction.ALLOW, match={"recipient_domain": "example.org"})
    later = rule(RuleAction.BLOCK)
    assert first_match(spec(), book(off, other, allow, later)) is allow
    assert decide(spec(), book(), NOW) is None


def test_allow_stops_evaluation_and_is_recorded() -> None:
    allow = rule(RuleAction.ALLOW, description="vip")
    decision = decide(spec(lane=Lane.NORMAL), book(allow, rule(RuleAction.BLOCK)), NOW)
    assert isinstance(decision, Forward)
    assert decision.lane is Lane.NORMAL
    assert decision.directive.rule.id == allow.id
    assert decision.directive.rule.description == "vip"
    assert decision.directive.route is None and decision.directive.pool is None


def test_block_names_the_rule() -> None:
    block = rule(RuleAction.BLOCK, description="no more to them")
    decision = decide(spec(), book(block), NOW)
    assert isinstance(decision, Stop)
    assert decision.problem.code == BLOCKED_BY_RULE
    assert block.id in decision.problem.detail and "no more to them" in decision.problem.detail
    assert decision.applied.id == block.id


def test_hold_lasts_its_rule_s_time_or_72_hours() -> None:
    default = decide(spec(), book(rule(RuleAction.HOLD)), NOW)
    assert isinstance(default, Hold)
    assert default.until == NOW + DEFAULT_HOLD == NOW + timedelta(hours=72)
    assert default.applied.hold_until == default.until
    short = decide(spec(), book(rule(RuleAction.HOLD, hold_seconds=600)), NOW)
    assert isinstance(short, Hold) and short.until == NOW + timedelta(minutes=10)


def test_force_route_and_pool_travel_in_the_directive() -> None:
    routed = decide(spec(), book(rule(RuleAction.FORCE_ROUTE, route=RouteName.SIMULATOR)), NOW)
    assert isinstance(routed, Forward) and routed.directive.route == RouteName.SIMULATOR
    pooled = decide(spec(), book(rule(RuleAction.FORCE_POOL, pool=Pool.BULK)), NOW)
    assert isinstance(pooled, Forward) and pooled.directive.pool == Pool.BULK


@pytest.mark.parametrize(
    ("category", "stream", "lane", "forced", "ceiling", "result"),
    [
        # lowering is always allowed
        ("otp", Stream.TRANSACTIONAL, Lane.CRITICAL, Lane.BULK, Lane.HIGH, Lane.BULK),
        ("notification", Stream.BROADCAST, Lane.BULK, Lane.BULK, Lane.HIGH, Lane.BULK),
        # raising up to the tenant's ceiling, as priority may
        ("notification", Stream.TRANSACTIONAL, Lane.NORMAL, Lane.HIGH, Lane.HIGH, Lane.HIGH),
        ("notification", Stream.TRANSACTIONAL, Lane.NORMAL, Lane.HIGH, Lane.NORMAL, None),
        # never broadcast mail, never into critical without a security category
        ("notification", Stream.BROADCAST, Lane.BULK, Lane.HIGH, Lane.HIGH, None),
        ("notification", Stream.TRANSACTIONAL, Lane.NORMAL, Lane.CRITICAL, Lane.HIGH, None),
        (None, Stream.TRANSACTIONAL, Lane.NORMAL, Lane.CRITICAL, Lane.HIGH, None),
        # an OTP the critical rate cap kept in high stays there
        ("otp", Stream.TRANSACTIONAL, Lane.HIGH, Lane.CRITICAL, Lane.HIGH, None),
        ("otp", Stream.TRANSACTIONAL, Lane.CRITICAL, Lane.CRITICAL, Lane.HIGH, Lane.CRITICAL),
    ],
)
def test_force_lane_never_buys_a_lane_the_message_does_not_earn(
    category: str | None,
    stream: Stream,
    lane: Lane,
    forced: Lane,
    ceiling: Lane,
    result: Lane | None,
) -> None:
    message = spec(category=category, stream=stream, lane=lane)
    force = rule(RuleAction.FORCE_LANE, lane=forced)
    decision = decide(message, book(force, ceiling=ceiling), NOW)
    if result is None:
        assert decision is None  # ignored: the message goes on as it is
    else:
        assert isinstance(decision, Forward) and decision.lane is result


def test_the_security_pool_is_never_forced() -> None:
    sneaky = rule(RuleAction.FORCE_POOL, pool=Pool.BULK).model_copy(update={"pool": Pool.SECURITY})
    assert decide(spec(lane=Lane.BULK), book(sneaky), NOW) is None


def fields(**values: Any) -> RuleFields:
    return RuleFields.model_validate(values)


@pytest.mark.parametrize(
    "values",
    [
        {"action": "force_lane"},
        {"action": "force_route"},
        {"action": "force_pool"},
        {"action": "block", "lane": "bulk"},
        {"action": "hold", "route": "simulator"},
        {"action": "force_route", "route": "Not a route name"},
        {"action": "hold", "hold_seconds": 10},
        {"action": "allow", "match": {"unknown": 1}},
        {"action": "nothing"},
    ],
)
def test_a_rule_has_the_parameter_of_its_action_only(values: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        fields(**values)


@pytest.mark.parametrize(
    ("values", "ceiling", "code"),
    [
        ({"action": "force_lane", "lane": "critical"}, Lane.HIGH, "lane_not_allowed"),
        (
            {"action": "force_lane", "lane": "critical", "match": {"category": "billing"}},
            Lane.HIGH,
            "lane_not_allowed",
        ),
        ({"action": "force_lane", "lane": "high"}, Lane.NORMAL, "lane_not_allowed"),
        (
            {"action": "force_lane", "lane": "high", "match": {"stream": "broadcast"}},
            Lane.HIGH,
            "lane_not_allowed",
        ),
        ({"action": "force_pool", "pool": "security"}, Lane.HIGH, "pool_not_allowed"),
    ],
)
def test_a_rule_asking_more_than_mail_earns_is_refused(
    values: dict[str, Any], ceiling: Lane, code: str
) -> None:
    refused = refusal(fields(**values), ceiling)
    assert refused is not None and refused.code == code


@pytest.mark.parametrize(
    "values",
    [
        {"action": "force_lane", "lane": "critical", "match": {"category": "otp"}},
        {"action": "force_lane", "lane": "high"},
        {"action": "force_lane", "lane": "bulk"},
        {"action": "force_pool", "pool": "bulk"},
        {"action": "hold", "match": {"recipient_domain": "example.org"}},
    ],
)
def test_a_rule_within_what_mail_earns_is_saved(values: dict[str, Any]) -> None:
    assert refusal(fields(**values), Lane.HIGH) is None


def test_a_forwarding_decision_puts_its_lane_and_directive_on_the_record() -> None:
    record = rendered_message(recipient="user@example.org", lane=Lane.NORMAL)
    decision = decide(record.message, book(rule(RuleAction.FORCE_LANE, lane=Lane.BULK)), NOW)
    assert isinstance(decision, Forward)
    forwarded = decision.applied_to(record)
    assert forwarded.message.lane is Lane.BULK
    assert forwarded.directive == decision.directive
    assert forwarded.content == record.content
    assert forwarded.message.model_copy(update={"lane": Lane.NORMAL}) == record.message
