"""The SMTP exchange with a route: reused connections, and DATA only for a claimed attempt.

The destination's hosts are tried in order until one takes the connection (connects, greets,
secures it and accepts the login as the route asks, ``tls_auth``); connections are kept per
host, source address, TLS mode (and whether MTA-STS requires verified TLS), login and lane.

Per message: ``MAIL FROM``, ``RCPT TO`` (a refusal there is final: no DATA), then the claim of
the attempt, then ``DATA``. An attempt claimed before is never handed over again. Whether DATA
reached the server cannot be told from a timeout or a dropped connection (aiosmtplib does not
say whether the final dot went out), so such an attempt is reported as interrupted: its outcome
is unknown and it is not sent again.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

import aiosmtplib

from libs.settings import Settings
from schemas.common import Lane
from schemas.pipeline import AuthMethod, Route, SmtpReply, SourceAddress, TlsMode
from services.sender.classify import smtp_reply
from services.sender.destinations import Destination
from services.sender.mta_sts import StsMode
from services.sender.sites import DEFAULT_MESSAGES_PER_CONNECTION
from services.sender.tls_auth import RoutePasswords, TlsContexts, log_in, secure

NETWORK_ERRORS = (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError)
"""What a lost, refused or timed-out connection raises (server replies are caught first)."""

MAX_IDLE_SECONDS = 30.0
"""An idle connection older than this is closed rather than reused: servers drop them."""

SERVICE_UNAVAILABLE = 421


def longest_data(route: Route) -> timedelta:
    """How long DATA to ``route`` can last: the 354 and the final reply are each awaited for
    the route's timeout, plus a second to write the message."""
    return timedelta(seconds=2 * route.timeout_seconds + 1)


class HandoverKind(StrEnum):
    """How far one attempt got with the server."""

    REFUSED = "refused"
    """Ended before the claim (connection, MAIL or RCPT failed): nothing was sent."""
    ANSWERED = "answered"
    """DATA was answered; the reply says what became of the message."""
    CLAIMED_BEFORE = "claimed_before"
    """The attempt had been handed to SMTP already: nothing was sent this time."""
    INTERRUPTED = "interrupted"
    """The connection failed during DATA: the message may or may not have arrived."""


@dataclass(frozen=True)
class Handover:
    """The result of one attempt's SMTP exchange."""

    kind: HandoverKind
    reply: SmtpReply | None


def failure_reply(error: Exception) -> SmtpReply:
    """The server's refusal, or the sender's own code 0 (a deferral) for a failed connection."""
    if isinstance(error, aiosmtplib.SMTPResponseException):
        return smtp_reply(error.code, error.message)
    return SmtpReply(code=0, text=f"{type(error).__name__}: {error}".rstrip(": "))


def _keeps_session(error: Exception) -> bool:
    """Whether the connection is still usable after ``error``: a plain refusal, not a 421."""
    return isinstance(error, aiosmtplib.SMTPResponseException) and error.code != SERVICE_UNAVAILABLE


@dataclass
class _Idle:
    client: aiosmtplib.SMTP
    since: float
    messages: int
    """Transactions the connection carried so far."""


@dataclass(frozen=True)
class ConnectionKey:
    """What a connection is kept for: one server as reached from one source address with one
    TLS mode and login, per lane (a bulk backlog never holds the critical lane's)."""

    host: str
    port: int
    source: SourceAddress | None
    tls: TlsMode
    tls_required: bool
    """The recipient domain enforces MTA-STS: the connection is verified STARTTLS."""
    auth: AuthMethod | None
    username: str | None
    credentials: str | None
    timeout_seconds: float
    lane: Lane

    @classmethod
    def of(
        cls, host: str, port: int, route: Route, lane: Lane, tls_required: bool
    ) -> ConnectionKey:
        return cls(
            host,
            port,
            route.source,
            route.tls,
            tls_required,
            route.auth,
            route.username,
            route.credentials,
            route.timeout_seconds,
            lane,
        )


@dataclass(frozen=True)
class Connection:
    """A connection lent by ``RouteConnections.acquire``; give it back with ``release``."""

    key: ConnectionKey
    client: aiosmtplib.SMTP
    messages: int = 0
    """Transactions it carried before this one."""


