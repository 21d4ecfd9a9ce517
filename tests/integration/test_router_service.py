"""router on the real broker and database: simulator and relay routes, a tenant's own routes,
pools and retry windows, scheduled sends held by the retry lane."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from libs import ip_pools, retry_windows, routes
from libs.ip_pools import NewPool, PoolAddress
from libs.retry_windows import RetryWindowFields
from libs.routes import NewRoute
from libs.settings import Settings
from libs.topics import EVENTS, lane_topic, public_topic
from schemas.common import AppliedRule, Lane
from schemas.pipeline import (
    DeliveryJob,
    Pool,
    RenderedMessage,
    RetryRequest,
    RouteKind,
    RouteName,
    RoutingDirective,
)
from services.router.app import RouterService
from tests.records import rendered_message
from tests.support import TopicTap, started

pytestmark = pytest.mark.integration

LANE = Lane.CRITICAL


@pytest.fixture(scope="module")
async def service(settings: Settings) -> AsyncIterator[RouterService]:
    async with started(RouterService(settings)) as running:
        yield running


@pytest.fixture
async def tap(settings: Settings, service: RouterService) -> AsyncIterator[TopicTap]:
    topics = [lane_topic(stage, LANE, settings.topic_prefix) for stage in ("deliver", "retry")]
    async with TopicTap(settings, *topics, public_topic(EVENTS, settings.topic_prefix)) as watching:
        yield watching


async def route(service: RouterService, settings: Settings, message: RenderedMessage) -> None:
    await service.broker.publish(
        message.model_dump_json().encode(),
        lane_topic("route", LANE, settings.topic_prefix),
        key=message.message.message_id.encode(),
    )


def job_of(message: RenderedMessage) -> Any:
    return lambda v: "attempt" in v and v["message"]["message_id"] == message.message.message_id


def routed_event_of(message: RenderedMessage) -> Any:
    message_id = message.message.message_id
    return lambda v: v.get("subject") == message_id and v.get("type") == "sendarix.message.routed"


async def test_simulator_and_relay_routes(
    service: RouterService, settings: Settings, tap: TopicTap
) -> None:
    simulated = rendered_message(
        lane=LANE, category="otp", recipient="success@simulator.sendarix.test"
    )
    relayed = rendered_message(lane=LANE, category="otp", recipient="someone@example.test")
    await route(service, settings, simulated)
    await route(service, settings, relayed)

    [raw] = await tap.wait_for(job_of(simulated))
    job = DeliveryJob.model_validate(raw)
    assert job.attempt == 1 and job.message == simulated.message
    assert job.content == simulated.content
    assert (job.route.name, job.route.host, job.route.port, job.route.pool) == (
        "simulator",
        settings.simulator_host,
        settings.simulator_port,
        "security",
    )
    assert job.retry_until == simulated.message.accepted_at + timedelta(minutes=15)
    [relay] = await tap.wait_for(job_of(relayed))
    assert (relay["route"]["name"], relay["route"]["port"]) == (
        "default-relay",
        settings.relay_port,
    )
    [event] = await tap.wait_for(routed_event_of(simulated))
    assert event["data"]["route"] == raw["route"]


async def test_future_send_at_waits_on_the_retry_lane(
    service: RouterService, settings: Settings, tap: TopicTap
) -> None:
    send_at = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)
    scheduled = rendered_message(lane=LANE, send_at=send_at)
    now = rendered_message(lane=LANE)
    await route(service, settings, scheduled)
    await route(service, settings, now)

    [raw] = await tap.wait_for(lambda v: "due_at" in v and job_of(scheduled)(v["job"]))
    request = RetryRequest.model_validate(raw)
    assert request.due_at == send_at
    assert request.job.attempt == 1 and request.job.message == scheduled.message
    assert request.reply.code == 0 and request.reply.text == "scheduled for send_at"
    [event] = await tap.wait_for(routed_event_of(scheduled))
    assert event["data"]["next_attempt_at"] is not None
    await tap.wait_for(job_of(now))
    assert not [v for v in tap.json_values() if job_of(scheduled)(v)]


async def test_a_rule_s_directive_picks_the_route_and_pool_and_is_named_on_routed(
    service: RouterService, settings: Settings, tap: TopicTap
) -> None:
    rule = AppliedRule(id="rule-1", action="force_route", description="all to the relay")
    directive = RoutingDirective(rule=rule, route=RouteName.DEFAULT_RELAY, pool=Pool.BULK)
    ruled = rendered_message(
        lane=LANE, category="otp", recipient="success@simulator.sendarix.test"
    ).model_copy(update={"directive": directive})
    await route(service, settings, ruled)

    [raw] = await tap.wait_for(job_of(ruled))
    assert (raw["route"]["name"], raw["route"]["port"], raw["route"]["pool"]) == (
        "default-relay",
        settings.relay_port,
        "bulk",
    )
    [event] = await tap.wait_for(routed_event_of(ruled))
    assert event["data"]["rule"] == rule.model_dump(mode="json")


async def test_a_tenant_s_default_route_pool_fallback_and_window_reach_the_job(
    service: RouterService, settings: Settings, tap: TopicTap, pool: asyncpg.Pool
) -> None:
    tenant_id = str(uuid.uuid4())
    await ip_pools.create_pool(
        pool,
        tenant_id,
        NewPool(
            name="own-pool",
            addresses=[PoolAddress(address="127.0.0.9", ehlo="mta9.example.test")],
            return_path_domain="bounces.example.test",
        ),
    )
    await routes.create_route(
        pool, settings, tenant_id, NewRoute(name="backup", host="backup.example.test", port=2600)
    )
    await routes.create_route(
        pool,
        settings,
        tenant_id,
        NewRoute(
            name="direct", kind=RouteKind.MX, pool="own-pool", fallback="backup", is_default=True
        ),
    )
    await retry_windows.set_windows(pool, tenant_id, RetryWindowFields(critical=120))
    receipt = rendered_message(lane=LANE, category="receipt", tenant_id=tenant_id)
    await route(service, settings, receipt)

    [raw] = await tap.wait_for(job_of(receipt))
    job = DeliveryJob.model_validate(raw)
    assert (job.route.name, job.route.kind, job.route.host, job.route.port) == (
        "direct",
        RouteKind.MX,
        "",
        settings.mx_port,
    )
    assert job.route.pool == "security"  # critical mail keeps the security pool's reputation
    assert [(f.name, f.host, f.port) for f in job.fallbacks] == [
        ("backup", "backup.example.test", 2600)
    ]
    assert job.retry_until == receipt.message.accepted_at + timedelta(minutes=2)
