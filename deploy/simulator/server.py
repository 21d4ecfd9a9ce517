"""The simulator's SMTP server: aiosmtpd hooks that apply ``behaviour`` and keep a mailbox log;
complaints and auto-replies go back to the envelope sender (the feedback listener, for
Sendarix's return paths)."""

from __future__ import annotations

import asyncio
import json
import logging
import weakref
from collections import OrderedDict
from datetime import UTC, datetime
from email.message import Message
from pathlib import Path
from typing import Any

import aiosmtplib
from aiosmtpd.smtp import SMTP, Envelope, Session

from deploy.simulator.behaviour import (
    ACCEPTED,
    FollowUp,
    behaviour_for,
    data_reply,
    follow_up,
    rcpt_delay,
    rcpt_reply,
)
from deploy.simulator.reports import auto_reply, complaint_report, original_headers
from libs.settings import Settings
from libs.verp import bounce_domain

log = logging.getLogger(__name__)


def follow_up_destination(recipient: str, settings: Settings) -> tuple[str, int]:
    """Where a follow-up to ``recipient`` goes, as its MX would say: the feedback listener for
    the bounce domain (Sendarix's return paths), the relay (Mailpit) for any other address."""
    if recipient.rpartition("@")[2].lower() == bounce_domain(settings.bounce_address):
        return settings.feedback_host, settings.feedback_port
    return settings.relay_host, settings.relay_port


FOLLOW_UP_DELAY_SECONDS = 1.0
"""A complaint or auto-reply leaves a moment after the delivery it answers (real feedback loops
take minutes): never before the sender has heard the 250 it follows."""
FOLLOW_UP_RETRY_SECONDS = (1.0, 2.0, 4.0, 8.0)
"""Waits before each new try of a follow-up that failed for now (a real MTA keeps trying for
days; the simulator's follow-ups are for tests and ``make run``)."""


class MailboxLog:
    """One JSON line per accepted message and recipient; tests count duplicates from it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, message_id: str, rcpt: str, mail_from: str, size: int) -> None:
        """Record one accepted copy, flushed before the ``250`` goes out."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        entry = {
            "message_id": message_id,
            "rcpt": rcpt,
            "mail_from": mail_from,
            "received_at": datetime.now(UTC).isoformat(),
            "size": size,
        }
        with self.path.open("a", encoding="utf-8") as file:
            file.write(json.dumps(entry) + "\n")
            file.flush()


class AttemptCounter:
    """Delivery attempts per Message-ID, for the most recent messages only (bounded memory)."""

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._counts: OrderedDict[str, int] = OrderedDict()

    def record(self, message_id: str) -> int:
        """Count one more attempt of ``message_id``; return its attempt number."""
        count = self._counts.pop(message_id, 0) + 1
        self._counts[message_id] = count
        if len(self._counts) > self.capacity:
            self._counts.popitem(last=False)
        return count

    def __getitem__(self, message_id: str) -> int:
        return self._counts.get(message_id, 0)


class MailboxHandler:
    """The aiosmtpd handler: asks ``behaviour`` for every reply and does the I/O around it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.log = MailboxLog(settings.simulator_log)
        self.attempts = AttemptCounter()
        """Delivery attempts seen per Message-ID (``throttle@`` counts on them)."""
        self._follow_ups: set[asyncio.Task[None]] = set()

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        behaviour = behaviour_for(address, self.settings.simulator_domain)
        await asyncio.sleep(rcpt_delay(behaviour, self.settings.smtp_timeout_seconds))
        reply = rcpt_reply(behaviour)
        if reply == ACCEPTED:
            envelope.rcpt_tos.append(address)
        return str(reply)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        mail_from = envelope.mail_from or ""
        message_id = str(original_headers(content).get("Message-ID", ""))
        attempt = self.attempts.record(message_id)
        behaviours = [behaviour_for(r, self.settings.simulator_domain) for r in envelope.rcpt_tos]
        replies = [data_reply(b, attempt) for b in behaviours]
        reply = next((r for r in replies if r != ACCEPTED), ACCEPTED)
        if reply != ACCEPTED:
            return str(reply)
        for rcpt, behaviour in zip(envelope.rcpt_tos, behaviours, strict=True):
            self.log.append(message_id, rcpt, mail_from, len(content))
            if (kind := follow_up(behaviour)) is not None and mail_from:
                self._send_later(kind, content, mail_from, rcpt)
        return str(reply)

    def _send_later(self, kind: FollowUp, content: bytes, mail_from: str, rcpt: str) -> None:
        domain, now = self.settings.simulator_domain, datetime.now(UTC)
        message = (
            complaint_report(content, mail_from, rcpt, domain, now)
            if kind is FollowUp.COMPLAINT
            else auto_reply(content, mail_from, rcpt, domain, now)
        )
        task = asyncio.create_task(self._relay(message, mail_from))
        self._follow_ups.add(task)
        task.add_done_callback(self._follow_ups.discard)

    async def _relay(self, message: Message, recipient: str) -> None:
        """Send a follow-up from the null sender, as feedback loops and auto-responders do, and
        try again after a temporary failure, as their MTAs do."""
        host, port = follow_up_destination(recipient, self.settings)
        for wait in (FOLLOW_UP_DELAY_SECONDS, *FOLLOW_UP_RETRY_SECONDS):
            await asyncio.sleep(wait)
            try:
                await aiosmtplib.send(
                    message,
                    sender="",
                    recipients=[recipient],
                    hostname=host,
                    port=port,
                    start_tls=False,
                    timeout=self.settings.smtp_timeout_seconds,
                )
                return
            except aiosmtplib.SMTPRecipientsRefused as refused:
                log.warning("a follow-up to %s was refused: %s", recipient, refused)
                return
            except aiosmtplib.SMTPResponseException as error:
                if error.code >= 500:
                    log.warning("a follow-up to %s was refused: %s", recipient, error)
                    return
                log.info("a follow-up to %s was deferred: %s", recipient, error)
            except (aiosmtplib.SMTPException, OSError) as error:
                log.info("could not relay a follow-up to %s yet: %s", recipient, error)
        log.warning("gave up relaying a follow-up to %s", recipient)

    async def drain(self) -> None:
        """Wait for the follow-ups still being relayed."""
        await asyncio.gather(*self._follow_ups, return_exceptions=True)


class MailboxSimulator:
    """The simulator as a service: listens on ``simulator_host:simulator_port`` (0: any port)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.handler = MailboxHandler(settings)
        self._server: asyncio.Server | None = None
        self._connections: weakref.WeakSet[SMTP] = weakref.WeakSet()

    @property
    def port(self) -> int:
        """The port actually listened on."""
        assert self._server is not None, "the simulator is not started"
        address: tuple[Any, ...] = self._server.sockets[0].getsockname()
        return int(address[1])

    async def start(self) -> None:
        loop = asyncio.get_running_loop()

        def connection() -> SMTP:
            smtp = SMTP(self.handler, hostname=self.settings.simulator_domain, loop=loop)
            self._connections.add(smtp)
            return smtp

        self._server = await loop.create_server(
            connection, self.settings.simulator_host, self.settings.simulator_port
        )
        log.info("mailbox simulator listening on %s:%s", self.settings.simulator_host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for smtp in list(self._connections):
                if smtp.transport is not None:
                    smtp.transport.close()
            await self._server.wait_closed()
        await self.handler.drain()
