"""What the sender tells operators: SMTP replies by class, how long an exchange takes, and how
long a message took from its acceptance to the destination's 2xx (per lane)."""

from __future__ import annotations

from datetime import datetime

from prometheus_client import Counter, Histogram

from libs.metrics import SECONDS_BUCKETS
from schemas.events import MessageState
from schemas.pipeline import DeliveryJob, SmtpReply

SMTP_REPLIES = Counter(
    "sendarix_smtp_replies",
    "Replies to delivery attempts by class: 2xx, 4xx, 5xx, or none (no reply: the connection "
    "failed or timed out).",
    ["lane", "route", "reply_class"],
)
SMTP_SECONDS = Histogram(
    "sendarix_smtp_attempt_duration_seconds",
    "One delivery attempt's SMTP exchange, from taking a connection to the reply to DATA.",
    ["lane", "route"],
    buckets=SECONDS_BUCKETS,
)
ACCEPT_TO_DELIVERED = Histogram(
    "sendarix_accept_to_delivered_seconds",
    "From a message's acceptance by ingest to the destination's 2xx reply, retries included.",
    ["lane"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0),
)
ATTEMPTS = Counter(
    "sendarix_delivery_attempts",
    "Delivery attempts by the state they reported: delivered, bounced, deferred (a retry is "
    "scheduled) or failed.",
    ["lane", "state"],
)


def reply_class(reply: SmtpReply | None) -> str:
    """``2xx``, ``4xx`` or ``5xx``; ``none`` for the sender's own code 0 (no reply came)."""
    if reply is None or reply.code < 200:
        return "none"
    return f"{reply.code // 100}xx"


def count_exchange(job: DeliveryJob, reply: SmtpReply | None, seconds: float) -> None:
    """One SMTP exchange of ``job`` that ended with ``reply``."""
    lane, route = job.message.lane.value, job.route.name
    SMTP_REPLIES.labels(lane, route, reply_class(reply)).inc()
    SMTP_SECONDS.labels(lane, route).observe(seconds)


def count_verdict(job: DeliveryJob, state: MessageState, at: datetime) -> None:
    """The state one attempt of ``job`` reported at ``at`` (made here, not replayed)."""
    lane = job.message.lane.value
    ATTEMPTS.labels(lane, state.value).inc()
    if state is MessageState.DELIVERED:
        seconds = (at - job.message.accepted_at).total_seconds()
        ACCEPT_TO_DELIVERED.labels(lane).observe(max(seconds, 0.0))
