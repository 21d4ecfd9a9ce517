"""The permission step of accepting: what the caller's API key allows it to send.

A key restricted to some sending domains may only send ``from`` those domains (or their
subdomains); a key restricted to some streams only in those streams. The topic door has no key:
a record on ``sendarix.send.requests`` is bound by its tenant's rules only (its sending domains),
since whoever may produce to the topic is trusted as the tenant itself.
"""

from __future__ import annotations

from libs.keys import ApiKey
from libs.sendable import domain_of
from schemas.common import Mailbox, Stream
from services.ingest.validate import Violation, pointer, sender_allowed


def key_refusal(key: ApiKey | None, sender: Mailbox, stream: Stream) -> Violation | None:
    """Why ``key`` may not send this message, or None when it may (or there is no key)."""
    if key is None:
        return None
    domains, streams = key.settings.domains, key.settings.streams
    domain = domain_of(sender.address)
    if domains is not None and not sender_allowed(domain, domains):
        return Violation(
            "key_not_permitted",
            pointer("from"),
            f"this API key may not send from {domain} (it may use: {', '.join(domains) or 'none'})",
        )
    if streams is not None and stream not in streams:
        allowed = ", ".join(s.value for s in streams) or "none"
        return Violation(
            "key_not_permitted",
            pointer("stream"),
            f"this API key may not send in the {stream.value} stream (it may use: {allowed})",
        )
    return None
