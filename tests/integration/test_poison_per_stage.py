"""Every consumer of the pipeline survives an unexpected exception: the record that causes it is
parked with its reason, its message is reported ``failed``, and the next record is handled.

Each case starts one service on the real broker and database, makes its decision raise a type
of exception nobody planned for on one message, and sends that message then a healthy one.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from libs.events import event_data
from libs.poison import HANDLER_FAILED
from libs.service import Service
from libs.settings import Settings
from libs.topics import (
    DELIVER,
    EVENTS,
    EVENTS_DLQ,
    POLICY,
    RENDER,
    RETRY,
    ROUTE,
    Stage,
    public_topic,
)
from schemas.common import Lane
from schemas.events import MessageState, delivery_event
from schemas.pipeline import (
    AcceptedMessage,
    MessageSpec,
    PipelineRecord,
    RenderedContent,
    RenderedMessage,
    RetryRequest,
    Route,
    SmtpReply,
)
from services.ingest.app import IngestService
from services.policy_check.app import PolicyCheckService
from services.render.app import RenderService
from services.retry_scheduler.app import RetrySchedulerService
from services.router.app import RouterService
from services.sender.app import SenderService
from tests.records import message_spec
from tests.support import TopicTap, eventually, started
from tests.unit.sender.jobs import delivery_job

pytestmark = pytest.mark.integration

LANE = Lane.NORMAL


class Unplanned(Exception):
    """An exception type no handler knows about."""


def raising_for(poison: str, target: Callable[..., Any]) -> Callable[..., Any]:
    """``target``, except that it raises ``Unplanned`` when any argument mentions ``poison``."""

    def patched(*args: Any, **kwargs: Any) -> Any:
        if poison in repr(args) + repr(kwargs):
            raise Unplanned(f"nobody planned for {poison}")
        return target(*args, **kwargs)

    return patched


def raising_for_async(poison: str, target: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
    async def patched(*args: Any, **kwargs: Any) -> Any:
        if poison in repr(args) + repr(kwargs):
            raise Unplanned(f"nobody planned for {poison}")
        return await target(*args, **kwargs)

    return patched


@dataclass(frozen=True)
class StageCase:
    """One consumer: how to start it, what to break, what to feed it, what shows it went on."""

    service: Callable[[Settings], Service]
    stage: Stage[Any]
    patch: str
    record: Callable[[MessageSpec, Settings], PipelineRecord]
    went_on: Callable[[MessageSpec], Callable[[Any], bool]]
    asynchronous: bool = False


def event_of(state: MessageState) -> Callable[[MessageSpec], Callable[[Any], bool]]:
    return lambda spec: (
        lambda v: v.get("subject") == spec.message_id and v.get("type") == (state.event_type)
    )


def rendered(spec: MessageSpec, settings: Settings) -> RenderedMessage:
    return RenderedMessage(message=spec, content=RenderedContent(subject="s", text="t"))


CASES = {
    "render": StageCase(
        RenderService,
        RENDER,
        "services.render.app.render",
        lambda spec, _: AcceptedMessage(message=spec),
        event_of(MessageState.RENDERED),
    ),
    "policy-check": StageCase(
        PolicyCheckService,
        POLICY,
        "services.policy_check.view.verdict",
        rendered,
        lambda spec: lambda v: v.get("message", {}).get("message_id") == spec.message_id,
    ),
    "router": StageCase(
        RouterService,
        ROUTE,
        "services.router.app.delivery_job",
        rendered,
        event_of(MessageState.ROUTED),
    ),
    "sender": StageCase(
        SenderService,
        DELIVER,
        "services.sender.app.build_message",
        lambda spec, settings: delivery_job(
            route=Route(name="mailpit", host="127.0.0.1", port=settings.relay_port, pool="test"),
            **spec.model_dump(),
        ),
        event_of(MessageState.DELIVERED),
    ),
    "retry-scheduler": StageCase(
        RetrySchedulerService,
        RETRY,
        "services.retry_scheduler.app.schedule_attempts",
        lambda spec, _: RetryRequest(
            job=delivery_job(**spec.model_dump()),
            due_at=datetime.now(UTC) + timedelta(hours=1),
            reply=SmtpReply(code=451, text="later"),
        ),
        lambda spec: lambda v: False,  # it publishes nothing; checked in the database below
        asynchronous=True,
    ),
}


@pytest.mark.parametrize("name", CASES)
async def test_an_unplanned_exception_parks_one_record_and_the_next_one_flows(
    name: str, settings: Settings, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    case = CASES[name]
    poison, healthy = (message_spec(lane=LANE, tenant_id=str(uuid.uuid4())) for _ in range(2))
    module, attribute = case.patch.rsplit(".", 1)
    original = getattr(__import__(module, fromlist=[attribute]), attribute)
    wrap = raising_for_async if case.asynchronous else raising_for
    monkeypatch.setattr(case.patch, wrap(poison.message_id, original))
    prefix = settings.topic_prefix
    watched = [case.stage.dead_letters(prefix), public_topic(EVENTS, prefix)]
    watched += [stage.topic(LANE, prefix) for stage in (POLICY, ROUTE, DELIVER)]
    async with TopicTap(settings, *watched) as tap, started(case.service(settings)) as service:
        for spec in (poison, healthy):
            await service.broker.publish(  # type: ignore[attr-defined]
                case.record(spec, settings).model_dump_json().encode(),
                case.stage.topic(LANE, prefix),
                key=spec.message_id.encode(),
                partition=0,
            )
        [(_, why)] = await tap.wait_for_parked(lambda why: why.message_id == poison.message_id)
        assert (why.reason, why.exception, why.service) == (HANDLER_FAILED, "Unplanned", name)
        [failed] = await tap.wait_for(event_of(MessageState.FAILED)(poison))
        assert failed["data"]["problem"]["code"] == HANDLER_FAILED
        if name == "retry-scheduler":
            await eventually(lambda: _scheduled(pool, healthy.message_id))
        else:
            await tap.wait_for(case.went_on(healthy))


async def _scheduled(pool: asyncpg.Pool, message_id: str) -> bool | None:
    found = await pool.fetchval(
        "SELECT count(*) FROM retry_schedule WHERE message_id = $1", uuid.UUID(message_id)
    )
    if found:
        await pool.execute(
            "DELETE FROM retry_schedule WHERE message_id = $1", uuid.UUID(message_id)
        )
    return True if found else None


async def test_the_recorder_parks_an_event_it_cannot_store_and_records_the_next(
    settings: Settings, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    poison, healthy = message_spec(lane=LANE), message_spec(lane=LANE)
    import services.ingest.recorder as recorder

    monkeypatch.setattr(recorder, "storable", raising_for(poison.message_id, recorder.storable))
    prefix = settings.topic_prefix
    ingest = IngestService(settings.model_copy(update={"http_port": 0}))
    async with TopicTap(settings, public_topic(EVENTS_DLQ, prefix)) as tap, started(ingest):
        for spec in (poison, healthy):
            event = delivery_event(
                MessageState.ACCEPTED, event_data(spec, "ingest"), datetime.now(UTC)
            )
            await ingest.broker.publish(
                event.model_dump_json().encode(),
                public_topic(EVENTS, prefix),
                key=spec.message_id.encode(),
                partition=0,
            )
        [(_, why)] = await tap.wait_for_parked(lambda why: why.message_id == poison.message_id)
        assert (why.reason, why.role) == (HANDLER_FAILED, "recorder")

        async def recorded() -> bool | None:
            status = await pool.fetchval(
                "SELECT status FROM messages WHERE id = $1", uuid.UUID(healthy.message_id)
            )
            return True if status == "accepted" else None

        await eventually(recorded)
