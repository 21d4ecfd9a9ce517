"""console's wiring: the web app served on ``console_host:console_port``."""

from __future__ import annotations

from libs.http_serving import EmbeddedServer, start_server
from libs.settings import Settings
from services.console.web import build_console


class ConsoleService:
    """Serves the support console; all it knows it asks the gateway (and Jaeger) for."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = build_console(settings)
        self._server: EmbeddedServer | None = None

    async def start(self) -> None:
        self._server = await start_server(
            self.app, self.settings.console_host, self.settings.console_port
        )

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop()
        await self.app.state.http.aclose()
