"""Finding messages, their sent bytes, cancelling and retention, on the real broker and database.

Messages get into the log the way they do in production: their events go through the
recorder's ``record_all``, or through the sender and the retry-scheduler themselves.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.policy import SMTP
from typing import Any

import asyncpg
import httpx
import pytest

from deploy.simulator.server import MailboxSimulator
from libs.cancellation import Cancellation, cancel_sending
from libs.settings import Settings
from libs.tenants import Tenant, create_tenant, set_retention
from libs.topics import EVENTS, lane_topic, public_topic
from libs.verp import read_return_path
from schemas.common import Lane, Stream
from schemas.events import DeliveryEvent, EventData, MessageState, delivery_event
from schemas.pipeline import DeliveryJob, RetryRequest, Route, SmtpReply
from services.ingest import store
from services.ingest.app import IngestService
from services.ingest.recorder import record_all
from services.retry_scheduler.app import RetrySchedulerService
from services.retry_scheduler.store import schedule_attempts
from services.sender.app import SenderService
from services.sender.store import AttemptClaim, claim_attempts, compressed
from tests.support import TopicTap, eventually, started
from tests.unit.sender.jobs import delivery_job

pytestmark = pytest.mark.integration

SIMULATOR = "simulator.sendarix.test"


def auth(tenant: tuple[Tenant, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tenant[1]}"}


async def log_event(pool: asyncpg.Pool, state: MessageState, data: EventData, at: datetime) -> None:
    event = delivery_event(state, data, at)
    await record_all(pool, [(event, event.model_dump_json().encode())])


async def logged(
    pool: asyncpg.Pool,
    tenant_id: str,
    at: datetime,
    state: MessageState = MessageState.ACCEPTED,
    **fields: Any,
) -> str:
    """A message of the tenant accepted at ``at`` and now in ``state``; ``fields`` override
    its event data. Returns its id."""
    data = EventData(
        **{
            "message_id": str(uuid.uuid4()),
            "tenant_id": tenant_id,
            "recipient": "jane@example.org",
            "sender": "app@example.test",
            "stream": Stream.TRANSACTIONAL,
            "lane": Lane.CRITICAL,
            "category": "otp",
            "trace_id": uuid.uuid4().hex,
            "service": "ingest",
        }
        | fields
    )
    await log_event(pool, MessageState.ACCEPTED, data, at)
    if state is not MessageState.ACCEPTED:
        await log_event(pool, state, data.model_copy(update={"attempt": 1}), at)
    return data.message_id


async def found(client: httpx.AsyncClient, who: tuple[Tenant, str], **params: Any) -> list[str]:
    response = await client.get("/v1/messages", params=params, headers=auth(who))
    assert response.status_code == 200, response.text
    return [message["id"] for message in response.json()["messages"]]


async def test_each_filter_finds_its_messages_newest_first(
    client: httpx.AsyncClient, tenant: tuple[Tenant, str], pool: asyncpg.Pool
) -> None:
    tenant_id = tenant[0].id
    start = datetime.now(UTC) - timedelta(hours=1)
    at = [start + timedelta(minutes=minute) for minute in range(6)]
    plain = await logged(pool, tenant_id, at[0])
    bob = await logged(pool, tenant_id, at[1], recipient="Bob@Example.org", category="billing")
    tagged = await logged(pool, tenant_id, at[2], tags=["login", "web"], template="welcome")
    order = await logged(pool, tenant_id, at[3], metadata={"order_id": "123", "user": "7"})
    broadcast = await logged(pool, tenant_id, at[4], stream=Stream.BROADCAST, tags=["web"])
    delivered = await logged(pool, tenant_id, at[5], MessageState.DELIVERED)

    assert await found(client, tenant) == [delivered, broadcast, order, tagged, bob, plain]
    assert await found(client, tenant, recipient="bob@EXAMPLE.org") == [bob]
    assert await found(client, tenant, status="delivered") == [delivered]
    assert await found(client, tenant, status="accepted") == [broadcast, order, tagged, bob, plain]
    assert await found(client, tenant, stream="broadcast") == [broadcast]
    assert await found(client, tenant, category="billing") == [bob]
    assert await found(client, tenant, template="welcome") == [tagged]
    assert await found(client, tenant, tag="web") == [broadcast, tagged]
    assert await found(client, tenant, tag=["web", "login"]) == [tagged]
    assert await found(client, tenant, metadata="order_id:123") == [order]
    assert await found(client, tenant, metadata=["order_id:123", "user:8"]) == []
    assert await found(client, tenant, metadata="order_id:12") == []
    window = {"since": at[1].isoformat(), "until": at[3].isoformat()}
    assert await found(client, tenant, **window) == [tagged, bob]
    assert await found(client, tenant, recipient="nobody@example.org") == []

    response = await client.get("/v1/messages", params={"tag": "web"}, headers=auth(tenant))
    [summary, _] = response.json()["messages"]
    assert summary["from"] == "app@example.test" and summary["to"] == "jane@example.org"
    assert (summary["stream"], summary["tags"], summary["status"]) == (
        "broadcast",
        ["web"],
        "accepted",
    )
    assert response.json()["next_cursor"] is None


async def test_pages_have_no_gap_and_no_repeat_while_messages_arrive(
    client: httpx.AsyncClient, tenant: tuple[Tenant, str], pool: asyncpg.Pool
) -> None:
    tenant_id = tenant[0].id
    start = datetime.now(UTC) - timedelta(hours=2)
    same_moment = start + timedelta(minutes=5)  # ties on accepted_at are ordered by id
    older = [await logged(pool, tenant_id, start + timedelta(minutes=m)) for m in range(5)]
    tied = [await logged(pool, tenant_id, same_moment) for _ in range(3)]
    expected = sorted(tied, key=uuid.UUID, reverse=True) + older[::-1]

    seen: list[str] = []
    params: dict[str, Any] = {"limit": 3}
    while True:
        response = await client.get("/v1/messages", params=params, headers=auth(tenant))
        page = response.json()
        assert len(page["messages"]) <= 3
        seen += [message["id"] for message in page["messages"]]
        if not seen[3:]:  # a newer message arrives after the first page
            await logged(pool, tenant_id, datetime.now(UTC))
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
    assert seen == expected


async def test_a_tenant_finds_reads_and_cancels_only_its_own_messages(
    client: httpx.AsyncClient, tenant: tuple[Tenant, str], pool: asyncpg.Pool
) -> None:
    mine = await logged(pool, tenant[0].id, datetime.now(UTC), recipient="shared@example.org")
    stranger = await create_tenant(pool, "stranger", ["example.test"], dev_mode=True)
    await logged(pool, stranger[0].id, datetime.now(UTC), recipient="shared@example.org")

    assert await found(client, tenant, recipient="shared@example.org") == [mine]
    theirs = await found(client, stranger)
    assert mine not in theirs and len(theirs) == 1
    for method, path in [
        ("GET", f"/v1/messages/{mine}/raw"),
        ("DELETE", f"/v1/messages/{mine}"),
        ("DELETE", f"/v1/messages/{uuid.uuid4()}"),
        ("DELETE", "/v1/messages/not-a-uuid"),
        ("GET", "/v1/messages/not-a-uuid/raw"),
    ]:
        response = await client.request(method, path, headers=auth(stranger))
        assert (response.status_code, response.json()["code"]) == (404, "not_found"), path
    assert (await client.get("/v1/messages")).status_code == 401
    assert await cancel_sending(pool, mine) is Cancellation.CANCELLED  # it was never cancelled


async def test_a_bad_parameter_is_a_problem_naming_it(
    client: httpx.AsyncClient, tenant: tuple[Tenant, str]
) -> None:
    for params, name in [
        ({"limit": "500"}, "limit"),
        ({"since": "last week"}, "since"),
        ({"status": "lost"}, "status"),
        ({"cursor": "forged"}, "cursor"),
        ({"metadata": "order_id"}, "metadata"),
        ({"recipients": "a@b.test"}, "recipients"),
    ]:
        response = await client.get("/v1/messages", params=params, headers=auth(tenant))
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["code"] == "invalid_parameter"
        assert [error["pointer"] for error in problem["errors"]] == [name]
        assert name in problem["detail"]


async def test_search_is_documented_beside_the_message_routes(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    search = paths["/v1/messages"]["get"]
    assert {p["name"] for p in search["parameters"]} >= {"recipient", "metadata", "cursor"}
    assert "order_id:123" in search["description"]
    assert set(paths["/v1/messages/{message_id}"]) == {"get", "delete"}
    assert (
        "message/rfc822"
        in paths["/v1/messages/{message_id}/raw"]["get"]["responses"]["200"]["content"]
    )


# Cancel, raw bytes: with the sender, the retry-scheduler and the mailbox simulator.


@pytest.fixture
async def tap(settings: Settings) -> AsyncIterator[TopicTap]:
    async with TopicTap(settings, public_topic(EVENTS, settings.topic_prefix)) as watching:
        yield watching


def job_of(tenant: tuple[Tenant, str], route: Route, mailbox: str = "success") -> DeliveryJob:
    return delivery_job(f"{mailbox}@{SIMULATOR}", route=route, tenant_id=tenant[0].id)


def simulator_route(simulator: MailboxSimulator) -> Route:
    return Route(name="simulator", host="127.0.0.1", port=simulator.port, pool="test")


def is_event(message_id: str, state: str) -> Any:
    return lambda v: v.get("subject") == message_id and v.get("type") == f"sendarix.message.{state}"


async def log_job(pool: asyncpg.Pool, job: DeliveryJob, state: MessageState) -> None:
    """The job's message in the log, in ``state``."""
    spec = job.message
    data = EventData(
        message_id=spec.message_id,
        tenant_id=spec.tenant_id,
        recipient=spec.recipient.address,
        lane=spec.lane,
        trace_id=spec.trace_id,
        service="router",
    )
    await log_event(pool, MessageState.ACCEPTED, data, spec.accepted_at)
    await log_event(pool, state, data, datetime.now(UTC))


