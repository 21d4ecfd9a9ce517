"""render on the real broker and database: templates merged, failures reported, lanes unblocked."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from libs.settings import Settings
from libs.templates import LocaleContent, add_version, put_template, upsert_template
from libs.tenants import Tenant
from libs.topics import EVENTS, lane_topic, public_topic
from schemas.common import Lane
from schemas.pipeline import AcceptedMessage, MessageSpec
from services.render.app import RenderService
from tests.records import message_spec
from tests.support import TopicTap, started
from tests.template_rows import add_layout

pytestmark = pytest.mark.integration

LANE = Lane.HIGH


@pytest.fixture(scope="module")
async def service(settings: Settings) -> AsyncIterator[RenderService]:
    async with started(RenderService(settings)) as running:
        yield running


@pytest.fixture
async def tap(settings: Settings, service: RenderService) -> AsyncIterator[TopicTap]:
    topics = (
        lane_topic("policy", LANE, settings.topic_prefix),
        public_topic(EVENTS, settings.topic_prefix),
    )
    async with TopicTap(settings, *topics) as watching:
        yield watching


async def publish(service: RenderService, settings: Settings, body: bytes, key: str) -> None:
    """Put a record on render.<LANE>, always partition 0 so later records queue behind it."""
    topic = lane_topic("render", LANE, settings.topic_prefix)
    await service.broker.publish(body, topic, key=key.encode(), partition=0)


async def send(service: RenderService, settings: Settings, spec: MessageSpec) -> None:
    await publish(
        service, settings, AcceptedMessage(message=spec).model_dump_json().encode(), spec.message_id
    )


def event_of(message_id: str, state: str) -> Any:
    return lambda v: v.get("subject") == message_id and v.get("type") == f"sendarix.message.{state}"


def rendered_of(message_id: str) -> Any:
    return lambda v: "content" in v and v["message"]["message_id"] == message_id


async def test_template_is_merged_and_handed_to_policy(
    service: RenderService,
    settings: Settings,
    pool: asyncpg.Pool,
    tenant: tuple[Tenant, str],
    tap: TopicTap,
) -> None:
    tenant_id = tenant[0].id
    name = f"welcome-{uuid.uuid4().hex[:8]}"
    await put_template(pool, tenant_id, name, "Old {{ name }}", None, "old")
    await put_template(pool, tenant_id, name, "Welcome {{ name }}", "<p>Hi {{ name }}</p>", None)
    spec = message_spec(tenant_id=tenant_id, lane=LANE, template=name, data={"name": "<Zoë>"})
    await send(service, settings, spec)

    [rendered] = await tap.wait_for(rendered_of(spec.message_id))
    assert rendered["message"] == spec.model_dump(mode="json")
    assert rendered["content"] == {
        "subject": "Welcome <Zoë>",
        "html": "<p>Hi &lt;Zoë&gt;</p>",
        "text": "Hi <Zoë>",
        "template_version": 2,
        "layout_version": None,
        "locale": "en",
    }
    [event] = await tap.wait_for(event_of(spec.message_id, "rendered"))
    assert event["data"]["template"] == name
    assert event["data"]["template_version"] == 2
    assert event["data"]["trace_id"] == spec.trace_id


async def test_render_merges_the_pinned_version_in_the_layout_version_it_pins(
    service: RenderService,
    settings: Settings,
    pool: asyncpg.Pool,
    tenant: tuple[Tenant, str],
    tap: TopicTap,
) -> None:
    tenant_id = tenant[0].id
    name = f"pinned-{uuid.uuid4().hex[:8]}"
    first = await add_layout(pool, tenant_id, name, "<main>{{ content }}</main>", None)
    later = await add_layout(pool, tenant_id, name, "<div>{{ content }}</div>", None)
    await upsert_template(pool, tenant_id, name)
    contents = {"pt": LocaleContent(subject="Oi {{ name }}", html="<p>Olá {{ name }}</p>")}
    pinned = await add_version(
        pool, tenant_id, name, contents, default_locale="pt", layout=(name, first.version)
    )
    spec = message_spec(
        tenant_id=tenant_id,
        lane=LANE,
        template=name,
        template_version=pinned.version,
        locale="pt-BR",
        data={"name": "Zoë"},
    )
    changed = {"pt": LocaleContent(subject="Changed", text="changed")}
    await add_version(pool, tenant_id, name, changed, layout=(name, later.version), activate=True)
    await send(service, settings, spec)

    [rendered] = await tap.wait_for(rendered_of(spec.message_id))
    content = rendered["content"]
    assert (content["subject"], content["html"]) == ("Oi Zoë", "<main><p>Olá Zoë</p></main>")
    assert (content["template_version"], content["layout_version"], content["locale"]) == (
        1,
        1,
        "pt",
    )
    [event] = await tap.wait_for(event_of(spec.message_id, "rendered"))
    assert (event["data"]["template_version"], event["data"]["layout_version"]) == (1, 1)
    assert event["data"]["locale"] == "pt"


async def test_render_failure_is_reported_and_the_next_record_flows(
    service: RenderService,
    settings: Settings,
    pool: asyncpg.Pool,
    tenant: tuple[Tenant, str],
    tap: TopicTap,
) -> None:
    tenant_id = tenant[0].id
    name = f"code-{uuid.uuid4().hex[:8]}"
    await put_template(pool, tenant_id, name, "Your code", None, "Code: {{ code }}")
    missing_data = message_spec(tenant_id=tenant_id, lane=LANE, template=name)
    missing_template = message_spec(tenant_id=tenant_id, lane=LANE, template=f"gone-{name}")
    inline = message_spec(tenant_id=tenant_id, lane=LANE, subject="{{ x }}", text="plain {{ x }}")
    for spec in (missing_data, missing_template, inline):
        await send(service, settings, spec)

    [failed] = await tap.wait_for(event_of(missing_data.message_id, "failed"))
    assert failed["data"]["problem"]["code"] == "render_failed"
    assert "'code' is undefined" in failed["data"]["problem"]["detail"]
    [gone] = await tap.wait_for(event_of(missing_template.message_id, "failed"))
    assert "not found" in gone["data"]["problem"]["detail"]
    [rendered] = await tap.wait_for(rendered_of(inline.message_id))
    assert rendered["content"]["subject"] == "{{ x }}"
    assert rendered["content"]["text"] == "plain {{ x }}"
    failed_ids = {missing_data.message_id, missing_template.message_id}
    assert not [
        v for v in tap.json_values() if "content" in v and v["message"]["message_id"] in failed_ids
    ]


async def test_undecodable_records_are_skipped_and_reported_when_identifiable(
    service: RenderService, settings: Settings, tap: TopicTap
) -> None:
    broken = message_spec(lane=LANE)
    envelope = {"schema_version": 99, "message": broken.model_dump(mode="json")}
    next_one = message_spec(lane=LANE, subject="after the poison", text="t")
    await publish(service, settings, b"\x00 not json", "junk")
    await publish(service, settings, json.dumps(envelope).encode(), broken.message_id)
    await send(service, settings, next_one)

    [failed] = await tap.wait_for(event_of(broken.message_id, "failed"))
    assert failed["data"]["problem"]["code"] == "undecodable_record"
    await tap.wait_for(rendered_of(next_one.message_id))
