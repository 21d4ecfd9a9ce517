"""Routing over a tenant's book: route and pool precedence, source addresses, fallbacks, retry
windows by lane, scheduled sends."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from libs.ip_pools import IpPool, PoolAddress, built_in_pools, choose_source
from libs.retry_windows import with_overrides
from libs.routes import RoutingBook, TenantRoute, built_in_routes
from libs.settings import Settings
from schemas.common import AppliedRule, Lane, Stream
from schemas.pipeline import MessageSpec, Pool, RenderedMessage, RouteName, RoutingDirective
from services.router.decide import (
    chosen_pool,
    delivery_job,
    ip_pool,
    recipient_domain,
    scheduled_send,
)
from tests.records import message_spec, rendered_message

ACCEPTED = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SETTINGS = Settings(
    relay_host="relay.internal",
    relay_port=1025,
    simulator_host="sim.internal",
    simulator_port=2525,
    simulator_domain="simulator.sendarix.test",
    smtp_timeout_seconds=7.5,
    mx_port=2526,
    ip_pools='{"security": [{"address": "127.0.0.2", "ehlo": "otp.example.test"}]}',
    critical_return_path_domain="otp-bounces.example.test",
)
TENANT = "0b0c5b5e-5d7c-4a0e-9a57-3c8c2f0d0001"
RULE = AppliedRule(id="r-1", action="force_route")


def route(name: str, **fields: Any) -> TenantRoute:
    values = {"kind": "relay", "host": f"{name}.example.test", "port": 587, "tls": "starttls"}
    return TenantRoute.model_validate(values | {"name": name, "timeout_seconds": 20} | fields)


WARM = IpPool(
    name="warm",
    addresses=[PoolAddress(address="203.0.113.7", ehlo="mta7.example.test")],
    return_path_domain="bounces.example.test",
)


def book(*routes: TenantRoute, windows: dict[Lane, int] | None = None) -> RoutingBook:
    return RoutingBook(
        routes=built_in_routes(SETTINGS) | {r.name: r for r in routes},
        pools=built_in_pools(SETTINGS) | {"warm": WARM},
        windows=with_overrides(windows or {}),
    )


def spec(**fields: Any) -> MessageSpec:
    return message_spec(**({"accepted_at": ACCEPTED, "tenant_id": TENANT} | fields))


def rendered(directive: RoutingDirective | None = None, **fields: Any) -> RenderedMessage:
    values: dict[str, Any] = {"accepted_at": ACCEPTED, "tenant_id": TENANT} | fields
    return rendered_message(subject="s", **values).model_copy(update={"directive": directive})


def job(the_book: RoutingBook, directive: RoutingDirective | None = None, **fields: Any) -> Any:
    return delivery_job(rendered(directive, **fields), the_book, SETTINGS, ACCEPTED)


@pytest.mark.parametrize(
    "recipient", ["success@simulator.sendarix.test", "bounce+x@Simulator.Sendarix.TEST"]
)
def test_simulator_domain_goes_to_the_simulator(recipient: str) -> None:
    routed = job(book(route("own", is_default=True)), recipient=recipient).route
    assert (routed.name, routed.host, routed.port) == ("simulator", "sim.internal", 2525)
    assert routed.timeout_seconds == 7.5


@pytest.mark.parametrize(
    "recipient", ["user@example.test", "x@sub.simulator.sendarix.test", "simulator.sendarix.test"]
)
def test_without_a_default_route_other_domains_go_to_the_built_in_relay(recipient: str) -> None:
    routed = job(book(route("own")), recipient=recipient).route
    assert (routed.name, routed.host, routed.port) == ("default-relay", "relay.internal", 1025)


def test_the_tenant_s_default_route_takes_its_other_mail() -> None:
    routed = job(book(route("own", is_default=True))).route
    assert (routed.name, routed.host, routed.port, routed.tls) == (
        "own",
        "own.example.test",
        587,
        "starttls",
    )
    assert routed.timeout_seconds == 20


def test_a_rule_s_route_wins_over_everything_and_a_vanished_one_is_passed_over() -> None:
    the_book = book(route("own", is_default=True), route("forced"))
    to_simulated = {"recipient": "success@simulator.sendarix.test"}
    forced = RoutingDirective(rule=RULE, route="forced")
    assert job(the_book, forced, **to_simulated).route.name == "forced"
    to_relay = RoutingDirective(rule=RULE, route=RouteName.DEFAULT_RELAY)
    assert job(the_book, to_relay, **to_simulated).route.name == "default-relay"
    gone = RoutingDirective(rule=RULE, route="removed-since")
    assert job(the_book, gone).route.name == "own"


def test_an_mx_route_has_no_host_and_the_mx_port() -> None:
    routed = job(
        book(route("direct", kind="mx", host="", port=None, tls="opportunistic", is_default=True))
    ).route
    assert (routed.kind, routed.host, routed.port, routed.tls) == ("mx", "", 2526, "opportunistic")


def test_a_tenant_s_sandbox_route_points_at_the_simulator() -> None:
    routed = job(book(route("sandbox", kind="sandbox", host="", port=None, is_default=True))).route
    assert (routed.name, routed.host, routed.port) == ("sandbox", "sim.internal", 2525)


def test_a_relay_s_login_is_referenced_never_carried() -> None:
    the_book = book(route("gmail", auth="plain", username="me@gmail.com", is_default=True))
    routed = job(the_book).route
    assert (routed.auth, routed.username) == ("plain", "me@gmail.com")
    assert routed.credentials == f"{TENANT}/gmail"
    assert "password" not in routed.model_dump_json()
    assert job(book(route("plain", is_default=True))).route.credentials is None


@pytest.mark.parametrize(
    ("lane", "stream", "pool"),
    [
        (Lane.CRITICAL, Stream.TRANSACTIONAL, "security"),
        (Lane.HIGH, Stream.TRANSACTIONAL, "security"),
        (Lane.NORMAL, Stream.TRANSACTIONAL, "transactional"),
        (Lane.BULK, Stream.TRANSACTIONAL, "bulk"),
        (Lane.CRITICAL, Stream.BROADCAST, "bulk"),
        (Lane.NORMAL, Stream.BROADCAST, "bulk"),
    ],
)
def test_without_a_rule_or_a_route_pool_the_lane_chooses(
    lane: Lane, stream: Stream, pool: str
) -> None:
    assert ip_pool(lane, stream) == pool
    assert job(book(), lane=lane, stream=stream).route.pool == pool


def test_pool_precedence_rule_then_security_then_route_then_lane() -> None:
    the_book = book(route("own", pool="warm", is_default=True))
    own = the_book.routes["own"]
    bulk = RoutingDirective(rule=RULE, pool=Pool.BULK)
    assert chosen_pool(spec(lane=Lane.CRITICAL), own, the_book, bulk) == "bulk"
    assert chosen_pool(spec(lane=Lane.CRITICAL), own, the_book, None) == "security"
    assert chosen_pool(spec(lane=Lane.NORMAL), own, the_book, None) == "warm"
    plain = the_book.routes[RouteName.DEFAULT_RELAY]
    assert chosen_pool(spec(lane=Lane.NORMAL), plain, the_book, None) == "transactional"
    sneaky = RoutingDirective(rule=RULE, pool=Pool.SECURITY)
    assert chosen_pool(spec(lane=Lane.BULK), plain, the_book, sneaky) == "bulk"
    unknown = RoutingDirective(rule=RULE, pool="removed-since")
    assert chosen_pool(spec(lane=Lane.NORMAL), own, the_book, unknown) == "warm"


def test_the_pool_gives_the_source_address_and_return_path_domain() -> None:
    the_book = book(route("own", pool="warm", is_default=True))
    normal = job(the_book, lane=Lane.NORMAL).route
    assert normal.source is not None and normal.source.address == "203.0.113.7"
    assert normal.return_path_domain == "bounces.example.test"
    critical = job(the_book, lane=Lane.CRITICAL, category="otp").route
    assert critical.pool == "security"
    assert critical.source is not None and critical.source.ehlo == "otp.example.test"
    assert critical.return_path_domain == "otp-bounces.example.test"
    assert job(the_book, lane=Lane.BULK).route.pool == "warm"  # the route's pool, over the lane's
    bulk = job(book(), lane=Lane.BULK).route
    assert (bulk.pool, bulk.source, bulk.return_path_domain) == ("bulk", None, None)


def test_a_redelivered_message_keeps_its_source_address() -> None:
    pool = IpPool(
        name="many",
        addresses=[
            PoolAddress(address=f"203.0.113.{n}", ehlo=f"mta{n}.example.test") for n in range(1, 9)
        ],
    )
    the_book = RoutingBook(
        routes=built_in_routes(SETTINGS) | {"own": route("own", pool="many", is_default=True)},
        pools=built_in_pools(SETTINGS) | {"many": pool},
        windows=with_overrides({}),
    )
    message = rendered(lane=Lane.NORMAL)
    first = delivery_job(message, the_book, SETTINGS, ACCEPTED).route.source
    later = delivery_job(message, the_book, SETTINGS, ACCEPTED + timedelta(hours=1)).route.source
    assert first == later == choose_source(pool, message.message.message_id, ACCEPTED)


def test_a_warming_address_gets_no_mail_before_its_warm_up() -> None:
    warming = PoolAddress(
        address="203.0.113.9",
        ehlo="mta9.example.test",
        warmup_start=date(2026, 4, 1),
        warmup_days=30,
    )
    pool = WARM.model_copy(update={"addresses": [*WARM.addresses, warming]})
    sources = {choose_source(pool, f"m-{n}", ACCEPTED) for n in range(200)}
    assert {s.address for s in sources if s is not None} == {"203.0.113.7"}


def test_fallbacks_follow_the_chain_three_at_most_and_never_loop() -> None:
    chain = book(
        route("a", fallback="b", is_default=True),
        route("b", fallback="c", pool="warm"),
        route("c", fallback="d"),
        route("d", fallback="default-relay"),
    )
    first = job(chain, lane=Lane.NORMAL)
    assert first.route.name == "a"
    assert [(f.name, f.host, f.pool) for f in first.fallbacks] == [
        ("b", "b.example.test", "warm"),
        ("c", "c.example.test", "transactional"),
        ("d", "d.example.test", "transactional"),
    ]
    loop = book(route("a", fallback="b", is_default=True), route("b", fallback="a"))
    assert [f.name for f in job(loop).fallbacks] == ["b"]
    assert [
        f.name for f in job(book(route("x", fallback="simulator", is_default=True))).fallbacks
    ] == ["simulator"]
    assert job(book()).fallbacks == []


@pytest.mark.parametrize(
    ("lane", "category", "window"),
    [
        (Lane.CRITICAL, "receipt", timedelta(minutes=15)),
        (Lane.CRITICAL, "otp", timedelta(minutes=15)),
        (Lane.HIGH, "password_reset", timedelta(hours=24)),
        (Lane.NORMAL, "otp", timedelta(hours=48)),
        (Lane.BULK, None, timedelta(hours=72)),
    ],
)
def test_the_retry_window_follows_the_lane_not_the_category(
    lane: Lane, category: str | None, window: timedelta
) -> None:
    assert job(book(), lane=lane, category=category).retry_until == ACCEPTED + window


def test_a_tenant_s_own_window_replaces_its_lane_s_default() -> None:
    the_book = book(windows={Lane.CRITICAL: 300})
    assert job(the_book, lane=Lane.CRITICAL).retry_until == ACCEPTED + timedelta(minutes=5)
    assert job(the_book, lane=Lane.HIGH).retry_until == ACCEPTED + timedelta(hours=24)


def test_recipient_domain() -> None:
    assert recipient_domain("A@B.Example.TEST") == "b.example.test"
    assert recipient_domain("Bob <bob@Example.test>") == "example.test"


def test_delivery_job_is_attempt_one_with_the_content() -> None:
    first = job(book())
    assert first.attempt == 1 and first.content.subject == "s"


def test_scheduled_message_window_opens_at_send_at() -> None:
    send_at = ACCEPTED + timedelta(days=2)
    scheduled = job(book(), lane=Lane.NORMAL, send_at=send_at)
    assert scheduled.retry_until == send_at + timedelta(hours=48)


def test_future_send_at_defers_the_job_until_then() -> None:
    send_at = ACCEPTED + timedelta(hours=1)
    deferred = job(book(), send_at=send_at)
    deferral = scheduled_send(deferred, now=ACCEPTED)
    assert deferral is not None
    assert deferral.job == deferred and deferral.due_at == send_at
    assert deferral.reply.code == 0 and deferral.reply.text == "scheduled for send_at"


def test_due_or_absent_send_at_goes_now() -> None:
    assert scheduled_send(job(book()), now=ACCEPTED) is None
    past = job(book(), lane=Lane.NORMAL, send_at=ACCEPTED - timedelta(minutes=1))
    assert scheduled_send(past, now=ACCEPTED) is None
    assert past.retry_until == ACCEPTED + timedelta(hours=48)


def test_naive_send_at_is_read_as_utc() -> None:
    deferred = job(book(), send_at=datetime(2026, 3, 1, 13, 0))
    deferral = scheduled_send(deferred, now=ACCEPTED)
    assert deferral is not None and deferral.due_at == ACCEPTED + timedelta(hours=1)
