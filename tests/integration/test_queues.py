"""The queue view and the operator's controls on the real broker and database: lag and oldest
age of real topics, pauses and drains through the API by two tenants and an operator (with the
key that did each), retry now, cancel through the real cancellation path, and the CLI."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from libs.broker import ensure_topics, group_id
from libs.queue_views import current_stages, measure_stages
from libs.settings import Settings
from libs.tenants import Tenant, create_tenant
from libs.topics import DELIVER, DELIVER_SLOW, EVENTS, public_topic
from schemas.common import Lane
from schemas.events import MessageState
from services.ingest.app import IngestService
from tests.integration.test_api_keys import assert_problem, bearer, new_key
from tests.integration.test_cli import sendarix
from tests.integration.test_message_search import is_event, log_job
from tests.support import TopicTap, eventually, started
from tests.unit.sender.jobs import delivery_job

pytestmark = pytest.mark.integration

ADMIN = ["send", "read", "admin"]


async def new_tenant(pool: asyncpg.Pool, name: str) -> tuple[Tenant, str]:
    return await create_tenant(
        pool, f"{name}-{uuid.uuid4().hex[:6]}", ["example.test"], dev_mode=True
    )


@pytest.fixture(scope="module")
async def operator(pool: asyncpg.Pool) -> tuple[Tenant, str]:
    return await new_tenant(pool, "ops")


@pytest.fixture(scope="module")
async def service(settings: Settings, operator: tuple[Tenant, str]) -> AsyncIterator[IngestService]:
    """ingest, with the module's operator tenant (named by id)."""
    changed = {"http_port": 0, "operator_tenant": operator[0].id}
    async with started(IngestService(settings.model_copy(update=changed))) as running:
        yield running


@dataclass(frozen=True)
class Actor:
    """A tenant acting through an admin key of its own."""

    tenant_id: str
    key_id: str
    headers: dict[str, str]


@dataclass(frozen=True)
class Actors:
    """The fixture tenant, another tenant and the operator."""

    me: Actor
    them: Actor
    ops: Actor

    def headers(self) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
        return self.me.headers, self.them.headers, self.ops.headers


@pytest.fixture
async def actors(
    client: httpx.AsyncClient,
    pool: asyncpg.Pool,
    tenant: tuple[Tenant, str],
    operator: tuple[Tenant, str],
) -> Actors:
    other = await new_tenant(pool, "other")
    acting = [Actor(who[0].id, *await admin_key(client, who)) for who in (tenant, other, operator)]
    return Actors(*acting)


async def admin_key(
    client: httpx.AsyncClient, tenant: tuple[Tenant, str]
) -> tuple[str, dict[str, str]]:
    """A fresh admin key of ``tenant``: its id (the actor its changes are recorded with) and
    its headers."""
    view, secret = await new_key(client, tenant[1], scopes=ADMIN)
    return view["id"], bearer(secret)


async def waiting(
    pool: asyncpg.Pool,
    tenant_id: str,
    domain: str,
    *,
    site: str | None = None,
    lane: Lane = Lane.NORMAL,
    due_in: float = 3600,
    message_id: str | None = None,
) -> str:
    """An attempt waiting in ``retry_schedule``, for a topic no scheduler releases."""
    message_id = message_id or str(uuid.uuid4())
    await pool.execute(
        "INSERT INTO retry_schedule (message_id, attempt, lane, topic, due_at, job, tenant_id,"
        " domain, site, route, reason) VALUES ($1, 2, $2, 'nowhere',"
        " now() + make_interval(secs => $3), '{}', $4, $5, $6, 'default-relay', 'deferred')",
        uuid.UUID(message_id),
        lane.value,
        due_in,
        tenant_id,
        domain,
        site or f"mx.{domain}",
    )
    return message_id


async def due_at(pool: asyncpg.Pool, message_id: str) -> datetime:
    found: datetime = await pool.fetchval(
        "SELECT due_at FROM retry_schedule WHERE message_id = $1", uuid.UUID(message_id)
    )
    return found


