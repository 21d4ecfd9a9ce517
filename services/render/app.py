"""render's wiring: a subscriber per lane of ``render.<lane>``, publishing to ``policy.<lane>``."""

from __future__ import annotations

import asyncpg
from faststream.kafka import KafkaMessage

from libs.broker import make_broker, parse_record, publish_record, subscribe_lanes
from libs.cache import TtlCache
from libs.database import open_pool
from libs.events import emit, event_data
from libs.logs import current_message_id
from libs.poison import report_undecodable
from libs.settings import Settings
from libs.templates import Template, latest_template
from libs.topics import lane_topic
from schemas.common import Problem
from schemas.events import MessageState
from schemas.pipeline import AcceptedMessage, MessageSpec, RenderedMessage
from services.render.render import render

SERVICE = "render"
TEMPLATE_TTL_SECONDS = 10.0
"""How long a template version is reused before the store is asked again."""


class RenderService:
    """Merges each accepted message with its template and hands it to policy-check."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.broker = make_broker(SERVICE, settings)
        self._pool: asyncpg.Pool | None = None
        self._templates: TtlCache[tuple[str, str, str | None], Template] = TtlCache(
            TEMPLATE_TTL_SECONDS
        )
        subscribe_lanes(self.broker, settings, SERVICE, "render", self._handle)

    async def start(self) -> None:
        self._pool = await open_pool(self.settings)
        await self.broker.start()

    async def stop(self) -> None:
        await self.broker.stop()
        if self._pool is not None:
            await self._pool.close()

    @property
    def pool(self) -> asyncpg.Pool:
        assert self._pool is not None, "the service is not started"
        return self._pool

    async def _template(self, spec: MessageSpec, name: str) -> Template | None:
        return await self._templates.get(
            (spec.tenant_id, name, spec.locale),
            lambda: latest_template(self.pool, spec.tenant_id, name, spec.locale),
        )

    async def _handle(self, message: KafkaMessage) -> None:
        accepted = parse_record(AcceptedMessage, message)
        if accepted is None:
            await report_undecodable(self.broker, self.settings, SERVICE, message)
            return
        spec = accepted.message
        current_message_id.set(spec.message_id)
        template = await self._template(spec, spec.template) if spec.template else None
        content = render(spec, template)
        if isinstance(content, Problem):
            version = template.version if template else None
            failed = event_data(spec, SERVICE, problem=content, template_version=version)
            await emit(self.broker, self.settings, MessageState.FAILED, failed)
            return
        rendered = RenderedMessage(message=spec, content=content)
        policy_topic = lane_topic("policy", spec.lane, self.settings.topic_prefix)
        await publish_record(self.broker, policy_topic, rendered, spec.message_id)
        done = event_data(
            spec, SERVICE, template_version=content.template_version, subject=content.subject
        )
        await emit(self.broker, self.settings, MessageState.RENDERED, done)
