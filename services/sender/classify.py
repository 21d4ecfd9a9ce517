"""What an SMTP reply means for a message: delivered, bounced, deferred for a retry, or failed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from libs.bounces import reply_bounce, split_status
from libs.settings import Settings
from schemas.common import Problem
from schemas.events import Bounce, MessageState
from schemas.pipeline import DeliveryJob, RetryRequest, SmtpReply
from services.sender.backoff import next_attempt_at

RETRY_WINDOW_EXHAUSTED = "retry_window_exhausted"
DELIVERY_OUTCOME_UNKNOWN = "delivery_outcome_unknown"


@dataclass(frozen=True)
class Verdict:
    """The outcome of one attempt: the state to report, for a deferral the next attempt, and
    for a bounce or a deferral how the reply was classified."""

    state: MessageState
    reply: SmtpReply | None
    problem: Problem | None = None
    retry: RetryRequest | None = None
    bounce: Bounce | None = None


def smtp_reply(code: int, message: str) -> SmtpReply:
    """A server reply as recorded: the RFC 3463 enhanced status split from the text."""
    status, text = split_status(message)
    return SmtpReply(code=code, enhanced_status=status, text=text)


def classify_reply(reply: SmtpReply) -> MessageState:
    """2xx delivered, 5xx bounced; 4xx and the sender's own code 0 (network error) deferred."""
    if 200 <= reply.code < 300:
        return MessageState.DELIVERED
    if reply.code >= 500:
        return MessageState.BOUNCED
    return MessageState.DEFERRED


def judge(job: DeliveryJob, reply: SmtpReply, now: datetime, settings: Settings) -> Verdict:
    """The verdict on ``reply`` to ``job`` received at ``now``.

    A deferral is retried while the message's retry window lasts and fails once it is over.
    """
    state = classify_reply(reply)
    if state is MessageState.BOUNCED:
        return Verdict(state, reply, bounce=reply_bounce(reply))
    if state is not MessageState.DEFERRED:
        return Verdict(state, reply)
    if now >= job.retry_until:
        problem = Problem(
            code=RETRY_WINDOW_EXHAUSTED,
            detail=f"still deferred when its retry window closed at {job.retry_until.isoformat()}",
        )
        return Verdict(MessageState.FAILED, reply, problem)
    due_at = next_attempt_at(
        job.message.message_id,
        job.attempt,
        now,
        job.retry_until,
        settings.retry_base_seconds,
        settings.retry_max_seconds,
    )
    retry = RetryRequest(
        job=job.model_copy(update={"attempt": job.attempt + 1}), due_at=due_at, reply=reply
    )
    return Verdict(MessageState.DEFERRED, reply, retry=retry, bounce=reply_bounce(reply))


def outcome_unknown(reply: SmtpReply | None) -> Verdict:
    """The verdict when DATA may or may not have reached the server: failed, never sent again.

    A second copy is worse for a one-time code than a message reported lost.
    """
    problem = Problem(
        code=DELIVERY_OUTCOME_UNKNOWN,
        detail="the attempt was interrupted during DATA; it may have been delivered,"
        " so it is not sent again",
    )
    return Verdict(MessageState.FAILED, reply, problem)
