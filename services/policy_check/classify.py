"""What an SMTP rejection says about the recipient's address: dead for good, or not.

Only an address that cannot exist or receive (unknown mailbox, bad domain, disabled mailbox)
is suppressed after a bounce. Policy blocks, full mailboxes and rate limits are about the
message or the sender, and suppressing the recipient for them would lose mail they want.
"""

from __future__ import annotations

import re

from schemas.pipeline import SmtpReply

DEAD_ADDRESS_STATUSES = frozenset(
    {
        "5.1.1",  # bad destination mailbox address (user unknown)
        "5.1.2",  # bad destination system address (no such domain)
        "5.1.3",  # bad destination mailbox address syntax
        "5.1.6",  # mailbox has moved, no forwarding address
        "5.1.10",  # recipient address has null MX
        "5.2.1",  # mailbox disabled, not accepting messages
    }
)
"""RFC 3463 enhanced status codes that mean the recipient's address is dead."""

DEAD_ADDRESS_CODES = frozenset({550, 551, 553})
"""Basic reply codes of a rejected mailbox, trusted only without a hint of another cause."""

OTHER_CAUSE_HINTS = (
    "try again",
    "try later",
    "temporar",
    "greylist",
    "graylist",
    "rate limit",
    "too many",
    "quota",
    "mailbox full",
    "spam",
    "policy",
    "blocked",
    "blacklist",
    "blocklist",
)
"""Words of a plain 550-style reply that blame time, volume or policy rather than the address."""

_LEADING_STATUS = re.compile(r"^\s*(?:\d{3}[ -])?([245]\.\d{1,3}\.\d{1,3})\b")


def enhanced_status(reply: SmtpReply) -> str | None:
    """The reply's enhanced status code, also when it only appears at the start of its text."""
    if reply.enhanced_status:
        return reply.enhanced_status.strip()
    match = _LEADING_STATUS.match(reply.text)
    return match.group(1) if match else None


def is_dead_address(reply: SmtpReply) -> bool:
    """True when ``reply`` says the recipient's address will never accept mail."""
    status = enhanced_status(reply)
    if status is not None and status != "5.0.0":  # 5.0.0 says nothing: judge by code and text
        return status in DEAD_ADDRESS_STATUSES
    text = reply.text.lower()
    return reply.code in DEAD_ADDRESS_CODES and not any(hint in text for hint in OTHER_CAUSE_HINTS)