def fresh_domain() -> str:
    return f"d{uuid.uuid4().hex[:8]}.test"


async def test_depth_and_oldest_age_are_measured_from_the_groups_commits(
    settings: Settings,
) -> None:
    """Topics of their own: records produced with known timestamps, a group that committed part."""
    own = settings.model_copy(update={"topic_prefix": f"q{uuid.uuid4().hex[:8]}."})
    await ensure_topics(own)
    normal = DELIVER.topic(Lane.NORMAL, own.topic_prefix)
    slow = DELIVER_SLOW.topic(Lane.BULK, own.topic_prefix)
    now_ms = int(time.time() * 1000)
    producer = AIOKafkaProducer(bootstrap_servers=own.kafka_bootstrap)
    await producer.start()
    try:
        for age in (60, 40, 20):
            await producer.send_and_wait(
                normal, b"x", partition=0, timestamp_ms=now_ms - age * 1000
            )
        for _ in range(3):
            await producer.send_and_wait(normal, b"x", partition=1, timestamp_ms=now_ms - 90_000)
        for _ in range(2):
            await producer.send_and_wait(normal, b"x", partition=2, timestamp_ms=now_ms - 5000)
        await producer.send_and_wait(slow, b"x", partition=3, timestamp_ms=now_ms - 7000)
    finally:
        await producer.stop()
    committer = AIOKafkaConsumer(
        bootstrap_servers=own.kafka_bootstrap,
        group_id=group_id("sender", Lane.NORMAL.value, own),
        enable_auto_commit=False,
    )
    await committer.start()
    try:
        partitions = [TopicPartition(normal, 0), TopicPartition(normal, 1)]
        committer.assign(partitions)
        await committer.commit({partitions[0]: 2, partitions[1]: 3})
    finally:
        await committer.stop()

    depths = {(d.stage, d.lane): d for d in await measure_stages(own)}
    deliver = depths["deliver", Lane.NORMAL]
    assert deliver.depth == 1 + 0 + 2  # one left of partition 0, partition 2 never committed
    assert 19 <= deliver.oldest_seconds < 30  # the record at partition 0's commit
    slowest = depths["deliver-slow", Lane.BULK]
    assert slowest.depth == 1 and 6 <= slowest.oldest_seconds < 15
    others = [
        d
        for key, d in depths.items()
        if key not in {("deliver", Lane.NORMAL), ("deliver-slow", Lane.BULK)}
    ]
    assert len(others) == 6 * 4 - 2 and all(d.depth == 0 and d.oldest_seconds == 0 for d in others)

    first = await current_stages(own)
    assert await current_stages(own) is first  # a second reader within the second asks nothing


