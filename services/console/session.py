"""Who is logged in to the console, and the checks every request and every control passes.

The session is a cookie holding the user's API key, encrypted and authenticated (Fernet, under
a key derived from ``console_secret``): the console keeps no state, and each request calls the
gateway with that key, so a revoked key ends its sessions at once. The cookie is HttpOnly and
SameSite=Strict. Every control (a POST) must also carry the session's CSRF token, and a
browser's ``Origin``, when sent, must be the console's own.
"""

from __future__ import annotations

import base64
import hmac
import json
import secrets
from dataclasses import asdict, dataclass
from typing import Annotated

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from fastapi import Depends, HTTPException, Request

from libs.settings import Settings

COOKIE = "sendarix_console"
LOGIN_CSRF_COOKIE = "sendarix_console_login"
"""The log-in form's own CSRF token (there is no session yet to hold one)."""
KEY_INFO = b"sendarix console session v1"


class LoginRequired(Exception):
    """No valid session: the user is sent to the log-in page."""


@dataclass(frozen=True)
class Session:
    """A logged-in user: their key and what the gateway said about it at log-in."""

    api_key: str
    tenant_id: str
    tenant_name: str
    key_name: str
    scopes: tuple[str, ...]
    operator: bool
    csrf: str

    @property
    def can_write(self) -> bool:
        """Whether the key may use the controls (the gateway checks again)."""
        return "admin" in self.scopes


def session_fernet(settings: Settings) -> Fernet:
    """The cipher of the session cookies: from ``console_secret``, else ``token_secret``, else
    a random key of this process."""
    secret = settings.console_secret or settings.token_secret or _process_secret()
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=KEY_INFO).derive(
        secret.encode()
    )
    return Fernet(base64.urlsafe_b64encode(derived))


_PROCESS_SECRET: list[str] = []


def _process_secret() -> str:
    if not _PROCESS_SECRET:
        _PROCESS_SECRET.append(secrets.token_urlsafe(32))
    return _PROCESS_SECRET[0]


def seal(fernet: Fernet, session: Session) -> str:
    """The cookie value of ``session``."""
    return fernet.encrypt(json.dumps(asdict(session)).encode()).decode()


def unseal(fernet: Fernet, cookie: str, max_age_seconds: int) -> Session | None:
    """The session in ``cookie``, or None when it is forged, tampered with or too old."""
    try:
        fields = json.loads(fernet.decrypt(cookie.encode(), ttl=max_age_seconds))
        return Session(**{**fields, "scopes": tuple(fields["scopes"])})
    except (InvalidToken, ValueError, TypeError, KeyError):
        return None


def current_session(request: Request) -> Session | None:
    """The request's session, or None when it has none that is valid."""
    cookie = request.cookies.get(COOKIE)
    if not cookie:
        return None
    settings: Settings = request.app.state.settings
    return unseal(request.app.state.fernet, cookie, int(settings.console_session_hours * 3600))


def _session(request: Request) -> Session:
    found = current_session(request)
    if found is None:
        raise LoginRequired
    return found


SessionDep = Annotated[Session, Depends(_session)]


def tokens_match(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def same_origin(request: Request) -> bool:
    """Whether a browser's request comes from the console's own pages (no ``Origin``: not a
    cross-site browser request, e.g. a script — the token still has to match)."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return origin == f"{request.url.scheme}://{request.url.netloc}"


async def _checked_form(request: Request, session: SessionDep) -> dict[str, str]:
    form = await request.form()
    fields = {name: value for name, value in form.items() if isinstance(value, str)}
    if not same_origin(request) or not tokens_match(fields.get("csrf"), session.csrf):
        raise HTTPException(403, "the form is stale or came from another site; reload the page")
    return fields


FormDep = Annotated[dict[str, str], Depends(_checked_form)]
"""A POSTed form whose CSRF token and origin were checked."""


async def _checked_header(request: Request, session: SessionDep) -> Session:
    if not same_origin(request) or not tokens_match(
        request.headers.get("x-csrf-token"), session.csrf
    ):
        raise HTTPException(403, "missing or wrong X-CSRF-Token")
    return session


CsrfHeaderDep = Annotated[Session, Depends(_checked_header)]
"""The session of a script's POST that carried the CSRF token in ``X-CSRF-Token``."""
