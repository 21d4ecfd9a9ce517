"""What the feedback listener makes of one inbound message: pure decisions, no I/O.

A message comes back to a token address at the bounce domain (``libs.verp``): the signed return
path of the message it is about (a DSN, a complaint report, an auto-reply) or the mailto form of
its unsubscribe link. Once the token is checked against the logged message, the report read
(``libs.feedback_report``) decides what to report — or why nothing: a report must also be about
that message and its recipient, or a genuine token could carry a report about anything.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from libs.feedback_report import FeedbackKind, FeedbackReport, RecipientReport
from libs.message_tokens import MessageToken, Purpose
from libs.suppressions import normalise_address
from libs.verp import UNSUBSCRIBE_LOCAL, bounce_domain, read_return_path, read_token_address
from schemas.events import Bounce, BounceCategory, MessageState
from schemas.pipeline import SmtpReply

NO_SUCH_ADDRESS = "550 5.1.1 No such mailbox: this domain takes feedback about Sendarix mail only"
ACCEPTED_RCPT = "250 2.1.5 OK"
STATUS_CLASS_CODE = {"2": 250, "4": 450, "5": 550}
"""The basic reply code of an enhanced status's class, for a DSN that gives no reply code."""


class Ignored(StrEnum):
    """Why a message at the bounce domain changes nothing (each is counted)."""

    AUTO_REPLY = "auto_reply"
    """An out-of-office or other automatic answer (RFC 3834): the address is alive."""
    UNREADABLE = "unreadable"
    """Not a bounce, delay or complaint that can be read (garbage, or some other mail)."""
    FORGED_TOKEN = "forged_token"
    """A token not made for the message it names: forged, or another tenant's or message's."""
    OTHER_MESSAGE = "other_message"
    """The returned original is another message than the one the token names."""
    OTHER_RECIPIENT = "other_recipient"
    """The report is about a recipient the message was not sent to."""
    NO_FAILURE = "no_failure"
    """A DSN that reports a delivery or relay, not a failure."""


@dataclass(frozen=True)
class Addressed:
    """A token address of the bounce domain: what it is for, and its (unverified) token."""

    purpose: Purpose
    token: MessageToken


@dataclass(frozen=True)
class Feedback:
    """What to report about the message: the state, and what the event says of it."""

    state: MessageState
    bounce: Bounce | None = None
    smtp: SmtpReply | None = None
    feedback_type: str | None = None


@dataclass(frozen=True)
class LoggedMessage:
    """What the listener checks a report against: the message's id and recipient, as logged."""

    message_id: str
    recipient: str


def addressed(
    address: str, bounce_address: str, return_path_domains: Iterable[str] = ()
) -> Addressed | None:
    """The token address ``address`` is (any case), if it is one of the bounce domain (or, for
    a return path, of one of ``return_path_domains``: the return-path domains of IP pools)."""
    if (token := read_return_path(address, bounce_address, return_path_domains)) is not None:
        return Addressed(Purpose.RETURN_PATH, token)
    domain = bounce_domain(bounce_address)
    if (token := read_token_address(address, UNSUBSCRIBE_LOCAL, domain)) is not None:
        return Addressed(Purpose.UNSUBSCRIBE, token)
    return None


def rcpt_reply(address: str, bounce_address: str, return_path_domains: Iterable[str] = ()) -> str:
    """The answer to ``RCPT TO``: only token addresses exist here (checked at DATA: a token is
    verified against the logged message, and a guesser learns nothing from the answer)."""
    found = addressed(address, bounce_address, return_path_domains)
    return ACCEPTED_RCPT if found is not None else NO_SUCH_ADDRESS


def judge_report(report: FeedbackReport, message: LoggedMessage) -> Feedback | Ignored:
    """What a report returned to a message's genuine return path says about it."""
    if report.kind is FeedbackKind.AUTO_REPLY:
        return Ignored.AUTO_REPLY
    if report.kind is FeedbackKind.OTHER:
        return Ignored.UNREADABLE
    if not _about(report, message.message_id):
        return Ignored.OTHER_MESSAGE
    mine = [r for r in report.recipients if _same_address(r.address, message.recipient)]
    if report.recipients and not mine:
        return Ignored.OTHER_RECIPIENT
    if report.kind is FeedbackKind.COMPLAINT:
        return Feedback(MessageState.COMPLAINED, feedback_type=report.feedback_type or "abuse")
    if not mine:  # a bounce or delay must say which recipient it is about
        return Ignored.UNREADABLE
    return _delivery_status(mine[0], report.kind)


def _delivery_status(recipient: RecipientReport, kind: FeedbackKind) -> Feedback | Ignored:
    """The event of a DSN's recipient: ``bounced`` for a failure, ``delayed`` for a delay."""
    action = (recipient.action or "").lower()
    if action == "failed" or (not action and kind is FeedbackKind.BOUNCE):
        state, hard = MessageState.BOUNCED, recipient.hard_bounce
    elif action == "delayed" or (not action and kind is FeedbackKind.DELAY):
        state, hard = MessageState.DELAYED, False
    else:
        return Ignored.NO_FAILURE
    category = recipient.category or BounceCategory.OTHER
    bounce = Bounce(category=category, hard=hard, is_async=True)
    return Feedback(state, bounce=bounce, smtp=_reply(recipient))


def _reply(recipient: RecipientReport) -> SmtpReply | None:
    """The remote server's reply as the DSN reports it (None when it reports none)."""
    status = recipient.status
    code = recipient.reply_code or (STATUS_CLASS_CODE.get(status[0]) if status else None)
    if code is None:
        return None
    return SmtpReply(code=code, enhanced_status=status, text=recipient.diagnostic or "")


def _about(report: FeedbackReport, message_id: str) -> bool:
    """False when the returned original names another message than ``message_id`` (it may
    name none: many reports return no original, or only part of its headers)."""
    named = report.original_headers.get("x-sendarix-message-id")
    if named is None and report.original_message_id:
        named = report.original_message_id.rpartition("@")[0] or report.original_message_id
    return named is None or named.strip().lower() == message_id.lower()


def _same_address(reported: str, recipient: str) -> bool:
    """Whether a report's recipient is the message's, compared as suppressions key addresses
    (the bare address, lower-cased: case-insensitive for every provider that matters)."""
    return normalise_address(reported) == normalise_address(recipient)
