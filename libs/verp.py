"""Token addresses at the bounce domain: the signed VERP return path and the unsubscribe mailto.

The envelope sender of every message names the message (variable envelope return path,
``bounces+<token>@<bounce domain>``), so a bounce, a complaint report or an auto-reply comes
back addressed to the message it is about; the token's MAC (``libs.message_tokens``) makes the
address unforgeable: whoever mails the bounce domain cannot make the feedback listener act on a
message by guessing its id. ``unsub+<token>@<bounce domain>`` is the mailto form of a message's
one-click unsubscribe.
"""

from __future__ import annotations

from collections.abc import Iterable

from libs.message_tokens import MAX_LOCAL_PART, MessageToken, Purpose, sign

UNSUBSCRIBE_LOCAL = "unsub"
UNSUBSCRIBE_PATH = "/v1/unsubscribe/"
"""Where the gateway serves a message's one-click unsubscribe link: ``<path><token>``."""


def bounce_domain(bounce_address: str) -> str:
    """The domain of the bounce address: where token addresses point, and the listener answers."""
    return bounce_address.rpartition("@")[2].lower()


def token_address(base: str, domain: str, token: MessageToken) -> str:
    """``<base>+<token>@<domain>`` (``signing_key`` refused, at start-up, a base too long)."""
    local = f"{base}+{token}"
    assert len(local) <= MAX_LOCAL_PART, local
    return f"{local}@{domain}"


def read_token_address(address: str, base: str, domain: str) -> MessageToken | None:
    """The token of ``<base>+<token>@<domain>`` (any case), if ``address`` is one."""
    local, _, at = address.strip().strip("<>").rpartition("@")
    prefix, plus, token = local.partition("+")
    if at.lower() != domain.lower() or not plus or prefix.lower() != base.lower():
        return None
    return MessageToken.parse(token)


def return_path(
    key: bytes, tenant_id: str, message_id: str, bounce_address: str, domain: str | None = None
) -> str:
    """The envelope sender (``MAIL FROM``) of one message: its signed VERP address, at the
    bounce domain or at ``domain`` (its IP pool's return-path domain, which the feedback
    listener answers too)."""
    base, _, bounce = bounce_address.rpartition("@")
    token = sign(key, Purpose.RETURN_PATH, tenant_id, message_id)
    return token_address(base, domain or bounce, token)


def read_return_path(
    address: str, bounce_address: str, other_domains: Iterable[str] = ()
) -> MessageToken | None:
    """The token of a VERP address at the bounce domain or one of ``other_domains`` (return-path
    domains of IP pools; empty ones are skipped), if ``address`` is one."""
    base, _, domain = bounce_address.rpartition("@")
    for candidate in (domain, *other_domains):
        if candidate and (token := read_token_address(address, base, candidate)) is not None:
            return token
    return None
