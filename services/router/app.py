"""router's wiring: a batch handler per lane of ``route.<lane>``, forwarding to ``deliver.<lane>``.

Each tenant's routes, pools and retry windows come from ``libs.routes.RouteCatalogue`` (kept in
memory a few seconds): routing asks the database nothing per message.

A message with a future ``send_at`` goes to ``retry.<lane>`` instead: the retry-scheduler
already holds deferred attempts until they are due, so scheduled sends need nothing new.
"""

from __future__ import annotations

from datetime import UTC, datetime

from libs.batch import Consumed, Outbox
from libs.events import event_data
from libs.routes import RouteCatalogue
from libs.service import PipelineService
from libs.settings import Settings
from libs.subscriptions import subscribe_stage
from libs.topics import DELIVER, RETRY, ROUTE
from schemas.events import MessageState
from schemas.pipeline import RenderedMessage
from services.router.decide import delivery_job, scheduled_send

SERVICE = "router"


class RouterService(PipelineService):
    """Turns each cleared message into its first delivery job."""

    name = SERVICE

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self._catalogue: RouteCatalogue | None = None
        subscribe_stage(self.broker, settings, SERVICE, ROUTE, self.route_batch)

    async def prepare(self) -> None:
        self._catalogue = RouteCatalogue(self.pool, self.settings)

    @property
    def catalogue(self) -> RouteCatalogue:
        """The tenants' routing books, once started."""
        if self._catalogue is None:
            raise RuntimeError(f"{self.name} is not started")
        return self._catalogue

    async def route_batch(self, batch: list[Consumed[RenderedMessage]]) -> Outbox:
        """The first delivery job of every message: now, or held until its ``send_at``."""
        outbox = Outbox(self.settings.topic_prefix)
        now = datetime.now(UTC)
        for item in batch:
            book = await self.catalogue.book(item.value.message.tenant_id)
            job = delivery_job(item.value, book, self.settings, now)
            deferral = scheduled_send(job, now)
            if deferral is None:
                outbox.forward(item, DELIVER, job)
            else:
                outbox.forward(item, RETRY, deferral)
            due = deferral.due_at if deferral is not None else None
            rule = item.value.directive.rule if item.value.directive is not None else None
            routed = event_data(
                job.message, SERVICE, route=job.route, next_attempt_at=due, rule=rule
            )
            outbox.emit(item, MessageState.ROUTED, routed)
        return outbox
