"""An HTTP app served by uvicorn inside a service process (the gateway, the console).

The process's signals belong to ``libs.service``, so uvicorn must not install handlers of its
own; start-up waits until the socket listens, and says why when it cannot.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import uvicorn


class EmbeddedServer(uvicorn.Server):
    """uvicorn without its signal handlers, started and stopped by the service."""

    task: asyncio.Task[None] | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    @property
    def port(self) -> int:
        """The port it listens on (the one the OS chose, when configured as 0)."""
        port: int = self.servers[0].sockets[0].getsockname()[1]
        return port

    async def stop(self) -> None:
        """Finish the requests in progress, then close."""
        if self.task is not None:
            self.should_exit = True
            await self.task


async def start_server(app: Any, host: str, port: int) -> EmbeddedServer:
    """Serve ``app`` on ``host:port``; return once it listens."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan="off",
        http="httptools",
        log_config=None,
        access_log=False,
    )
    server = EmbeddedServer(config)
    server.task = asyncio.create_task(server.serve())
    while not server.started:
        if server.task.done():  # it could not listen: say why
            server.task.result()
            raise RuntimeError(f"the HTTP server on {host}:{port} stopped while starting")
        await asyncio.sleep(0.05)
    return server
