"""How a service process runs: logging and tracing set up, start, wait for a signal, stop."""

from __future__ import annotations

import asyncio
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
    await service.start()
    log.info("%s ready", name)
    await stopping.wait()
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
