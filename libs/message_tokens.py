"""Tokens that name one message and prove Sendarix wrote them: the signed VERP return path and
the one-click unsubscribe link.

Both reach the outside world in mail and come back from it — a bounce to the return path, a
POST to the link — and are the only proof that whoever sends them back speaks of a message we
sent. So each carries a truncated HMAC-SHA256, keyed by the server secret
(``SENDARIX_TOKEN_SECRET``), over a purpose, the message's tenant and id (and, for an
unsubscribe, its stream): a token of one purpose never passes for another, and a token made for
one message never names another, nor another tenant's. A token is written
``<message id as 32 hex>.<MAC as 20 hex>``, all lowercase, so a mail server that lowercases
the local part of an address does not break it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid
from dataclasses import dataclass
from enum import StrEnum

from libs.settings import Settings

MAC_CHARS = 20
"""Hex digits of the HMAC kept in a token: 80 bits (a forger must guess 2**80 times, online),
and ``bounces+<token>`` stays within RFC 5321's 64-octet local part."""
_TOKEN = re.compile(rf"(?P<message>[0-9a-fA-F]{{32}})\.(?P<mac>[0-9a-fA-F]{{{MAC_CHARS}}})")


class Purpose(StrEnum):
    """What a token is for; part of what is signed, so one never passes for another."""

    RETURN_PATH = "return-path"
    UNSUBSCRIBE = "unsubscribe"


class MissingSecret(RuntimeError):
    """``SENDARIX_TOKEN_SECRET`` is not set."""


TOKEN_CHARS = 32 + 1 + MAC_CHARS
"""``<message id hex>.<mac>``."""
MAX_LOCAL_PART = 64
"""RFC 5321 4.5.3.1.1: the longest local part every server must take."""


class BadBounceAddress(ValueError):
    """``SENDARIX_BOUNCE_ADDRESS`` cannot carry ``<local>+<token>`` addresses."""


def signing_key(settings: Settings) -> bytes:
    """The secret tokens are signed with. Required: every process that signs or checks tokens
    refuses to start without one (every local profile sets its own) — and without a bounce
    address whose ``<local>+<token>`` form is deliverable, rather than failing each message."""
    if not settings.token_secret:
        raise MissingSecret("SENDARIX_TOKEN_SECRET must be set (a long random string)")
    local, at, domain = settings.bounce_address.rpartition("@")
    if not (at and local and domain) or "+" in local or "@" in local:
        raise BadBounceAddress(f"{settings.bounce_address!r} is not local@domain without a '+'")
    if len(local) + 1 + TOKEN_CHARS > MAX_LOCAL_PART:
        longest = MAX_LOCAL_PART - 1 - TOKEN_CHARS
        raise BadBounceAddress(f"the bounce address's local part is longer than {longest}")
    return settings.token_secret.encode()


def _mac(
    key: bytes, purpose: Purpose, tenant_id: str, message_id: str, extra: tuple[str, ...]
) -> str:
    text = "\x00".join((purpose.value, tenant_id.lower(), message_id.lower(), *extra))
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()[:MAC_CHARS]


@dataclass(frozen=True)
class MessageToken:
    """A message id and the MAC that vouches for it, as read back (unverified until
    ``verified`` says so)."""

    message_id: str
    mac: str

    def __str__(self) -> str:
        return f"{uuid.UUID(self.message_id).hex}.{self.mac}"

    @classmethod
    def parse(cls, text: str) -> MessageToken | None:
        """The token written as ``text`` (any case), if it has a token's shape."""
        if (found := _TOKEN.fullmatch(text)) is None:
            return None
        return cls(str(uuid.UUID(hex=found["message"])), found["mac"].lower())

    def verified(self, key: bytes, purpose: Purpose, tenant_id: str, *extra: str) -> bool:
        """Whether ``sign`` made this token for ``purpose`` and the tenant's message (and
        ``extra``); compared in constant time."""
        expected = _mac(key, purpose, tenant_id, self.message_id, extra)
        return hmac.compare_digest(expected.encode(), self.mac.encode())


def sign(
    key: bytes, purpose: Purpose, tenant_id: str, message_id: str, *extra: str
) -> MessageToken:
    """The token of one message of a tenant for ``purpose`` (``extra``, e.g. a stream, signed
    with it: the checker must know it from elsewhere, the token does not carry it)."""
    canonical = str(uuid.UUID(message_id))
    return MessageToken(canonical, _mac(key, purpose, tenant_id, canonical, extra))
