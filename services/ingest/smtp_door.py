"""The SMTP submission door: mail clients and framework mailers send through Sendarix.

The third door to the one ``accept`` use case, as Postmark, SES and Resend offer SMTP: a client
connects (``127.0.0.1:1587`` locally, 587 in production), upgrades with STARTTLS, authenticates
with AUTH PLAIN or LOGIN — any username (``apikey`` by convention), an API key as the password —
and submits whole RFC 5322 messages. Each message is read into a send request
(``submission.py``) and accepted exactly as an HTTP request is; ``250`` is answered only once
the broker holds the records, a refusal is a 5xx naming the violations, and a broker or database
that cannot take the message is a 451 the client retries.

The door runs aiosmtpd's protocol on the service's own event loop (``loop.create_server``, not
aiosmtpd's threaded controller), so ``accept`` shares the service's broker and pool.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any, AnyStr

from aiokafka.errors import KafkaError
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Tracer

from libs.database import DATABASE_DOWN
from libs.keys import Scope
from libs.priority import LANE_RANK, gate
from libs.sendable import MAX_MESSAGE_BYTES, ONE_LINE
from libs.smtp_sessions import LimitedSMTP, SessionLimits, SmtpListener, client_of
from libs.tenants import Caller
from schemas.send import MAX_RECIPIENTS
from services.ingest.accept import Ingest, Outcome, Refused, accept
from services.ingest.ids import fresh_message_ids
from services.ingest.lanes import requested_rank_lane
from services.ingest.problems import CODE_STATUS
from services.ingest.submission import Submission, read_submission
from services.ingest.tls import server_context
from services.ingest.validate import Violation

log = logging.getLogger(__name__)

MAX_REPLY_CHARS = 400
"""An SMTP reply line is at most 512 octets (RFC 5321 4.5.3.1.5): room for code and CRLF."""
IDS_PER_LINE = 8
"""Message ids per line of a 250 reply: 8 UUIDs keep a line far below 512 octets."""
FREE_AUTH_FAILURES = 3
AUTH_DELAY_STEP_SECONDS = 1.0
MAX_AUTH_DELAY_SECONDS = 5.0
AUTH_PER_SESSION = 3
"""AUTH commands one connection may send: a client with the right key needs one, so a fourth is
answered ``421 4.7.0`` and the connection closed (a guesser must reconnect, and wait)."""
UNLIMITED = 2**31
AUTH_FAILURE_MEMORY_SECONDS = 900.0
"""How long a client address's failed logins count against it."""

REWORDED = {
    "538 5.7.11 Encryption required for requested authentication mechanism": (
        "530 5.7.0 Must issue a STARTTLS command first"
    ),
    "552 Error: Too much mail data": "552 5.3.4 Message too big",
    "552 Error: message size exceeds fixed maximum message size": "552 5.3.4 Message too big",
    "500 Error: strict ASCII mode": (
        "553 5.6.7 Non-ASCII addresses need SMTPUTF8, which Sendarix does not offer"
        " (write a domain in its xn-- form)"
    ),
}
"""aiosmtpd's own replies, as submission servers word them (RFC 3207, RFC 3463 codes)."""

KEY_WITHDRAWN = "530 5.7.0 This API key was revoked, expired or lost the send scope; log in again"
UNAVAILABLE = "451 4.3.0 Sendarix cannot take the message now; try again later"
STATUS_REPLY = {403: "550 5.7.1", 413: "552 5.3.4"}
"""The SMTP reply of a refusal, by the HTTP status of its first violation (else 554 5.6.0)."""


