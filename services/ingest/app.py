"""ingest's wiring: the HTTP gateway, the SMTP submission door, the intake of ``send.requests``
and the event recorder."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from functools import partial

import asyncpg

from libs import held
from libs.batch import Consumed, Outbox
from libs.broker import make_broker
from libs.database import DATABASE_DOWN, open_pool
from libs.domain_verification import verify_due_domains
from libs.http_serving import EmbeddedServer, start_server
from libs.settings import Settings
from libs.subscriptions import subscribe_events
from libs.tracing import setup_tracing
from schemas.events import DeliveryEvent
from services.ingest import store
from services.ingest.accept import SERVICE, Ingest
from services.ingest.api import build_api, metrics
from services.ingest.intake import Parsed, subscribe_intake, take_in
from services.ingest.recorder import record_all
from services.ingest.smtp_door import SmtpDoor

log = logging.getLogger(__name__)

KEY_SWEEP_SECONDS = 3600.0
"""How often expired idempotency keys are deleted."""
DOMAIN_RECHECK_SECONDS = 60.0
"""How often ingest looks for sending domains due a DNS check (``libs.domain_verification``)."""
RETENTION_SWEEP_SECONDS = 600.0
"""How often messages past their tenant's retention are deleted (batch after batch)."""
HELD_SWEEP_SECONDS = 30.0
"""How often held messages past their hold are expired (``libs.held.sweep``): one expires at
most this long after its time."""


class IngestService:
    """Takes send requests in through HTTP, SMTP and the topic; keeps the message log."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.broker = make_broker(SERVICE, settings)
        self.api = build_api(setup_tracing(SERVICE, settings))
        if settings.metrics_public:
            self.api.add_api_route("/metrics", metrics, include_in_schema=False)
        self._ingest: Ingest | None = None
        self._server: EmbeddedServer | None = None
        self._smtp: SmtpDoor | None = None
        self._sweeping: list[asyncio.Task[None]] = []
        subscribe_intake(self.broker, settings, self._take_in)
        subscribe_events(self.broker, settings, SERVICE, "recorder", self._record)

    @property
    def ingest(self) -> Ingest:
        """What the handlers share, once started."""
        if self._ingest is None:
            raise RuntimeError("ingest is not started")
        return self._ingest

    async def start(self) -> None:
        pool = await open_pool(self.settings)
        self._ingest = Ingest.on(self.settings, self.broker, pool)
        await self.broker.start()
        self.api.state.ingest = self._ingest
        sweeps: list[tuple[str, float, Callable[[asyncpg.Pool], Awaitable[int]]]] = [
            ("expired idempotency keys deleted", KEY_SWEEP_SECONDS, store.forget_expired_keys),
            ("messages past retention deleted", RETENTION_SWEEP_SECONDS, _forget_old),
            (
                "sending domains checked over DNS",
                DOMAIN_RECHECK_SECONDS,
                partial(verify_due_domains, settings=self.settings),
            ),
            (
                "held messages expired or published again",
                HELD_SWEEP_SECONDS,
                partial(
                    held.sweep,
                    send=self.broker.send_confirmed,
                    prefix=self.settings.topic_prefix,
                    service=SERVICE,
                ),
            ),
        ]
        self._sweeping = [asyncio.create_task(_sweep(pool, *sweep)) for sweep in sweeps]
        self._smtp = SmtpDoor(self._ingest)
        await self._smtp.start()  # before the gateway: ready over HTTP means SMTP listens too
        self._server = await start_server(
            self.api, self.settings.http_host, self.settings.http_port
        )

    @property
    def http_port(self) -> int:
        """The port the gateway listens on (the one the OS chose, when configured as 0)."""
        assert self._server is not None
        return self._server.port

    @property
    def smtp_port(self) -> int:
        """The port the SMTP submission door listens on."""
        assert self._smtp is not None
        return self._smtp.port

    async def stop(self) -> None:
        if self._smtp is not None:
            await self._smtp.stop()
        if self._server is not None:
            await self._server.stop()
        for sweeping in self._sweeping:
            sweeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeping
        await self.broker.stop()
        if self._ingest is not None:
            await self._ingest.pool.close()

    async def _take_in(self, batch: list[Consumed[Parsed]]) -> Outbox:
        return await take_in(self.ingest, batch)

    async def _record(self, batch: list[Consumed[DeliveryEvent]]) -> Outbox:
        await record_all(self.ingest.pool, [(item.value, item.raw.value or b"") for item in batch])
        return Outbox(self.settings.topic_prefix)


async def _sweep(
    pool: asyncpg.Pool, what: str, every: float, work: Callable[[asyncpg.Pool], Awaitable[int]]
) -> None:
    """Run ``work`` (it says how many rows it handled) every ``every`` seconds while the service
    runs."""
    while True:
        try:
            if done := await work(pool):
                log.info("%s: %d", what, done)
        except DATABASE_DOWN as error:
            log.warning("could not do %s: %r", what, error)
        except Exception:  # the next round tries again; the gateway must not go down for it
            log.exception("%s failed", what)
        await asyncio.sleep(every)


async def _forget_old(pool: asyncpg.Pool) -> int:
    """Every message past its tenant's retention, batch after batch (never one huge DELETE)."""
    total = 0
    while (deleted := await store.forget_old_messages(pool)) > 0:
        total += deleted
        if deleted < store.RETENTION_BATCH:
            break
    return total