async def test_controls_stay_within_a_tenant_and_record_the_key_that_made_them(
    client: httpx.AsyncClient,
    pool: asyncpg.Pool,
    tenant: tuple[Tenant, str],
    actors: Actors,
) -> None:
    mine, (me, them, ops) = actors.me.key_id, actors.headers()

    paused = await client.post(
        "/v1/queue-controls", json={"kind": "pause", "lane": "bulk", "reason": "x"}, headers=me
    )
    assert paused.status_code == 201, paused.text
    control = paused.json()
    assert control["scope"] == {
        "tenant_id": tenant[0].id,
        "lane": "bulk",
        "route": None,
        "site": None,
    }
    assert control["created_by"] == mine

    elsewhere = {"kind": "pause", "tenant_id": actors.them.tenant_id}
    assert_problem(
        await client.post("/v1/queue-controls", json=elsewhere, headers=me), 403, "operator_only"
    )
    drain = {"kind": "drain", "lane": "bulk"}
    assert_problem(
        await client.post("/v1/queue-controls", json=drain, headers=me), 422, "drain_needs_route"
    )
    everything = {"kind": "pause"}
    assert_problem(
        await client.post("/v1/queue-controls", json=everything, headers=ops), 422, "empty_scope"
    )
    read_only = bearer((await new_key(client, tenant[1]))[1])
    assert_problem(
        await client.post("/v1/queue-controls", json={"kind": "pause"}, headers=read_only),
        403,
        "forbidden",
    )

    site = f"mx.{fresh_domain()}"
    platform = await client.post(
        "/v1/queue-controls", json={"kind": "pause", "site": site}, headers=ops
    )
    assert platform.status_code == 201 and platform.json()["scope"]["tenant_id"] is None
    on_tenant = await client.post(
        "/v1/queue-controls",
        json={"kind": "drain", "tenant_id": tenant[0].id, "route": "relay-eu"},
        headers=ops,
    )
    assert on_tenant.status_code == 201, on_tenant.text

    def ids(response: httpx.Response) -> set[str]:
        return {c["id"] for c in response.json()["controls"]}

    seen = ids(await client.get("/v1/queue-controls", headers=me))
    assert {control["id"], platform.json()["id"], on_tenant.json()["id"]} <= seen
    theirs = ids(await client.get("/v1/queue-controls", headers=them))
    assert platform.json()["id"] in theirs and not theirs & {control["id"], on_tenant.json()["id"]}

    assert_problem(
        await client.delete(f"/v1/queue-controls/{control['id']}", headers=them), 404, "not_found"
    )
    platform_id = platform.json()["id"]
    assert_problem(
        await client.delete(f"/v1/queue-controls/{platform_id}", headers=me), 404, "not_found"
    )
    on_tenant_id = on_tenant.json()["id"]
    assert_problem(
        await client.delete(f"/v1/queue-controls/{on_tenant_id}", headers=me), 403, "operator_only"
    )
    resumed = await client.delete(f"/v1/queue-controls/{control['id']}", headers=me)
    assert resumed.status_code == 200 and resumed.json()["id"] == control["id"]
    undrained = await client.delete(f"/v1/queue-controls/{on_tenant_id}", headers=ops)
    assert undrained.status_code == 200 and undrained.json()["kind"] == "drain"
    assert (
        await client.delete(f"/v1/queue-controls/{platform_id}", headers=ops)
    ).status_code == 200
    assert not ids(await client.get("/v1/queue-controls", headers=me)) & seen

    events = (await client.get("/v1/queues/events", headers=me)).json()["events"]
    own = [
        (e["kind"], e["actor"]) for e in events if e["detail"].get("control_id") == control["id"]
    ]
    assert own == [("resumed", mine), ("paused", mine)]
    kinds = {
        (e["kind"], e["actor"]) for e in events if e["detail"].get("control_id") == on_tenant_id
    }
    assert kinds == {("drained", actors.ops.key_id), ("undrained", actors.ops.key_id)}
    assert any(e["scope"] == {"site": site} and e["tenant_id"] is None for e in events)
    others_see = (await client.get("/v1/queues/events", headers=them)).json()["events"]
    assert all(e["tenant_id"] in (None, actors.them.tenant_id) for e in others_see)
    everyone = (await client.get("/v1/queues/events?limit=1000", headers=ops)).json()["events"]
    assert {e["tenant_id"] for e in everyone} >= {tenant[0].id, None}


