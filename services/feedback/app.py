"""feedback's wiring: an SMTP server for the bounce domain, and one use case per mail it takes.

The listener is a process of its own rather than a part of policy-check: it is a door (inbound
SMTP from the internet, answering MX traffic), and policy-check is a pipeline stage that must
stay fast and hidden; what the listener learns travels as events on ``sendarix.events``, which
policy-check (suppressions), the message log and the webhooks read like any other.

Each mail, in order: its recipient is a token address (``RCPT``: others are refused 550 5.1.1);
its token is checked against the logged message it names; the report is read; the decision
(``decide.py``) is reported as an event in the message's trace. What changes nothing — forged
tokens, garbage, auto-replies, reports about another message or recipient — is counted and
dropped, and still answered ``250``: this is what real bounce processors do, since refusing a
bounce only makes the remote server bounce the bounce (to the null sender, so nowhere) or retry
it. A ``451``, which the remote server retries, answers what may work later: a broker or
database that cannot take the report now, or a token of a message not in the log yet (the
recorder writes it from the event stream, a moment behind; a fast feedback loop can be faster).
A re-delivered report is the same event (ids are the message's and the state's).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka.errors import KafkaError
from aiosmtpd.smtp import Envelope, Session
from prometheus_client import Counter

from libs.cache import TtlCache
from libs.database import DATABASE_DOWN
from libs.feedback_report import parse_feedback
from libs.ip_pools import return_path_domains
from libs.late_events import report_logged
from libs.message_log import Unverified, message_of_token
from libs.message_tokens import Purpose, signing_key
from libs.service import PipelineService
from libs.settings import Settings
from libs.smtp_sessions import LimitedSMTP, SessionLimits, SmtpListener
from schemas.events import MessageState
from services.feedback.decide import (
    ACCEPTED_RCPT,
    Addressed,
    Feedback,
    Ignored,
    LoggedMessage,
    addressed,
    judge_report,
    rcpt_reply,
)

SERVICE = "feedback"
MAX_RECIPIENTS = 10
"""Recipients of one inbound mail: a bounce goes to one return path; more is not feedback."""
IDLE_SECONDS = 60.0
"""A client silent this long is disconnected: feedback senders are MTAs, never people typing."""
ACCEPTED = "250 2.0.0 OK"
UNAVAILABLE = "451 4.3.0 Cannot take feedback now; try again later"
NOT_LOGGED_YET = "451 4.4.0 The message this is about is not known (yet); try again later"
NOT_LOGGED = Unverified.NOT_LOGGED.value

log = logging.getLogger(__name__)

RETURN_PATH_DOMAINS_SECONDS = 30.0

FEEDBACK = Counter(
    "sendarix_feedback_messages",
    "Mail taken by the feedback listener, by what became of it: the state reported, or why"
    " nothing was (auto_reply, unreadable, unverified_token, other_message, ...).",
    ["outcome"],
)


class FeedbackService(PipelineService):
    """Takes DSNs, complaint reports, auto-replies and unsubscribe mail for the bounce domain."""

    name = SERVICE

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.token_key = signing_key(settings)
        self.domain_cache: TtlCache[str, frozenset[str]] = TtlCache(
            RETURN_PATH_DOMAINS_SECONDS, size=1
        )
        """Where return paths point besides the bounce domain: the IP pools' domains."""
        self.sessions = SessionLimits()
        self._listener = SmtpListener()

    async def start(self) -> None:
        """Open the pool and the producer, then listen on ``feedback_host:feedback_port``."""
        await super().start()
        loop = asyncio.get_running_loop()
        settings = self.settings

        def protocol() -> LimitedSMTP:
            return LimitedSMTP(
                self,
                self.sessions,
                data_size_limit=settings.feedback_max_bytes,
                hostname=settings.smtp_helo_name,
                ident="Sendarix feedback",
                timeout=IDLE_SECONDS,
                loop=loop,
            )

        await self._listener.listen(protocol, settings.feedback_host, settings.feedback_port)
        log.info("feedback listener on %s:%s", settings.feedback_host, self.port)

    async def return_path_domains(self) -> frozenset[str]:
        """The pools' return-path domains, read at most every ``RETURN_PATH_DOMAINS_SECONDS``
        (a pool given a domain gets its bounces within that)."""
        domains = await self.domain_cache.get(
            "all", lambda: return_path_domains(self.pool, self.settings)
        )
        return domains or frozenset()

    @property
    def port(self) -> int:
        """The port listened on (the OS's choice when configured as 0)."""
        return self._listener.port

    async def stop(self) -> None:
        """Stop listening (sessions under way finish), then close the producer and the pool."""
        await self._listener.close()
        await super().stop()

    async def handle_RCPT(
        self, server: Any, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        """Only token addresses of the bounce domain exist here."""
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return f"452 4.5.3 Too many recipients: at most {MAX_RECIPIENTS}"
        try:
            domains = await self.return_path_domains()
        except DATABASE_DOWN as error:
            log.warning("could not read the return-path domains now: %r", error)
            return UNAVAILABLE
        reply = rcpt_reply(address, self.settings.bounce_address, domains)
        if reply == ACCEPTED_RCPT:
            envelope.rcpt_tos.append(address)
        return reply

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        """Take the mail for each of its token addresses; never raises (a bug drops the mail)."""
        content = envelope.original_content or b""
        outcomes: list[str] = []
        try:
            for address in envelope.rcpt_tos:
                target = addressed(
                    address, self.settings.bounce_address, await self.return_path_domains()
                )
                if target is not None:
                    outcomes.append(await self.take(target, content))
        except (KafkaError, TimeoutError, *DATABASE_DOWN) as error:
            log.warning("could not take feedback now: %r", error)
            return UNAVAILABLE
        except Exception:
            log.exception("feedback mail dropped: taking it failed")
            outcomes.append("failed")
        for outcome in outcomes:
            FEEDBACK.labels(outcome).inc()
        return NOT_LOGGED_YET if NOT_LOGGED in outcomes else ACCEPTED

    async def take(self, target: Addressed, content: bytes) -> str:
        """Check the token, read the mail, report what it says; the outcome, for the count."""
        row = await message_of_token(self.pool, self.token_key, target.token, target.purpose)
        if row is Unverified.NOT_LOGGED:
            return NOT_LOGGED
        if isinstance(row, Unverified):
            return Ignored.FORGED_TOKEN.value
        if target.purpose is Purpose.UNSUBSCRIBE:
            verdict: Feedback | Ignored = Feedback(MessageState.UNSUBSCRIBED)
        else:
            report = await asyncio.to_thread(parse_feedback, content)
            verdict = judge_report(report, LoggedMessage(str(row["id"]), row["recipient"] or ""))
        if isinstance(verdict, Ignored):
            log.info("feedback about %s changes nothing: %s", row["id"], verdict.value)
            return verdict.value
        await report_logged(
            self.broker,
            self.settings.topic_prefix,
            row,
            verdict.state,
            SERVICE,
            bounce=verdict.bounce,
            smtp=verdict.smtp,
            feedback_type=verdict.feedback_type,
        )
        return verdict.state.value