async def publish_job(sender: SenderService, settings: Settings, job: DeliveryJob) -> None:
    await sender.broker.publish(
        job.model_dump_json().encode(),
        lane_topic("deliver", job.message.lane, settings.topic_prefix),
        key=job.message.message_id.encode(),
    )


def received(simulator: MailboxSimulator, job: DeliveryJob) -> int:
    path = simulator.settings.simulator_log
    header = f"<{job.message.message_id}@example.test>"
    return path.read_text().count(header) if path.exists() else 0


async def test_the_raw_message_is_the_bytes_mailpit_received(
    client: httpx.AsyncClient,
    sender: SenderService,
    settings: Settings,
    tenant: tuple[Tenant, str],
    tap: TopicTap,
    pool: asyncpg.Pool,
) -> None:
    relay = Route(name="relay", host=settings.relay_host, port=settings.relay_port, pool="test")
    job = delivery_job("someone@example.test", route=relay, tenant_id=tenant[0].id)
    message_id = job.message.message_id
    await log_job(pool, job, MessageState.ROUTED)
    before = await client.get(f"/v1/messages/{message_id}/raw", headers=auth(tenant))
    assert (before.status_code, before.json()["code"]) == (404, "not_found")
    assert "not handed to SMTP" in before.json()["detail"]

    await publish_job(sender, settings, job)
    await tap.wait_for(is_event(message_id, "delivered"))
    response = await client.get(f"/v1/messages/{message_id}/raw", headers=auth(tenant))
    assert response.status_code == 200
    assert response.headers["content-type"] == "message/rfc822"

    async with httpx.AsyncClient(base_url=settings.mailpit_ui_url) as mailpit:
        search = {"query": f"message-id:{message_id}@example.test"}
        [summary] = (await mailpit.get("/api/v1/search", params=search)).json()["messages"]
        mailpit_raw = (await mailpit.get(f"/api/v1/message/{summary['ID']}/raw")).content
    # the receiving server adds its trace headers above the message, as RFC 5321 4.4 says
    assert mailpit_raw.endswith(response.content)
    added = message_from_bytes(mailpit_raw[: -len(response.content)], policy=SMTP)
    assert set(added.keys()) == {"Return-Path", "Received"}
    return_path = read_return_path(added["Return-Path"], settings.bounce_address)
    assert return_path is not None and return_path.message_id == message_id
    assert message_from_bytes(response.content, policy=SMTP)["Subject"] == "Your code"


