"""How a service process runs (set up, start, wait for a signal, stop) and the common shape."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from functools import partial
from typing import ClassVar, Protocol

import asyncpg
import uvloop
from aiokafka.errors import KafkaError

from libs.broker import make_broker
from libs.database import DATABASE_DOWN, open_pool
from libs.logs import setup_logging
from libs.metrics import serve_metrics
from libs.settings import Settings, get_settings
from libs.tracing import setup_tracing, shutdown_tracing

log = logging.getLogger(__name__)


class Service(Protocol):
    """A running part of the pipeline: started once, stopped once."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


DEPENDENCY_DOWN: tuple[type[Exception], ...] = (KafkaError, *DATABASE_DOWN)
"""What a start-up raises while the broker or the database is down or restarting."""

START_RETRY_SECONDS = 1.0


async def start_when_dependencies_answer(name: str, build: Callable[[], Service]) -> Service:
    """Build and start the service, again and again while the broker or database is down.

    A process that exits because its broker restarts at the wrong moment would need a
    supervisor to come back; a partly started service is stopped and built afresh instead.
    """
    while True:
        service = build()
        try:
            await service.start()
            return service
        except DEPENDENCY_DOWN as error:
            log.warning("%s cannot start yet (%r); retrying", name, error)
            await _stop_quietly(service)
            await asyncio.sleep(START_RETRY_SECONDS)
        except asyncio.CancelledError:
            await _stop_quietly(service)
            raise


async def _stop_quietly(service: Service) -> None:
    """Release what a partly started service holds; it may have nothing to release."""
    try:
        await service.stop()
    except Exception as error:
        log.debug("stopping a partly started service: %r", error)


async def run_until_signalled(name: str, build: Callable[[], Service]) -> None:
    """Start the service ``build`` makes, run until SIGINT or SIGTERM, then stop it cleanly."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    starting = asyncio.create_task(start_when_dependencies_answer(name, build))
    signalled = asyncio.create_task(stopping.wait())
    await asyncio.wait({starting, signalled}, return_when=asyncio.FIRST_COMPLETED)
    if not starting.done():
        log.info("%s stopping before it was ready", name)
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await starting
        return
    service = starting.result()
    log.info("%s ready", name)
    await signalled
    log.info("%s stopping", name)
    await service.stop()


def main(name: str, build: Callable[[Settings], Service]) -> None:
    """Entry point of ``python -m services.<name>``."""
    settings = get_settings()
    setup_logging(name, settings.log_level, settings.log_json)
    setup_tracing(name, settings)
    # Scrapeable from the start, while the service may still wait for its broker or database.
    metrics = (
        serve_metrics(settings.metrics_host, settings.metrics_port)
        if settings.metrics_port
        else None
    )
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(run_until_signalled(name, partial(build, settings)))
    finally:
        if metrics is not None:
            metrics.stop()
        shutdown_tracing()


class PipelineService:
    """The common shape of a pipeline service: a broker, a database pool, one name.

    Subclasses set ``name`` (and ``uses_database``), wire their subscriptions in ``__init__``
    (``libs.subscriptions``), set up what their handlers use in ``prepare`` and extend
    ``start``/``stop`` for whatever else they run.
    """

    name: ClassVar[str]
    uses_database: ClassVar[bool] = True

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.broker = make_broker(self.name, settings)
        self._pool: asyncpg.Pool | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        """The database pool, once started."""
        if self._pool is None:
            raise RuntimeError(f"{self.name} is not started")
        return self._pool

    async def start(self) -> None:
        """Open the database pool, prepare what the handlers need, then start consuming."""
        if self.uses_database:
            self._pool = await open_pool(self.settings)
        await self.prepare()
        await self.broker.start()

    async def prepare(self) -> None:
        """Set up what the handlers use, before the first batch can arrive (the pool is open)."""

    async def stop(self) -> None:
        """Stop consuming (in-flight handlers finish), then close the pool."""
        await self.broker.stop()
        if self._pool is not None:
            await self._pool.close()
