"""Routes, IP pools, retry windows and scheduled sends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from libs.settings import Settings
from schemas.common import AppliedRule, Lane, Stream
from schemas.pipeline import MessageSpec, Pool, RenderedMessage, RouteName, RoutingDirective
from services.router.decide import (
    delivery_job,
    ip_pool,
    recipient_domain,
    retry_window,
    route_for,
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
)


def spec(**fields: Any) -> MessageSpec:
    return message_spec(**({"accepted_at": ACCEPTED} | fields))


def rendered(**fields: Any) -> RenderedMessage:
    return rendered_message(subject="s", **({"accepted_at": ACCEPTED} | fields))


@pytest.mark.parametrize(
    "recipient", ["success@simulator.sendarix.test", "bounce+x@Simulator.Sendarix.TEST"]
)
def test_simulator_domain_goes_to_the_simulator(recipient: str) -> None:
    route = route_for(spec(recipient=recipient), SETTINGS)
    assert (route.name, route.host, route.port) == ("simulator", "sim.internal", 2525)
    assert route.timeout_seconds == 7.5


@pytest.mark.parametrize(
    "recipient", ["user@example.test", "x@sub.simulator.sendarix.test", "simulator.sendarix.test"]
)
def test_every_other_domain_goes_to_the_default_relay(recipient: str) -> None:
    route = route_for(spec(recipient=recipient), SETTINGS)
    assert (route.name, route.host, route.port) == ("default-relay", "relay.internal", 1025)


def test_a_rule_s_directive_forces_the_route_and_the_pool() -> None:
    rule = AppliedRule(id="r-1", action="force_route")
    to_relay = RoutingDirective(rule=rule, route=RouteName.DEFAULT_RELAY)
    route = route_for(spec(recipient="success@simulator.sendarix.test"), SETTINGS, to_relay)
    assert (route.name, route.host, route.port) == ("default-relay", "relay.internal", 1025)
    to_simulator = RoutingDirective(rule=rule, route=RouteName.SIMULATOR, pool=Pool.BULK)
    route = route_for(spec(lane=Lane.CRITICAL), SETTINGS, to_simulator)
    assert (route.name, route.host, route.pool) == ("simulator", "sim.internal", "bulk")
    job = delivery_job(rendered().model_copy(update={"directive": to_simulator}), SETTINGS)
    assert job.route.name == "simulator"


def test_recipient_domain() -> None:
    assert recipient_domain("A@B.Example.TEST") == "b.example.test"
    assert recipient_domain("Bob <bob@Example.test>") == "example.test"


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
def test_ip_pool(lane: Lane, stream: Stream, pool: str) -> None:
    assert ip_pool(lane, stream) == pool
    assert route_for(spec(lane=lane, stream=stream), SETTINGS).pool == pool


@pytest.mark.parametrize(
    "category", ["otp", "login_verification", "password_reset", "security_alert"]
)
def test_short_lived_categories_retry_for_15_minutes(category: str) -> None:
    assert retry_window(category) == timedelta(minutes=15)


@pytest.mark.parametrize("category", ["billing", "notification", "receipt", None])
def test_other_categories_retry_for_a_day(category: str | None) -> None:
    assert retry_window(category) == timedelta(hours=24)


def test_delivery_job_is_attempt_one_within_its_window() -> None:
    job = delivery_job(rendered(category="otp"), SETTINGS)
    assert job.attempt == 1
    assert job.retry_until == ACCEPTED + timedelta(minutes=15)
    assert job.route.name == "default-relay"
    assert job.content.subject == "s"


def test_scheduled_message_window_opens_at_send_at() -> None:
    send_at = ACCEPTED + timedelta(days=2)
    job = delivery_job(rendered(category="billing", send_at=send_at), SETTINGS)
    assert job.retry_until == send_at + timedelta(hours=24)


def test_future_send_at_defers_the_job_until_then() -> None:
    send_at = ACCEPTED + timedelta(hours=1)
    job = delivery_job(rendered(send_at=send_at), SETTINGS)
    deferral = scheduled_send(job, now=ACCEPTED)
    assert deferral is not None
    assert deferral.job == job and deferral.due_at == send_at
    assert deferral.reply.code == 0 and deferral.reply.text == "scheduled for send_at"


def test_due_or_absent_send_at_goes_now() -> None:
    assert scheduled_send(delivery_job(rendered(), SETTINGS), now=ACCEPTED) is None
    past = delivery_job(rendered(send_at=ACCEPTED - timedelta(minutes=1)), SETTINGS)
    assert scheduled_send(past, now=ACCEPTED) is None
    assert past.retry_until == ACCEPTED + timedelta(hours=24)


def test_naive_send_at_is_read_as_utc() -> None:
    job = delivery_job(rendered(send_at=datetime(2026, 3, 1, 13, 0)), SETTINGS)
    deferral = scheduled_send(job, now=ACCEPTED)
    assert deferral is not None and deferral.due_at == ACCEPTED + timedelta(hours=1)