async def test_a_scheduled_message_cancelled_is_never_sent(
    client: httpx.AsyncClient,
    service: IngestService,
    sender: SenderService,
    simulator: MailboxSimulator,
    settings: Settings,
    tenant: tuple[Tenant, str],
    tap: TopicTap,
    pool: asyncpg.Pool,
) -> None:
    job = job_of(tenant, simulator_route(simulator))
    message_id = job.message.message_id
    await log_job(pool, job, MessageState.DEFERRED)
    due = datetime.now(UTC) + timedelta(seconds=1)
    scheduled = RetryRequest(job=job, due_at=due, reply=SmtpReply(code=0, text="scheduled"))
    deliver_topic = lane_topic("deliver", job.message.lane, settings.topic_prefix)
    await schedule_attempts(pool, [(scheduled, deliver_topic, {})])

    response = await client.delete(f"/v1/messages/{message_id}", headers=auth(tenant))
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    [event] = await tap.wait_for(is_event(message_id, "cancelled"))
    assert DeliveryEvent.model_validate(event).data.tenant_id == tenant[0].id

    async with started(RetrySchedulerService(settings)):
        schedule = "SELECT count(*) FROM retry_schedule WHERE message_id = $1"
        await eventually(lambda: _none_left(pool, schedule, message_id), timeout=10, every=0.2)
    await publish_job(sender, settings, job)  # released before the cancel: the sender drops it
    control = job_of(tenant, simulator_route(simulator))
    await publish_job(sender, settings, control)
    await tap.wait_for(is_event(control.message.message_id, "delivered"))
    await asyncio.sleep(0.5)

    assert received(simulator, job) == 0
    types = {v["type"] for v in tap.json_values() if v.get("subject") == message_id}
    assert types == {"sendarix.message.cancelled"}
    view = await eventually(lambda: _cancelled_view(client, tenant, message_id), timeout=10)
    assert view["events"][-1]["type"] == "cancelled"
    again = await client.delete(f"/v1/messages/{message_id}", headers=auth(tenant))
    assert (again.status_code, again.json()["status"]) == (200, "cancelled")


