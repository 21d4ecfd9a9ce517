"""The SMTP exchange with a route: reused connections, and DATA only for a claimed attempt.

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

from schemas.common import Lane
from schemas.pipeline import Route, SmtpReply, TlsMode
from services.sender.classify import smtp_reply

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


Destination = tuple[Route, Lane]
"""Connections are kept per route and lane: a bulk backlog never holds the critical lane's."""


class RouteConnections:
    """Open SMTP connections per route and lane, kept between messages so each one skips the
    handshake, at most ``per_destination`` of them at a time."""

    def __init__(self, helo_name: str, per_destination: int) -> None:
        self.helo_name = helo_name
        self.per_destination = per_destination
        self._idle: defaultdict[Destination, list[_Idle]] = defaultdict(list)
        self._slots: dict[Destination, asyncio.Semaphore] = {}

    def _slot(self, destination: Destination) -> asyncio.Semaphore:
        slot = self._slots.get(destination)
        if slot is None:
            slot = self._slots[destination] = asyncio.Semaphore(self.per_destination)
        return slot

    async def acquire(self, route: Route, lane: Lane) -> aiosmtplib.SMTP:
        """An idle live connection to ``route`` for ``lane``, or a new one once a slot is free
        (EHLO follows with MAIL FROM); give it back with ``release``."""
        destination = (route, lane)
        await self._slot(destination).acquire()
        try:
            idle = self._idle[destination]
            while idle:
                entry = idle.pop()
                if entry.client.is_connected and time.monotonic() - entry.since < MAX_IDLE_SECONDS:
                    return entry.client
                entry.client.close()
            client = aiosmtplib.SMTP(
                hostname=route.host,
                port=route.port,
                local_hostname=self.helo_name,
                timeout=route.timeout_seconds,
                use_tls=route.tls is TlsMode.IMPLICIT,
                start_tls=route.tls is TlsMode.STARTTLS,
            )
            await client.connect()
            if client.is_ehlo_or_helo_needed:
                await client.ehlo()
            return client
        except BaseException:
            self._slot(destination).release()
            raise

    def release(self, route: Route, lane: Lane, client: aiosmtplib.SMTP, reusable: bool) -> None:
        """Keep ``client`` for the next message, or close it after an error or a 421."""
        destination = (route, lane)
        if reusable and client.is_connected:
            self._idle[destination].append(_Idle(client, time.monotonic()))
        else:
            client.close()
        self._slot(destination).release()

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
    route: Route,
    lane: Lane,
    mail_from: str,
    rcpt: str,
    content: bytes,
    claim: Callable[[], Awaitable[bool]],
) -> Handover:
    """Offer one message to ``route``; ``claim`` is asked right before DATA whether to send."""
    try:
        client = await connections.acquire(route, lane)
    except NETWORK_ERRORS as error:
        return Handover(HandoverKind.REFUSED, failure_reply(error))
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
        connections.release(route, lane, client, reusable)