async def test_retry_now_moves_the_waiting_attempts_in_scope_but_not_those_paused(
    client: httpx.AsyncClient,
    pool: asyncpg.Pool,
    tenant: tuple[Tenant, str],
    actors: Actors,
) -> None:
    me, _, ops = actors.headers()
    domain, held_site = fresh_domain(), f"mx.{fresh_domain()}"
    moved = await waiting(pool, tenant[0].id, domain)
    paused = await waiting(pool, tenant[0].id, domain, site=held_site)
    elsewhere = await waiting(pool, tenant[0].id, fresh_domain())
    theirs = await waiting(pool, actors.them.tenant_id, domain)
    pause = await client.post(
        "/v1/queue-controls", json={"kind": "pause", "site": held_site}, headers=ops
    )
    before = datetime.now(UTC)

    refused = await client.post(
        "/v1/queue-actions/retry-now", json={"tenant_id": actors.them.tenant_id}, headers=me
    )
    assert_problem(refused, 403, "operator_only")
    retried = await client.post(
        "/v1/queue-actions/retry-now", json={"domain": domain.upper()}, headers=me
    )
    assert retried.status_code == 200 and retried.json() == {"count": 1}
    assert await due_at(pool, moved) <= datetime.now(UTC)
    for untouched in (paused, elsewhere, theirs):
        assert await due_at(pool, untouched) > before + timedelta(minutes=30)

    scheduled = await client.get("/v1/queues/scheduled?group_by=domain,site", headers=me)
    groups = [g for g in scheduled.json()["scheduled"] if g["domain"] == domain]
    assert sorted((g["site"], g["waiting"], g["reason"], g["tenant_id"]) for g in groups) == sorted(
        [(f"mx.{domain}", 1, "deferred", None), (held_site, 1, "deferred", None)]
    )
    everyone = await client.get("/v1/queues/scheduled?group_by=tenant,domain", headers=ops)
    tenants = {g["tenant_id"] for g in everyone.json()["scheduled"] if g["domain"] == domain}
    assert tenants == {tenant[0].id, actors.them.tenant_id}
    bad = await client.get("/v1/queues/scheduled?group_by=recipient", headers=me)
    assert_problem(bad, 422, "invalid_parameter")
    sites = (await client.get("/v1/queues/sites", headers=me)).json()["sites"]
    assert {s["site"]: s["waiting"] for s in sites if s["site"] == held_site} == {
        held_site: {"deferred": 1}
    }

    assert (
        await client.delete(f"/v1/queue-controls/{pause.json()['id']}", headers=ops)
    ).status_code == 200
    await pool.execute(
        "DELETE FROM retry_schedule WHERE message_id = ANY($1::uuid[])",
        [uuid.UUID(m) for m in (moved, paused, elsewhere, theirs)],
    )


@pytest.fixture
async def tap(settings: Settings) -> AsyncIterator[TopicTap]:
    async with TopicTap(settings, public_topic(EVENTS, settings.topic_prefix)) as tapped:
        yield tapped


async def test_cancel_cancels_waiting_messages_as_deleting_each_would(
    client: httpx.AsyncClient,
    pool: asyncpg.Pool,
    tenant: tuple[Tenant, str],
    actors: Actors,
    tap: TopicTap,
) -> None:
    mine, (me, them, ops) = actors.me.key_id, actors.headers()
    domain = fresh_domain()
    jobs = [
        delivery_job(f"user{i}@{domain}", tenant_id=tenant[0].id, lane=Lane.NORMAL)
        for i in range(2)
    ]
    for job in jobs:
        await log_job(pool, job, MessageState.DEFERRED)
        await waiting(pool, tenant[0].id, domain, message_id=job.message.message_id)
    ids = [job.message.message_id for job in jobs]

    not_theirs = await client.post(
        "/v1/queue-actions/cancel", json={"message_id": ids[0]}, headers=them
    )
    assert not_theirs.json() == {"cancelled": 0, "too_late": 0, "more": False}
    assert_problem(
        await client.post("/v1/queue-actions/cancel", json={}, headers=ops), 422, "empty_scope"
    )

    cancelled = await client.post("/v1/queue-actions/cancel", json={"domain": domain}, headers=me)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json() == {"cancelled": 2, "too_late": 0, "more": False}
    for message_id in ids:
        await tap.wait_for(is_event(message_id, "cancelled"))

    async def shown_cancelled(message_id: str) -> bool | None:
        view = await client.get(f"/v1/messages/{message_id}", headers=bearer(tenant[1]))
        return True if view.json()["status"] == "cancelled" else None

    for message_id in ids:
        await eventually(partial(shown_cancelled, message_id), timeout=15)
    left = await pool.fetchval(
        "SELECT count(*) FROM retry_schedule WHERE message_id = ANY($1::uuid[])",
        [uuid.UUID(m) for m in ids],
    )
    assert left == 0
    again = await client.delete(f"/v1/messages/{ids[0]}", headers=bearer(tenant[1]))
    assert again.status_code == 200 and again.json()["status"] == "cancelled"
    events = (await client.get("/v1/queues/events", headers=me)).json()["events"]
    assert [
        e["detail"]
        for e in events
        if e["kind"] == "cancelled" and e["scope"].get("domain") == domain
    ] == [{"count": 2, "too_late": 0}]
    assert {e["actor"] for e in events if e["scope"].get("domain") == domain} == {mine}