async def _none_left(pool: asyncpg.Pool, sql: str, message_id: str) -> bool | None:
    return await pool.fetchval(sql, uuid.UUID(message_id)) == 0 or None


async def _cancelled_view(
    client: httpx.AsyncClient, tenant: tuple[Tenant, str], message_id: str
) -> dict[str, Any] | None:
    view: dict[str, Any] = (
        await client.get(f"/v1/messages/{message_id}", headers=auth(tenant))
    ).json()
    return view if view.get("status") == "cancelled" else None


async def test_a_cancel_and_a_claim_never_both_win(pool: asyncpg.Pool) -> None:
    """Each message's claim and cancel run at once (either one started first): exactly one of
    them wins, and the sent bytes are kept only for a won claim."""
    tenant_id = str(uuid.uuid4())

    async def race(cancel_first: bool) -> tuple[bool, bool]:
        message_id = str(uuid.uuid4())
        claim = AttemptClaim((message_id, 1), tenant_id, await compressed(b"x"))
        claiming = claim_attempts(pool, [claim], "racer")
        cancelling = cancel_sending(pool, message_id)
        if cancel_first:
            cancelled, claimed = await asyncio.gather(cancelling, claiming)
        else:
            claimed, cancelled = await asyncio.gather(claiming, cancelling)
        return claimed[claim], cancelled is Cancellation.CANCELLED

    results = await asyncio.gather(*(race(cancel_first=n % 2 == 0) for n in range(40)))
    assert all(won_claim != won_cancel for won_claim, won_cancel in results), results
    assert {won_claim for won_claim, _ in results} == {True, False}
    kept = await pool.fetchval(
        "SELECT count(*) FROM message_raw WHERE tenant_id = $1", uuid.UUID(tenant_id)
    )
    assert kept == sum(won_claim for won_claim, _ in results)


async def test_a_message_handed_to_smtp_or_done_cannot_be_cancelled(
    client: httpx.AsyncClient, tenant: tuple[Tenant, str], pool: asyncpg.Pool
) -> None:
    route = Route(name="simulator", host="127.0.0.1", port=25, pool="test")
    in_data, delivered_unrecorded, delivered = (job_of(tenant, route) for _ in range(3))
    for job in (in_data, delivered_unrecorded):
        await log_job(pool, job, MessageState.ROUTED)
    await log_job(pool, delivered, MessageState.DELIVERED)
    await pool.execute(
        "INSERT INTO delivery_attempts (message_id, attempt, state, outcome) VALUES"
        " ($1, 1, 'data', NULL), ($2, 1, 'done', 'delivered')",
        uuid.UUID(in_data.message.message_id),
        uuid.UUID(delivered_unrecorded.message.message_id),
    )
    for job in (in_data, delivered_unrecorded, delivered):
        path = f"/v1/messages/{job.message.message_id}"
        response = await client.delete(path, headers=auth(tenant))
        assert response.status_code == 409, response.text
        assert response.json()["code"] == "not_cancellable"


async def test_retention_deletes_only_what_is_older_than_the_tenants_days(
    pool: asyncpg.Pool, tenant: tuple[Tenant, str]
) -> None:
    short = tenant[0].id
    assert await set_retention(pool, short, 1) == 1
    default, _ = await create_tenant(pool, "keeps-30-days", ["example.test"], dev_mode=True)
    two_days_ago = datetime.now(UTC) - timedelta(days=2)
    old = await logged(pool, short, two_days_ago, MessageState.DELIVERED)
    recent = await logged(pool, short, datetime.now(UTC) - timedelta(hours=23))
    kept_longer = await logged(pool, default.id, two_days_ago)
    await pool.execute(
        "INSERT INTO message_raw (message_id, tenant_id, attempt, content) VALUES ($1, $2, 1, '')",
        uuid.UUID(old),
        uuid.UUID(short),
    )

    while await store.forget_old_messages(pool, limit=50) == 50:
        pass

    async def count(table: str, column: str, message_id: str) -> int:
        sql = f"SELECT count(*) FROM {table} WHERE {column} = $1"
        counted: int = await pool.fetchval(sql, uuid.UUID(message_id))
        return counted

    assert [await count(t, c, old) for t, c in TABLES] == [0, 0, 0]
    assert [await count(t, c, recent) for t, c in TABLES[:2]] == [1, 1]
    assert [await count(t, c, kept_longer) for t, c in TABLES[:2]] == [1, 1]


TABLES = [("messages", "id"), ("message_events", "message_id"), ("message_raw", "message_id")]
