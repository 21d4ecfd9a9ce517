"""render's wiring: a batch handler per lane of ``render.<lane>``, on to ``policy.<lane>``."""

from __future__ import annotations

from libs.batch import Consumed, Outbox
from libs.events import event_data
from libs.service import PipelineService
from libs.settings import Settings
from libs.subscriptions import subscribe_stage
from libs.templates import LayoutVersion, TemplateCatalogue, TemplateVersion
from libs.topics import POLICY, RENDER
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
        subscribe_stage(self.broker, settings, SERVICE, RENDER, self.render_batch)

    async def prepare(self) -> None:
        self._templates = TemplateCatalogue(self.pool)

    async def _template(self, spec: MessageSpec) -> TemplateVersion | None:
        """Exactly the version ingest pinned (records from before pinning: the active one)."""
        assert self._templates is not None, "render is not started"
        if spec.template is None:
            return None
        if spec.template_version is None:
            return await self._templates.active(spec.tenant_id, spec.template)
        return await self._templates.version(spec.tenant_id, spec.template, spec.template_version)

    async def _layout(self, template: TemplateVersion | None) -> LayoutVersion | None:
        """The layout version ``template`` pins, if it pins one."""
        assert self._templates is not None, "render is not started"
        if template is None or template.layout is None:
            return None
        return await self._templates.layout(template.tenant_id, *template.layout)

    async def render_batch(self, batch: list[Consumed[AcceptedMessage]]) -> Outbox:
        """Render every message of the batch: on to policy-check, or ``failed`` with the reason."""
        outbox = Outbox(self.settings.topic_prefix)
        for item in batch:
            spec = item.value.message
            template = await self._template(spec)
            content = render(spec, template, await self._layout(template))
            if isinstance(content, Problem):
                failed = event_data(
                    spec,
                    SERVICE,
                    problem=content,
                    template_version=template.version if template else None,
                    layout_version=template.layout_version if template else None,
                )
                outbox.emit(item, MessageState.FAILED, failed)
                continue
            outbox.forward(item, POLICY, RenderedMessage(message=spec, content=content))
            done = event_data(
                spec,
                SERVICE,
                template_version=content.template_version,
                layout_version=content.layout_version,
                locale=content.locale,
                subject=content.subject,
            )
            outbox.emit(item, MessageState.RENDERED, done)
        return outbox
