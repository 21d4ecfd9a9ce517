"""retry-scheduler on the real broker and database: holds deferred attempts, releases them due."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from aiokafka import ConsumerRecord
from opentelemetry import trace

from libs.settings import Settings
from libs.topics import lane_topic
from schemas.common import Lane
from schemas.pipeline import DeliveryJob, HoldReason, RetryRequest, SmtpReply
from services.retry_scheduler.app import RetrySchedulerService
from services.retry_scheduler.store import releasing_due_attempts, schedule_attempts
from tests.support import TopicTap, eventually, started
from tests.unit.sender.jobs import delivery_job

pytestmark = pytest.mark.integration

LANE = Lane.HIGH


@pytest.fixture
async def scheduler(settings: Settings) -> AsyncIterator[RetrySchedulerService]:
    async with started(RetrySchedulerService(settings)) as running:
        yield running


@pytest.fixture
async def delivered(settings: Settings) -> AsyncIterator[TopicTap]:
    async with TopicTap(settings, lane_topic("deliver", LANE, settings.topic_prefix)) as tap:
        yield tap


def retry_request(due_in: timedelta) -> RetryRequest:
    reply = SmtpReply(code=452, enhanced_status="4.2.2", text="Mailbox full")
    job = delivery_job(attempt=2, lane=LANE)
    return RetryRequest(job=job, due_at=datetime.now(UTC) + due_in, reply=reply)


async def defer(scheduler: RetrySchedulerService, settings: Settings, request: RetryRequest) -> str:
    """Publish ``request`` in a span of its own; return that span's trace id."""
    with trace.get_tracer("tests").start_as_current_span("deferral") as span:
        await scheduler.broker.publish(
            request.model_dump_json().encode(),
            lane_topic("retry", LANE, settings.topic_prefix),
            key=request.job.message.message_id.encode(),
        )
        return format(span.get_span_context().trace_id, "032x")


async def released(tap: TopicTap, job: DeliveryJob) -> ConsumerRecord[bytes, bytes]:
    """The record that brought ``job`` back to ``deliver.<lane>``."""
    await tap.wait_for(lambda v: v["message"]["message_id"] == job.message.message_id)
    [record] = [r for r in tap.records if r.key == job.message.message_id.encode()]
    return record


async def scheduled(pool: asyncpg.Pool, request: RetryRequest) -> asyncpg.Record | None:
    return await pool.fetchrow(
        "SELECT * FROM retry_schedule WHERE message_id = $1 AND attempt = $2",
        request.job.message.message_id,
        request.job.attempt,
    )


async def test_a_due_attempt_is_released_unchanged_in_its_trace(
    scheduler: RetrySchedulerService, settings: Settings, delivered: TopicTap, pool: asyncpg.Pool
) -> None:
    request = retry_request(due_in=timedelta(seconds=1))
    trace_id = await defer(scheduler, settings, request)

    row = await eventually(lambda: scheduled(pool, request))
    assert (row["lane"], row["due_at"]) == (LANE.value, request.due_at)
    record = await released(delivered, request.job)
    assert record.timestamp >= request.due_at.timestamp() * 1000  # not before it was due
    assert DeliveryJob.model_validate_json(record.value) == request.job
    traceparent = dict(record.headers)["traceparent"].decode()
    assert traceparent.split("-")[1] == trace_id
    assert await eventually(lambda: _gone(pool, request)) is True


async def _gone(pool: asyncpg.Pool, request: RetryRequest) -> bool | None:
    return True if await scheduled(pool, request) is None else None


async def test_a_repeated_request_is_held_once(
    scheduler: RetrySchedulerService, settings: Settings, delivered: TopicTap, pool: asyncpg.Pool
) -> None:
    request = retry_request(due_in=timedelta(seconds=1))
    later = request.model_copy(update={"job": request.job.model_copy(update={"attempt": 3})})
    for deferral in (request, request, later):  # one key: consumed in this order
        await defer(scheduler, settings, deferral)

    message_id = request.job.message.message_id
    attempts = await delivered.wait_for(lambda v: v["message"]["message_id"] == message_id, 2)
    assert sorted(attempt["attempt"] for attempt in attempts) == [2, 3]
    assert await eventually(lambda: _gone(pool, request)) is True


async def test_held_attempts_survive_a_restart(
    settings: Settings, delivered: TopicTap, pool: asyncpg.Pool
) -> None:
    first = RetrySchedulerService(settings)
    await first.start()
    request = retry_request(due_in=timedelta(seconds=2))
    await defer(first, settings, request)
    await eventually(lambda: scheduled(pool, request))
    await first.stop()
    assert await scheduled(pool, request) is not None

    second = RetrySchedulerService(settings)
    await second.start()
    try:
        record = await released(delivered, request.job)
        assert DeliveryJob.model_validate_json(record.value) == request.job
        assert await eventually(lambda: _gone(pool, request)) is True
    finally:
        await second.stop()


async def test_a_paused_hold_is_kept_until_its_window_closes(
    scheduler: RetrySchedulerService, settings: Settings, delivered: TopicTap, pool: asyncpg.Pool
) -> None:
    """A pause keeps a held attempt; once its window has closed it goes anyway, for the sender
    to fail it ``expired``. Another tenant's attempt is not held by the pause."""
    reply = SmtpReply(code=0, text="held (paused)")
    paused = delivery_job(attempt=1, lane=LANE, retry_for=timedelta(seconds=3))
    window = paused.retry_until - datetime.now(UTC)
    other = delivery_job(attempt=1, lane=LANE)
    control = uuid.uuid4()
    await pool.execute(
        "INSERT INTO queue_controls (id, kind, tenant_id, created_by)"
        " VALUES ($1, 'pause', $2, 'test')",
        control,
        paused.message.tenant_id,
    )
    try:
        now = datetime.now(UTC)
        for job in (paused, other):
            request = RetryRequest(job=job, due_at=now, reply=reply, hold=HoldReason.PAUSED)
            await defer(scheduler, settings, request)
        await released(delivered, other)
        row = await scheduled(pool, RetryRequest(job=paused, due_at=now, reply=reply))
        assert row is not None and (row["reason"], row["tenant_id"]) == (
            "paused",
            paused.message.tenant_id,
        )
        record = await released(delivered, paused)
        assert record.timestamp >= paused.retry_until.timestamp() * 1000
        assert window.total_seconds() > 1  # it did wait for the window
    finally:
        await pool.execute("DELETE FROM queue_controls WHERE id = $1", control)


async def test_an_attempt_held_again_while_its_release_is_open_is_kept(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """A shaped hold keeps its attempt number: the sender can hold the same attempt again
    before the release that sent it has committed. That hold must survive the release."""
    now = datetime.now(UTC)
    topic = lane_topic("deliver", LANE, settings.topic_prefix)
    first = retry_request(due_in=timedelta(0)).model_copy(update={"hold": HoldReason.SHAPED})
    again = first.model_copy(update={"due_at": now + timedelta(hours=1)})
    await schedule_attempts(pool, [(first, topic, {})])

    async with releasing_due_attempts(pool, [topic], now + timedelta(seconds=1), 500) as due:
        assert [attempt.message_id for attempt in due] == [first.job.message.message_id]
        held_again = asyncio.create_task(schedule_attempts(pool, [(again, topic, {})]))
        await asyncio.sleep(0.3)  # the sender's hold arrives before the release commits

    await held_again
    row = await scheduled(pool, again)
    assert row is not None and row["due_at"] == again.due_at
    await pool.execute("DELETE FROM retry_schedule WHERE message_id = $1", row["message_id"])
