"""What an SMTP reply means for a message: delivered, bounced, deferred for a retry, or failed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from libs.bounces import reply_bounce, split_status
from libs.settings import Settings
from schemas.common import Problem
from schemas.events import Bounce, MessageState
from schemas.pipeline import DeliveryJob, RetryRequest, SmtpReply
from services.sender.backoff import lane_backoff, next_attempt_at
from services.sender.sites import speaks_of_rate

RETRY_WINDOW_EXHAUSTED = "expired"
DELIVERY_OUTCOME_UNKNOWN = "delivery_outcome_unknown"

SERVICE_UNAVAILABLE = 421
AUTH_FAILURES = frozenset({454, 530, 534, 535, 538})
"""RFC 4954's replies to AUTH (and to mail without the TLS or AUTH the server requires): the
route's login or settings are wrong, the recipient is not refused."""


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
    """2xx delivered, 5xx bounced; 4xx, the sender's own code 0 (network error) and a refused
    AUTH (the route's fault, not the recipient's) deferred."""
    if 200 <= reply.code < 300:
        return MessageState.DELIVERED
    if reply.code >= 500 and reply.code not in AUTH_FAILURES:
        return MessageState.BOUNCED
    return MessageState.DEFERRED


def is_route_fault(reply: SmtpReply) -> bool:
    """Whether a deferral is the route's doing rather than the recipient's: no connection
    (code 0), a server closing on us without a word of rate (421), a refused AUTH. A full
    mailbox or greylisting stays on the route; so does throttling (the site is shaped)."""
    if reply.code in (0, *AUTH_FAILURES):
        return True
    return reply.code == SERVICE_UNAVAILABLE and not speaks_of_rate(reply)


def on_fallback(job: DeliveryJob) -> DeliveryJob:
    """``job`` moved to its first fallback route (unchanged when it has none)."""
    if not job.fallbacks:
        return job
    return job.model_copy(update={"route": job.fallbacks[0], "fallbacks": job.fallbacks[1:]})


def expired(job: DeliveryJob, reply: SmtpReply | None) -> Verdict:
    """The verdict on a message whose retry window closed before it could be delivered."""
    problem = Problem(
        code=RETRY_WINDOW_EXHAUSTED,
        detail=f"not delivered when its retry window closed at {job.retry_until.isoformat()}",
    )
    return Verdict(MessageState.FAILED, reply, problem)


def judge(job: DeliveryJob, reply: SmtpReply, now: datetime, settings: Settings) -> Verdict:
    """The verdict on ``reply`` to ``job`` received at ``now``.

    A deferral is retried while the message's retry window lasts and fails once it is over;
    when the route is at fault, the retry goes over the route's first fallback.
    """
    state = classify_reply(reply)
    if state is MessageState.BOUNCED:
        return Verdict(state, reply, bounce=reply_bounce(reply))
    if state is not MessageState.DEFERRED:
        return Verdict(state, reply)
    if now >= job.retry_until:
        return expired(job, reply)
    base, cap = lane_backoff(job.message.lane, settings)
    due_at = next_attempt_at(job.message.message_id, job.attempt, now, job.retry_until, base, cap)
    again = on_fallback(job) if is_route_fault(reply) else job
    retry = RetryRequest(
        job=again.model_copy(update={"attempt": job.attempt + 1}), due_at=due_at, reply=reply
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