async def test_the_overview_shows_stages_and_the_controls_a_tenant_sees(
    client: httpx.AsyncClient, tenant: tuple[Tenant, str]
) -> None:
    _, me = await admin_key(client, tenant)
    paused = await client.post(
        "/v1/queue-controls", json={"kind": "pause", "lane": "high"}, headers=me
    )
    overview = await client.get("/v1/queues", headers=bearer(tenant[1]))
    assert overview.status_code == 200, overview.text
    body = overview.json()
    assert {(s["stage"], s["lane"]) for s in body["stages"]} == {
        (stage, lane.value)
        for stage in ("intake", "render", "policy", "route", "deliver", "deliver-slow", "retry")
        for lane in Lane
    }
    assert paused.json()["id"] in {c["id"] for c in body["controls"]}
    await client.delete(f"/v1/queue-controls/{paused.json()['id']}", headers=me)


async def test_the_cli_pauses_resumes_and_shows_the_queues(
    settings: Settings, pool: asyncpg.Pool, tenant: tuple[Tenant, str]
) -> None:
    tenant_id = tenant[0].id
    paused = await sendarix(
        settings,
        "queue",
        "pause",
        "--tenant",
        tenant_id,
        "--lane",
        "bulk",
        "--reason",
        "maintenance",
    )
    assert paused.exit_code == 0, paused.output
    control: dict[str, Any] = json.loads(paused.output)
    assert control["scope"]["tenant_id"] == tenant_id and control["created_by"] == "cli"
    drain = await sendarix(settings, "queue", "drain", "--tenant", tenant_id)
    assert drain.exit_code == 1 and "drain_needs_route" in drain.output
    wrong_kind = await sendarix(settings, "queue", "undrain", control["id"])
    assert wrong_kind.exit_code == 1
    shown = await sendarix(settings, "queue", "show", "--tenant", tenant_id)
    assert shown.exit_code == 0, shown.output
    assert control["id"] in {c["id"] for c in json.loads(shown.output)["controls"]}
    resumed = await sendarix(settings, "queue", "resume", control["id"])
    assert resumed.exit_code == 0 and json.loads(resumed.output)["id"] == control["id"]

    domain = fresh_domain()
    message_id = await waiting(pool, tenant_id, domain)
    retried = await sendarix(settings, "queue", "retry-now", "--domain", domain)
    assert json.loads(retried.output) == {"count": 1}
    scheduled = await sendarix(
        settings, "queue", "scheduled", "--tenant", tenant_id, "--group-by", "domain"
    )
    assert [g["waiting"] for g in json.loads(scheduled.output) if g["domain"] == domain] == [1]
    events = await sendarix(settings, "queue", "events", "--tenant", tenant_id)
    kinds = [
        e["kind"]
        for e in json.loads(events.output)
        if e["detail"].get("control_id") == control["id"]
    ]
    assert kinds == ["resumed", "paused"]
    await pool.execute("DELETE FROM retry_schedule WHERE message_id = $1", uuid.UUID(message_id))
