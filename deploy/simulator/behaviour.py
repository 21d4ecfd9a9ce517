"""What each simulator mailbox does: pure decisions from an address and an attempt number."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

THROTTLED_ATTEMPTS = 3
"""How many attempts of one message ``throttle@`` turns away before accepting it."""

SLOW_MARGIN_SECONDS = 2.0
"""How much longer than the sender's SMTP timeout ``slow@`` takes to answer."""


class Behaviour(StrEnum):
    """How a mailbox treats the messages sent to it (named after its local part)."""

    SUCCESS = "success"
    BOUNCE = "bounce"
    SOFTBOUNCE = "softbounce"
    THROTTLE = "throttle"
    COMPLAINT = "complaint"
    OOTO = "ooto"
    SLOW = "slow"
    UNKNOWN = "unknown"


class FollowUp(StrEnum):
    """A message a mailbox sends back to the envelope sender after accepting one."""

    COMPLAINT = "complaint"
    AUTO_REPLY = "auto_reply"


@dataclass(frozen=True)
class Reply:
    """An SMTP reply line as the simulator sends it."""

    code: int
    status: str
    text: str

    def __str__(self) -> str:
        return f"{self.code} {self.status} {self.text}"


ACCEPTED = Reply(250, "2.0.0", "OK: message accepted")
NO_SUCH_MAILBOX = Reply(550, "5.1.1", "No such mailbox")
MAILBOX_FULL = Reply(452, "4.2.2", "Mailbox full, try again later")
THROTTLED = Reply(421, "4.7.0", "Too many messages, slow down and try again later")

_RCPT_REPLIES = {
    Behaviour.BOUNCE: NO_SUCH_MAILBOX,
    Behaviour.SOFTBOUNCE: MAILBOX_FULL,
    Behaviour.UNKNOWN: NO_SUCH_MAILBOX,
}
_FOLLOW_UPS = {Behaviour.COMPLAINT: FollowUp.COMPLAINT, Behaviour.OOTO: FollowUp.AUTO_REPLY}


def behaviour_for(address: str, domain: str) -> Behaviour:
    """The behaviour of ``address``: its local part without ``+label``, case-insensitive.

    Addresses outside the simulator's ``domain`` do not exist.
    """
    local, _, address_domain = address.strip().strip("<>").lower().rpartition("@")
    if address_domain != domain.lower():
        return Behaviour.UNKNOWN
    mailbox = local.split("+", 1)[0]
    try:
        return Behaviour(mailbox)
    except ValueError:
        return Behaviour.UNKNOWN


def rcpt_reply(behaviour: Behaviour) -> Reply:
    """The answer to ``RCPT TO``: hard and soft bounces refuse the recipient here."""
    return _RCPT_REPLIES.get(behaviour, ACCEPTED)


def rcpt_delay(behaviour: Behaviour, sender_timeout_seconds: float) -> float:
    """Seconds to wait before answering ``RCPT TO``; ``slow@`` outlasts the sender's timeout."""
    if behaviour is Behaviour.SLOW:
        return sender_timeout_seconds + SLOW_MARGIN_SECONDS
    return 0.0


def data_reply(behaviour: Behaviour, attempt: int) -> Reply:
    """The answer at the end of ``DATA`` to the ``attempt``-th delivery of one message."""
    if behaviour is Behaviour.THROTTLE and attempt <= THROTTLED_ATTEMPTS:
        return THROTTLED
    return ACCEPTED


def follow_up(behaviour: Behaviour) -> FollowUp | None:
    """What the mailbox sends back once it accepted a message, if anything."""
    return _FOLLOW_UPS.get(behaviour)