class RouteConnections:
    """Open SMTP connections per server, source, TLS mode, login and lane, kept between
    messages so each one skips the handshake, at most ``per_destination`` of them at a time."""

    def __init__(self, settings: Settings, passwords: RoutePasswords) -> None:
        self.helo_name = settings.smtp_helo_name
        self.per_destination = settings.smtp_connections_per_route
        self.contexts = TlsContexts(settings.smtp_tls_ca_file)
        self.passwords = passwords
        self._idle: defaultdict[ConnectionKey, list[_Idle]] = defaultdict(list)
        self._slots: dict[ConnectionKey, asyncio.Semaphore] = {}

    def _slot(self, key: ConnectionKey) -> asyncio.Semaphore:
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = asyncio.Semaphore(self.per_destination)
        return slot

    async def acquire(self, destination: Destination, route: Route, lane: Lane) -> Connection:
        """A connection to the first host of ``destination`` that answers (an idle live one,
        or a new one once a slot is free, secured and logged in); raises the last host's
        failure when none does."""
        failure: Exception = aiosmtplib.SMTPException(f"route {route.name} has no host")
        for host, port in destination.hosts:
            key = ConnectionKey.of(host, port, route, lane, destination.tls_required)
            try:
                return await self._connect(
                    key, route, destination.tls_names.get(host, host), destination.mta_sts
                )
            except NETWORK_ERRORS as error:
                failure = error
        raise failure

    async def _connect(
        self, key: ConnectionKey, route: Route, server_name: str, mta_sts: StsMode | None
    ) -> Connection:
        await self._slot(key).acquire()
        try:
            idle = self._idle[key]
            while idle:
                entry = idle.pop()
                if entry.client.is_connected and time.monotonic() - entry.since < MAX_IDLE_SECONDS:
                    return Connection(key, entry.client, entry.messages)
                entry.client.close()
            source = route.source
            client = aiosmtplib.SMTP(
                hostname=key.host,
                port=key.port,
                local_hostname=source.ehlo if source else self.helo_name,
                source_address=(source.address, 0) if source else None,
                timeout=route.timeout_seconds,
                use_tls=route.tls is TlsMode.IMPLICIT,
                start_tls=False,
                tls_context=self.contexts.implicit(route),
            )
            await client.connect()
            try:
                await secure(client, route, self.contexts, server_name, mta_sts)
                await log_in(client, route, self.passwords)
            except BaseException:
                client.close()
                raise
            return Connection(key, client)
        except BaseException:
            self._slot(key).release()
            raise

    def release(self, connection: Connection, reusable: bool, most_messages: int) -> None:
        """Keep the connection for the next message, or close it after an error, a 421 or its
        site's ``most_messages`` transactions."""
        client = connection.client
        messages = connection.messages + 1
        if reusable and client.is_connected and messages < most_messages:
            self._idle[connection.key].append(_Idle(client, time.monotonic(), messages))
        else:
            client.close()
        self._slot(connection.key).release()

    async def close(self) -> None:
        """Say QUIT on every idle connection."""
        entries = [entry for idle in self._idle.values() for entry in idle]
        self._idle.clear()
        for entry in entries:
            try:
                await entry.client.quit()
            except NETWORK_ERRORS:
                entry.client.close()


async def _reset(client: aiosmtplib.SMTP) -> bool:
    """Abandon the open transaction (RSET); False when the connection is no longer usable."""
    try:
        await client.rset()
    except NETWORK_ERRORS:
        return False
    return True


async def _envelope(client: aiosmtplib.SMTP, mail_from: str, rcpt: str) -> None:
    """``MAIL FROM`` and ``RCPT TO`` for addresses the edge already validated (ASCII addr-specs),
    raising as aiosmtplib's ``mail``/``rcpt`` do on a refusal, without parsing them again."""
    mail = await client.execute_command(b"MAIL", b"FROM:<" + mail_from.encode() + b">")
    if mail.code != 250:
        raise aiosmtplib.SMTPSenderRefused(mail.code, mail.message, mail_from)
    recipient = await client.execute_command(b"RCPT", b"TO:<" + rcpt.encode() + b">")
    if recipient.code not in (250, 251):
        raise aiosmtplib.SMTPRecipientRefused(recipient.code, recipient.message, rcpt)


async def hand_over(
    connections: RouteConnections,
    destination: Destination,
    route: Route,
    lane: Lane,
    mail_from: str,
    rcpt: str,
    content: bytes,
    claim: Callable[[], Awaitable[bool]],
    most_messages: int = DEFAULT_MESSAGES_PER_CONNECTION,
) -> Handover:
    """Offer one message to ``destination`` over ``route``; ``claim`` is asked right before
    DATA whether to send; the connection carries at most ``most_messages`` transactions.

    The hosts are tried in order until one takes the connection; once a host has the envelope
    the attempt stays with it (after the claim no other host is ever offered the message).
    """
    if destination.refusal is not None:
        return Handover(HandoverKind.REFUSED, destination.refusal)
    try:
        connection = await connections.acquire(destination, route, lane)
    except NETWORK_ERRORS as error:
        return Handover(HandoverKind.REFUSED, failure_reply(error))
    client = connection.client
    reusable = False
    try:
        try:
            await _envelope(client, mail_from, rcpt)
        except NETWORK_ERRORS as error:
            reusable = _keeps_session(error) and await _reset(client)
            return Handover(HandoverKind.REFUSED, failure_reply(error))
        if not await claim():
            reusable = await _reset(client)
            return Handover(HandoverKind.CLAIMED_BEFORE, None)
        try:
            response = await client.data(content)
        except NETWORK_ERRORS as error:
            reusable = _keeps_session(error)
            answered = isinstance(error, aiosmtplib.SMTPResponseException)
            kind = HandoverKind.ANSWERED if answered else HandoverKind.INTERRUPTED
            return Handover(kind, failure_reply(error))
        reusable = True
        return Handover(HandoverKind.ANSWERED, smtp_reply(response.code, response.message))
    finally:
        connections.release(connection, reusable, most_messages)
