"""The SMTP servers Sendarix runs (the submission door, the feedback listener): where they listen
and how many sessions they hold.

Both run aiosmtpd's protocol on the service's own event loop (``loop.create_server``, not
aiosmtpd's threaded controller), so their handlers share the service's broker and pool. Idle
sessions must not be a way to use up a server: each costs a socket and a task until it times
out, so each client address, and all of them, may hold only so many open at once; one more is
told to come back later and closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiosmtpd.smtp import SMTP

SESSIONS_PER_CLIENT = 50
"""Connections one client address may hold open at once (a mailer pool uses a few)."""
SESSIONS_IN_ALL = 1000
"""Connections a server holds open at once: beyond, new ones are told to come back later."""
MAX_DATA_LINE_BYTES = 64 * 1024
"""Longer message lines than RFC 5322's 998 are taken: some mailers send HTML as one line (and
return it so in a bounce), and the pipeline writes every message anew with lines of its own."""
TOO_MANY = b"421 4.7.0 Too many connections; try again later\r\n"


class SessionLimits:
    """How many connections each client address, and all of them, hold open."""

    def __init__(self, per_client: int = SESSIONS_PER_CLIENT, total: int = SESSIONS_IN_ALL):
        self.per_client = per_client
        self.total = total
        self._open: dict[str, int] = {}

    def open(self, client: str) -> bool:
        """Count a new session of ``client`` in, unless it is one too many."""
        if sum(self._open.values()) >= self.total or self._open.get(client, 0) >= self.per_client:
            return False
        self._open[client] = self._open.get(client, 0) + 1
        return True

    def held(self, client: str) -> int:
        """How many sessions ``client`` holds open now."""
        return self._open.get(client, 0)

    def close(self, client: str) -> None:
        """A session of ``client`` ended."""
        left = self._open.get(client, 0) - 1
        if left > 0:
            self._open[client] = left
        else:
            self._open.pop(client, None)


def client_of(peer: Any) -> str:
    """The address a session comes from, as the limits count it."""
    return str(peer[0]) if isinstance(peer, tuple) else str(peer)


class LimitedSMTP(SMTP):
    """aiosmtpd's SMTP protocol, counting its connection against ``SessionLimits``."""

    line_length_limit = MAX_DATA_LINE_BYTES

    def __init__(self, handler: Any, sessions: SessionLimits, **options: Any) -> None:
        super().__init__(handler, **options)
        self.sessions = sessions
        self._counted: str | None = None
        self._turned_away = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """A new connection is counted (not again when STARTTLS wraps it), or turned away."""
        if self._counted is None and not self._turned_away:
            client = client_of(transport.get_extra_info("peername"))
            if not self.sessions.open(client):
                self._turned_away = True
                assert isinstance(transport, asyncio.WriteTransport)
                transport.write(TOO_MANY)
                transport.close()
                return
            self._counted = client
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._turned_away:
            return
        if self._counted is not None:
            self.sessions.close(self._counted)
            self._counted = None
        super().connection_lost(error)


class SmtpListener:
    """A listening socket serving one SMTP protocol instance per connection."""

    def __init__(self) -> None:
        self._server: asyncio.Server | None = None

    async def listen(self, protocol: Callable[[], SMTP], host: str, port: int) -> None:
        """Listen on ``host:port`` (port 0: one the OS chooses) on the running loop."""
        self._server = await asyncio.get_running_loop().create_server(protocol, host, port)

    @property
    def port(self) -> int:
        """The port listened on (the one the OS chose, when configured as 0)."""
        assert self._server is not None, "not listening"
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def close(self) -> None:
        """Stop listening; sessions under way finish on their own."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