class _QuietLoginData(logging.Filter):
    """aiosmtpd 1.4 logs a deprecation warning of its own on every successful login."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "login_data is deprecated" not in record.getMessage()


logging.getLogger("mail.log").addFilter(_QuietLoginData())


def refusal_reply(violations: Sequence[Violation]) -> str:
    """One reply line refusing a message: the code, then each violation's code and pointer.

    Everything a client sent and is quoted back is made one line of ASCII, so no header or
    address can inject a line into the dialogue.
    """
    status = CODE_STATUS.get(violations[0].code, 422)
    prefix = STATUS_REPLY.get(status, "554 5.6.0")
    reasons = "; ".join(f"{v.code} {v.pointer or '/'}: {v.detail}" for v in violations)
    text = ONE_LINE.remove(reasons).encode("ascii", "backslashreplace").decode("ascii")
    if len(text) > MAX_REPLY_CHARS:
        text = text[: MAX_REPLY_CHARS - 3] + "..."
    return f"{prefix} {text}"


def accepted_reply(message_ids: Sequence[str]) -> str:
    """``250 2.0.0 OK`` and the message ids, one per recipient, a few per reply line."""
    lines = [
        "2.0.0 OK " + " ".join(message_ids[first : first + IDS_PER_LINE])
        for first in range(0, len(message_ids), IDS_PER_LINE)
    ]
    return "\r\n".join([*(f"250-{line}" for line in lines[:-1]), f"250 {lines[-1]}"])


def auth_delay(failures: int) -> float:
    """How long to wait before answering a failed login, after ``failures`` of them."""
    excess = failures - FREE_AUTH_FAILURES
    return min(excess * AUTH_DELAY_STEP_SECONDS, MAX_AUTH_DELAY_SECONDS) if excess > 0 else 0.0


class AuthFailures:
    """Recent failed logins per client address: repeated guessing gets slower answers."""

    def __init__(self, memory: float = AUTH_FAILURE_MEMORY_SECONDS, size: int = 10_000) -> None:
        self.memory = memory
        self.size = size
        self._failures: dict[str, tuple[int, float]] = {}

    def add(self, client: str) -> int:
        """Count a failure of ``client``; return how many it has had recently."""
        now = time.monotonic()
        count, last = self._failures.pop(client, (0, now))
        count = count + 1 if now - last < self.memory else 1
        if len(self._failures) >= self.size:
            self._failures.pop(next(iter(self._failures)))  # the least recent
        self._failures[client] = (count, now)
        return count

    def forget(self, client: str) -> None:
        """A successful login clears the client's record."""
        self._failures.pop(client, None)


async def authenticate(ingest: Ingest, api_key: str) -> Caller | None:
    """The caller of ``api_key`` if that key may send: the one place the door checks a key
    (revoked keys are refused within seconds, as over HTTP)."""
    caller = await ingest.tenants.caller(api_key)
    return caller if caller is not None and Scope.SEND in caller.key.settings.scopes else None


class SubmissionHandler:
    """aiosmtpd's hooks: the recipient limit, and DATA turned into one ``accept``."""

    def __init__(self, ingest: Ingest, tracer: Tracer) -> None:
        self.ingest = ingest
        self.tracer = tracer

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return f"452 4.5.3 Too many recipients: at most {MAX_RECIPIENTS} per message"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        api_key = session.auth_data
        assert isinstance(api_key, str)  # DATA needs AUTH, whose data is the key
        try:  # again: a key revoked since the login is refused within seconds, as over HTTP
            caller = await authenticate(self.ingest, api_key)
        except DATABASE_DOWN as error:
            log.warning("could not check an SMTP session's key: %r", error)
            return UNAVAILABLE
        if caller is None:
            return KEY_WITHDRAWN
        tenant = caller.tenant
        data = envelope.original_content or b""
        with self.tracer.start_as_current_span("smtp submission", kind=SpanKind.SERVER) as span:
            span.set_attribute("sendarix.tenant_id", tenant.id)
            span.set_attribute("smtp.recipients", len(envelope.rcpt_tos))
            span.set_attribute("smtp.message_bytes", len(data))
            reply = await self._submit(caller, data, envelope.rcpt_tos)
            span.set_attribute("smtp.reply", reply[:9])
        return reply

    async def _submit(self, caller: Caller, data: bytes, recipients: list[str]) -> str:
        """The reply to one submitted message; never raises (a bug answers 451, not 500)."""
        tenant = caller.tenant
        read = await asyncio.to_thread(read_submission, data, recipients)
        if isinstance(read, list):
            return refusal_reply(read)
        if wait := self.ingest.send_rates.retry_after(caller, len(read.request.to)):
            return f"451 4.7.1 Over the send rate of this tenant or key; retry in {wait} s"
        try:  # a client that hangs up meanwhile does not cut the accepting short
            outcome = await asyncio.shield(self._accept(caller, read))
        except (KafkaError, TimeoutError, *DATABASE_DOWN) as error:
            log.warning("could not accept a message of %s over SMTP: %r", tenant.id, error)
            return UNAVAILABLE
        except Exception:
            log.exception("accepting a message of %s over SMTP failed", tenant.id)
            return UNAVAILABLE
        if isinstance(outcome, Refused):
            return refusal_reply(outcome.violations)
        return accepted_reply([message.id for message in outcome.response.messages])

    async def _accept(self, caller: Caller, submission: Submission) -> Outcome:
        request = submission.request
        ids = fresh_message_ids(len(request.to))
        async with gate.turn(LANE_RANK[requested_rank_lane(request)]):
            return await accept(
                self.ingest,
                caller.tenant,
                request,
                ids,
                otel_context.get_current(),
                submission.idempotency_key,
                caller.key,
                door="smtp",
            )


