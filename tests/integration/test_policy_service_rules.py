"""Customer rules in policy-check on the real broker and database: holding, blocking, forcing a
lane or a route, and held messages released, cancelled, expired and published again."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from libs import held, rules
from libs.cancellation import Cancellation, cancel_sending
from libs.held import HeldMessage, HeldSelection, HeldState
from libs.rules import RuleFields
from libs.settings import Settings
from libs.suppressions import Suppression, SuppressionReason, add_suppressions
from libs.tenants import Tenant
from libs.topics import EVENTS, ROUTE, public_topic
from schemas.common import Lane, Stream
from schemas.pipeline import RenderedMessage
from services.policy_check.app import PolicyCheckService
from tests.integration.test_policy_service import check, routed, service
from tests.records import rendered_message
from tests.support import TopicTap, eventually

pytestmark = pytest.mark.integration
__all__ = ["service"]  # the fixture, shared with the suppression tests

SERVICE = "test"


@pytest.fixture
async def tap(settings: Settings, service: PolicyCheckService) -> AsyncIterator[TopicTap]:
    topics = [ROUTE.topic(lane, settings.topic_prefix) for lane in (Lane.NORMAL, Lane.BULK)]
    async with TopicTap(settings, *topics, public_topic(EVENTS, settings.topic_prefix)) as tapped:
        yield tapped


async def add(pool: asyncpg.Pool, tenant_id: str, **fields: Any) -> rules.Rule:
    return await rules.add_rule(pool, tenant_id, RuleFields.model_validate(fields))


def event(message: RenderedMessage, state: str) -> Any:
    message_id = message.message.message_id
    return lambda v: v.get("subject") == message_id and v.get("type") == f"sendarix.message.{state}"


async def test_rules_hold_block_and_force(
    service: PolicyCheckService,
    settings: Settings,
    pool: asyncpg.Pool,
    tenant: tuple[Tenant, str],
    tap: TopicTap,
) -> None:
    tenant_id = tenant[0].id
    block = await add(pool, tenant_id, action="block", match={"tag": "stop"}, description="no")
    hold = await add(pool, tenant_id, action="hold", match={"recipient_domain": "example.org"})
    to_bulk = await add(
        pool, tenant_id, action="force_lane", lane="bulk", match={"recipient_domain": "example.net"}
    )
    rerouted = await add(
        pool, tenant_id, action="force_route", route="simulator", match={"tag": "sim"}
    )
    # written around the API's check (as if the tenant's ceiling was lowered since): ignored
    await pool.execute(
        "INSERT INTO rules (id, tenant_id, position, match, action, lane)"
        " VALUES ($1, $2, 1, $3, 'force_lane', 'critical')",
        uuid.uuid4(),
        uuid.UUID(tenant_id),
        {"tag": "sneaky"},
    )

    def message(recipient: str, **fields: Any) -> RenderedMessage:
        return rendered_message(
            tenant_id=tenant_id, lane=Lane.NORMAL, recipient=recipient, **fields
        )

    blocked = message("a@example.org", tags=["stop"])
    kept = message("b@example.org")
    lowered = message("c@example.net", category="notification")
    simulated = message("d@example.com", tags=["sim"])
    sneaky = message("e@example.com", tags=["sneaky"])
    untouched = message("f@example.com")
    for each in (blocked, kept, lowered, simulated, sneaky, untouched):
        await check(service, settings, each)

    [stopped] = await tap.wait_for(event(blocked, "blocked"))
    assert stopped["data"]["problem"]["code"] == "blocked_by_rule"
    assert stopped["data"]["rule"]["id"] == block.id
    [holding] = await tap.wait_for(event(kept, "held"))
    assert holding["data"]["rule"]["id"] == hold.id
    assert holding["data"]["rule"]["hold_until"] is not None
    [forced] = await tap.wait_for(routed(lowered))
    assert forced["message"]["lane"] == "bulk"
    assert forced["directive"]["rule"]["id"] == to_bulk.id
    [to_simulator] = await tap.wait_for(routed(simulated))
    assert to_simulator["directive"]["route"] == "simulator"
    assert to_simulator["directive"]["rule"]["id"] == rerouted.id
    [as_is] = await tap.wait_for(routed(sneaky))
    assert as_is == sneaky.model_dump(mode="json")
    [plain] = await tap.wait_for(routed(untouched))
    assert plain == untouched.model_dump(mode="json")
    lanes = {
        r.topic.rsplit(".", 1)[1] for r in tap.records if r.key == lowered.spec.message_id.encode()
    }
    assert "bulk" in lanes

    row = await pool.fetchrow(
        "SELECT state, rule_id, recipient_domain, record FROM held_messages WHERE message_id = $1",
        uuid.UUID(kept.message.message_id),
    )
    assert row is not None
    assert (row["state"], str(row["rule_id"]), row["recipient_domain"]) == (
        "held",
        hold.id,
        "example.org",
    )
    assert RenderedMessage.model_validate_json(row["record"]) == kept
    assert not [v for v in tap.json_values() if routed(kept)(v) or routed(blocked)(v)]


def held_message(tenant_id: str, rule_id: str, expires_at: datetime, **fields: Any) -> HeldMessage:
    record = rendered_message(tenant_id=tenant_id, lane=Lane.NORMAL, **fields)
    raw = record.model_dump_json().encode()
    return HeldMessage(record, raw, rule_id, expires_at, traceparent=None)


async def test_held_messages_are_released_once_cancelled_and_expired(
    service: PolicyCheckService,
    settings: Settings,
    pool: asyncpg.Pool,
    tenant: tuple[Tenant, str],
    tap: TopicTap,
) -> None:
    tenant_id, rule_id = tenant[0].id, str(uuid.uuid4())
    later, past = datetime.now(UTC) + timedelta(hours=1), datetime.now(UTC) - timedelta(seconds=1)
    to_release = [
        held_message(tenant_id, rule_id, later, recipient=f"r{i}@example.org") for i in range(3)
    ]
    elsewhere = held_message(tenant_id, rule_id, later, recipient="x@example.net")
    to_cancel = held_message(tenant_id, rule_id, later, recipient="y@example.net")
    expired = held_message(tenant_id, rule_id, past, recipient="z@example.net")
    everything = [*to_release, elsewhere, to_cancel, expired]
    await held.hold(pool, everything)
    await held.hold(pool, everything)  # a batch read again holds nothing twice

    send, prefix = service.broker.send_confirmed, settings.topic_prefix

    async def settle(tenant: str, to: HeldState, **selection: Any) -> int:
        chosen = HeldSelection.model_validate(selection)
        return await held.settle(pool, send, prefix, SERVICE, tenant, chosen, to)

    by_domain = {"recipient_domain": "example.org"}
    assert await settle(str(uuid.uuid4()), HeldState.RELEASED, **by_domain) == 0
    page, _ = await held.list_held(pool, tenant_id, held.HeldFilter(**by_domain))
    assert {p.recipient for p in page} == {f"r{i}@example.org" for i in range(3)}
    assert await settle(tenant_id, HeldState.RELEASED, **by_domain) == 3
    assert await settle(tenant_id, HeldState.RELEASED, **by_domain) == 0
    for message in to_release:
        [released] = await tap.wait_for(routed(message.record))
        assert released == message.record.model_dump(mode="json")
    ids = [to_cancel.record.message.message_id]
    assert await settle(tenant_id, HeldState.CANCELLED, message_ids=ids) == 1
    assert await settle(tenant_id, HeldState.RELEASED, message_ids=ids) == 0
    await tap.wait_for(event(to_cancel.record, "cancelled"))

    assert await held.sweep(pool, send, prefix, SERVICE) >= 1
    [failed] = await tap.wait_for(event(expired.record, "failed"))
    assert failed["data"]["problem"]["code"] == "hold_expired"
    assert failed["data"]["rule"]["id"] == rule_id

    # a release whose publication a crash interrupted is published again by the sweep
    await pool.execute(
        "UPDATE held_messages SET state = 'released', settled_at = now() - interval '2 minutes'"
        " WHERE message_id = $1",
        uuid.UUID(elsewhere.record.message.message_id),
    )
    assert await held.sweep(pool, send, prefix, SERVICE) >= 1
    await tap.wait_for(routed(elsewhere.record))
    left = await pool.fetchval(
        "SELECT count(*) FROM held_messages WHERE tenant_id = $1", uuid.UUID(tenant_id)
    )
    assert left == 0
    assert not [v for v in tap.json_values() if routed(to_cancel.record)(v)]
    assert not [v for v in tap.json_values() if routed(expired.record)(v)]


async def test_the_rule_cache_sees_a_new_rule_within_its_lifetime(
    service: PolicyCheckService,
    settings: Settings,
    pool: asyncpg.Pool,
    tenant: tuple[Tenant, str],
    tap: TopicTap,
) -> None:
    tenant_id = tenant[0].id
    first = rendered_message(tenant_id=tenant_id, lane=Lane.NORMAL, recipient="a@example.org")
    await check(service, settings, first)
    await tap.wait_for(routed(first))
    await add(pool, tenant_id, action="block", match={"recipient_domain": "example.org"})

    async def blocked_now() -> bool | None:
        probe = rendered_message(tenant_id=tenant_id, lane=Lane.NORMAL, recipient="b@example.org")
        await check(service, settings, probe)
        await eventually(lambda: _any(tap, routed(probe), event(probe, "blocked")), timeout=10)
        return True if [v for v in tap.json_values() if event(probe, "blocked")(v)] else None

    await eventually(blocked_now, timeout=15, every=0.5)


async def _any(tap: TopicTap, *predicates: Any) -> bool | None:
    return True if [v for v in tap.json_values() if any(p(v) for p in predicates)] else None


async def test_a_release_still_stops_at_a_suppression_and_a_cancelled_message_is_not_held(
    service: PolicyCheckService,
    settings: Settings,
    pool: asyncpg.Pool,
    tenant: tuple[Tenant, str],
    tap: TopicTap,
) -> None:
    tenant_id, rule_id = tenant[0].id, str(uuid.uuid4())
    later = datetime.now(UTC) + timedelta(hours=1)
    bounced_meanwhile = held_message(tenant_id, rule_id, later, recipient="gone@example.org")
    fine = held_message(tenant_id, rule_id, later, recipient="fine@example.org")
    cancelled_first = held_message(tenant_id, rule_id, later, recipient="c@example.org")
    assert await cancel_sending(pool, cancelled_first.record.message.message_id) is (
        Cancellation.CANCELLED
    )
    stored = await held.hold(pool, [bounced_meanwhile, fine, cancelled_first])
    assert stored == {cancelled_first.record.message.message_id}
    page, _ = await held.list_held(pool, tenant_id, held.HeldFilter())
    assert {p.recipient for p in page} == {"gone@example.org", "fine@example.org"}

    gone = Suppression(
        tenant_id, "gone@example.org", Stream.TRANSACTIONAL, SuppressionReason.HARD_BOUNCE
    )
    await add_suppressions(pool, [gone])
    everything = HeldSelection.model_validate({"recipient_domain": "example.org"})
    send, prefix = service.broker.send_confirmed, settings.topic_prefix
    assert (
        await held.settle(pool, send, prefix, SERVICE, tenant_id, everything, HeldState.RELEASED)
        == 2
    )

    await tap.wait_for(routed(fine.record))
    [suppressed] = await tap.wait_for(event(bounced_meanwhile.record, "suppressed"))
    assert suppressed["data"]["problem"]["code"] == "suppressed_hard_bounce"
    assert not [v for v in tap.json_values() if routed(bounced_meanwhile.record)(v)]
