"""render's wiring: a subscriber per lane of ``render.<lane>``, publishing to ``policy.<lane>``."""

from __future__ import annotations

import asyncio

from faststream.kafka import KafkaMessage

from libs.broker import publish_record, subscribe_lanes
from libs.events import emit, event_data
from libs.logs import current_message_id
from libs.service import PipelineService
from libs.settings import Settings
from libs.templates import Template, TemplateCatalogue
from libs.topics import lane_topic
from schemas.common import Problem
from schemas.events import MessageState
from schemas.pipeline import AcceptedMessage, MessageSpec, RenderedMessage
from services.render.render import render

SERVICE = "render"


class RenderService(PipelineService):
    """Merges each accepted message with its template and hands it to policy-check."""

    name = SERVICE

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self._templates: TemplateCatalogue | None = None
        subscribe_lanes(self.broker, settings, SERVICE, "render", self._handle)

    async def start(self) -> None:
        await super().start()
        self._templates = TemplateCatalogue(self.pool)

    async def _template(self, spec: MessageSpec, name: str) -> Template | None:
        assert self._templates is not None, "render is not started"
        return await self._templates.latest(spec.tenant_id, name, spec.locale)

    async def _handle(self, message: KafkaMessage) -> None:
        accepted = await self.decode(AcceptedMessage, message)
        if accepted is None:
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
        done = event_data(
            spec, SERVICE, template_version=content.template_version, subject=content.subject
        )
        await asyncio.gather(  # both acknowledged before the offset commits; order is free
            publish_record(self.broker, policy_topic, rendered, spec.message_id),
            emit(self.broker, self.settings, MessageState.RENDERED, done),
        )