def _secret(credentials: LoginPassword) -> str:
    """The API key a login gave as its password."""
    return credentials.password.decode("utf-8", "replace")


class SubmissionSMTP(LimitedSMTP):
    """aiosmtpd's SMTP protocol with the API key checked asynchronously and RFC wording.

    aiosmtpd calls its ``authenticator`` synchronously, but a key is looked up in the database;
    so ``_authenticate`` only hands the decoded credentials on, and ``auth_PLAIN``/``auth_LOGIN``
    check them before answering.
    """

    def __init__(
        self,
        handler: SubmissionHandler,
        failures: AuthFailures,
        sessions: SessionLimits,
        **options: Any,
    ) -> None:
        super().__init__(handler, sessions, **options)
        self.door = handler
        self.failures = failures

    async def push(self, status: AnyStr) -> None:
        if isinstance(status, str):
            status = REWORDED.get(status, status)
        await super().push(status)

    def _authenticate(self, mechanism: str, auth_data: Any) -> AuthResult:
        return AuthResult(success=True, auth_data=auth_data)

    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:
        return await self._checked(await super().auth_PLAIN(_, args))

    async def auth_LOGIN(self, _: Any, args: list[str]) -> AuthResult:
        return await self._checked(await super().auth_LOGIN(_, args))

    async def _checked(self, decoded: AuthResult) -> AuthResult:
        """The tenant of the password (an API key), or a refusal slowed by repeated guesses."""
        if not decoded.success:
            return decoded
        credentials = decoded.auth_data
        assert isinstance(credentials, LoginPassword)
        try:
            caller = await authenticate(self.door.ingest, _secret(credentials))
        except DATABASE_DOWN as error:
            log.warning("could not check an SMTP login: %r", error)
            return AuthResult(
                success=False, handled=False, message="454 4.7.0 Temporary authentication failure"
            )
        client = self._client()
        if caller is None:
            await asyncio.sleep(auth_delay(self.failures.add(client)))
            return AuthResult(
                success=False,
                handled=False,
                message="535 5.7.8 Authentication credentials invalid: the password is an API key"
                " with the send scope",
            )
        self.failures.forget(client)
        return AuthResult(success=True, auth_data=_secret(credentials))

    def _client(self) -> str:
        return client_of(self.session.peer if self.session is not None else None)


class SmtpDoor:
    """The listening SMTP submission server of one ingest process."""

    def __init__(
        self, ingest: Ingest, tracer: Tracer | None = None, sessions: SessionLimits | None = None
    ) -> None:
        self.settings = ingest.settings
        self.handler = SubmissionHandler(ingest, tracer or trace.get_tracer(__name__))
        self.failures = AuthFailures()
        self.sessions = sessions or SessionLimits()
        self._listener = SmtpListener()

    async def start(self) -> None:
        """Listen on ``smtp_submission_host``/``port`` (a certificate is made on first use)."""
        settings = self.settings
        tls = await asyncio.to_thread(server_context, settings)
        loop = asyncio.get_running_loop()

        def protocol() -> SubmissionSMTP:
            return SubmissionSMTP(
                self.handler,
                self.failures,
                self.sessions,
                data_size_limit=MAX_MESSAGE_BYTES,
                hostname=settings.smtp_helo_name,
                ident="Sendarix",
                tls_context=tls,
                auth_required=True,
                auth_require_tls=True,
                timeout=settings.smtp_submission_idle_seconds,
                command_call_limit={"AUTH": AUTH_PER_SESSION, "*": UNLIMITED},
                loop=loop,
            )

        await self._listener.listen(
            protocol, settings.smtp_submission_host, settings.smtp_submission_port
        )

    @property
    def port(self) -> int:
        """The port the door listens on (the one the OS chose, when configured as 0)."""
        return self._listener.port

    async def stop(self) -> None:
        """Stop listening; sessions under way finish on their own."""
        await self._listener.close()
