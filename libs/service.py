"""How a service process runs: logging and tracing set up, start, wait for a signal, stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from typing import Protocol

from libs.logs import setup_logging
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
