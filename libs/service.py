"""How a service process runs (set up, start, wait for a signal, stop) and the common shape."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from typing import ClassVar, Protocol

import asyncpg
from faststream.kafka import KafkaMessage

from libs.broker import RecordT, make_broker, parse_record
from libs.database import open_pool
from libs.logs import setup_logging
from libs.poison import report_undecodable
from libs.settings import Settings, get_settings
from libs.tracing import setup_tracing, shutdown_tracing

log = logging.getLogger(__name__)


class Service(Protocol):
    """A running part of the pipeline: started once, stopped once."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


async def run_until_signalled(name: str, service: Service) -> None:
    """Start ``service``, run until SIGINT or SIGTERM, then stop it cleanly."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    starting = asyncio.create_task(service.start())
    signalled = asyncio.create_task(stopping.wait())
    await asyncio.wait({starting, signalled}, return_when=asyncio.FIRST_COMPLETED)
    if not starting.done():
        log.info("%s stopping before it was ready", name)
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await starting
    else:
        starting.result()
        log.info("%s ready", name)
        await signalled
        log.info("%s stopping", name)
    await service.stop()


def main(name: str, build: Callable[[Settings], Service]) -> None:
    """Entry point of ``python -m services.<name>``."""
    settings = get_settings()
    setup_logging(name, settings.log_level, settings.log_json)
    setup_tracing(name, settings)
    try:
        asyncio.run(run_until_signalled(name, build(settings)))
    finally:
        shutdown_tracing()


class PipelineService:
    """The common shape of a pipeline service: a broker, a database pool, one name.

    Subclasses set ``name`` (and ``uses_database``), wire their subscribers in ``__init__``
    and extend ``start``/``stop`` for whatever else they run.
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
        """Open the database pool, then start consuming."""
        if self.uses_database:
            self._pool = await open_pool(self.settings)
        await self.broker.start()

    async def stop(self) -> None:
        """Stop consuming (in-flight handlers finish), then close the pool."""
        await self.broker.stop()
        if self._pool is not None:
            await self._pool.close()

    async def decode(self, model: type[RecordT], message: KafkaMessage) -> RecordT | None:
        """The record in ``message``, or None for a poison record (reported when identifiable).

        A poison record is skipped — its offset commits — so it never blocks the partition.
        """
        record = parse_record(model, message)
        if record is None:
            await report_undecodable(self.broker, self.settings, self.name, message)
        return record
