"""Securing and logging in a new SMTP connection as its route asks: STARTTLS, then AUTH.

``opportunistic`` (direct-to-MX mail) upgrades when the server offers STARTTLS and does not
verify the certificate: RFC 7435 opportunistic security, where an unverified encryption is
still better than plain text and a failed verification would only make the mail go in clear.
``starttls`` (a relay that requires it) and ``implicit`` (port 465) verify the certificate
against the system's CAs and ``smtp_tls_ca_file``; a server that does not offer STARTTLS to a
``starttls`` route is not sent to. A recipient domain enforcing MTA-STS (``mta_sts``) makes a
direct-to-MX connection one of those: STARTTLS verified for the MX host's name, or nothing.

A refused AUTH is the route's problem, not the recipient's: it is reported as a deferral (code
0, the server's reply in the text) so the message waits while an admin fixes the credentials,
instead of bouncing every message sent meanwhile.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable
from pathlib import Path

import aiosmtplib
import asyncpg

from libs.route_secrets import load_secret
from libs.settings import Settings
from schemas.pipeline import AuthMethod, Route, TlsMode
from services.sender.mta_sts import StsMode

log = logging.getLogger(__name__)

PASSWORD_TTL_SECONDS = 30.0
"""How long a password read from the database is kept: a corrected one is used this soon."""


class StartTlsUnavailable(aiosmtplib.SMTPException):
    """The server does not offer STARTTLS, and the route requires it."""


class LoginRefused(aiosmtplib.SMTPException):
    """The route's AUTH login failed (or it has no password): a deferral, never a bounce."""


class TlsContexts:
    """The client TLS contexts, built once per process (loading CAs is not free)."""

    def __init__(self, ca_file: Path | None) -> None:
        self.verified = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        if ca_file is not None:
            self.verified.load_verify_locations(cafile=ca_file)
        self.unverified = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        self.unverified.check_hostname = False
        self.unverified.verify_mode = ssl.CERT_NONE

    def implicit(self, route: Route) -> ssl.SSLContext | None:
        """The context of a connection TLS from its first byte, if the route's is one."""
        return self.verified if route.tls is TlsMode.IMPLICIT else None


class RoutePasswords:
    """The AUTH passwords of routes (``libs.route_secrets``), kept briefly in the process."""

    def __init__(self, settings: Settings, pool: Callable[[], asyncpg.Pool]) -> None:
        self.settings = settings
        self._pool = pool
        self._known: dict[str, tuple[str | None, float]] = {}

    async def password(self, credentials: str) -> str | None:
        """The password of ``<tenant>/<route>`` (None: none is stored, or it cannot be read)."""
        known = self._known.get(credentials)
        if known is not None and known[1] > time.monotonic():
            return known[0]
        tenant_id, _, route = credentials.partition("/")
        password = await load_secret(self._pool(), self.settings, tenant_id, route)
        self._known[credentials] = (password, time.monotonic() + PASSWORD_TTL_SECONDS)
        return password

    def forget(self, credentials: str) -> None:
        """Read the password again next time (it was refused: it may be being fixed)."""
        self._known.pop(credentials, None)


async def secure(
    client: aiosmtplib.SMTP,
    route: Route,
    contexts: TlsContexts,
    server_name: str,
    mta_sts: StsMode | None = None,
) -> None:
    """EHLO, and STARTTLS as the route's TLS mode or the recipient domain's MTA-STS policy
    asks (then EHLO again, RFC 3207)."""
    await client.ehlo()
    if route.tls not in (TlsMode.OPPORTUNISTIC, TlsMode.STARTTLS):
        return
    enforced = mta_sts is StsMode.ENFORCE
    verified = route.tls is TlsMode.STARTTLS or enforced
    if not client.supports_extension("starttls"):
        if enforced:
            raise StartTlsUnavailable(
                f"{server_name} does not offer STARTTLS, which its domain's MTA-STS policy"
                " requires: nothing was sent"
            )
        if verified:
            raise StartTlsUnavailable(
                f"{server_name} does not offer STARTTLS, which route {route.name} requires:"
                " nothing was sent"
            )
        if mta_sts is StsMode.TESTING:
            log.warning("MTA-STS testing: %s does not offer STARTTLS", server_name)
        return
    await client.starttls(
        server_hostname=server_name,
        tls_context=contexts.verified if verified else contexts.unverified,
    )
    await client.ehlo()


async def log_in(client: aiosmtplib.SMTP, route: Route, passwords: RoutePasswords) -> None:
    """AUTH with the route's login, when it has one; raises ``LoginRefused``."""
    if route.auth is None:
        return
    if route.credentials is None or route.username is None:
        raise LoginRefused(f"route {route.name} uses AUTH but has no username or credentials")
    password = await passwords.password(route.credentials)
    if password is None:
        raise LoginRefused(f"route {route.name} has no password stored (or it cannot be read)")
    authenticate = client.auth_plain if route.auth is AuthMethod.PLAIN else client.auth_login
    try:
        await authenticate(route.username, password)
    except aiosmtplib.SMTPAuthenticationError as refused:
        passwords.forget(route.credentials)
        raise LoginRefused(
            f"the server refused route {route.name}'s login as {route.username}:"
            f" {refused.code} {refused.message}; the message waits until the credentials"
            " are fixed"
        ) from refused
