"""Where, how and until when a message is delivered: destination, IP pool, retry window.

Pools keep reputations apart: a bulk campaign that draws complaints must not slow down the
password resets sent from the "security" pool. Retry windows follow the message's usefulness:
a one-time code nobody received within 15 minutes is worthless, a receipt is not.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from libs.settings import Settings
from schemas.common import Lane, Stream
from schemas.pipeline import (
    DeliveryJob,
    MessageSpec,
    Pool,
    RenderedMessage,
    RetryRequest,
    Route,
    RouteName,
    RoutingDirective,
    SmtpReply,
)

SHORT_LIVED_CATEGORIES = frozenset(
    {"otp", "login_verification", "password_reset", "security_alert"}
)
SHORT_RETRY_WINDOW = timedelta(minutes=15)
DEFAULT_RETRY_WINDOW = timedelta(hours=24)

SCHEDULED_REPLY = SmtpReply(code=0, text="scheduled for send_at")
"""The reply a scheduled send is deferred with (no SMTP server was asked yet)."""


def recipient_domain(recipient: str) -> str:
    """The lower-cased domain of an address (empty for a string that is not one)."""
    _, at, domain = recipient.rpartition("@")
    return domain.strip().rstrip(">").lower() if at else ""


def ip_pool(lane: Lane, stream: Stream) -> Pool:
    """The IP pool whose reputation the message is sent on."""
    if lane is Lane.BULK or stream is Stream.BROADCAST:
        return Pool.BULK
    if lane in (Lane.CRITICAL, Lane.HIGH):
        return Pool.SECURITY
    return Pool.TRANSACTIONAL


def retry_window(category: str | None) -> timedelta:
    """How long after its sending began a message is still worth another attempt."""
    return SHORT_RETRY_WINDOW if category in SHORT_LIVED_CATEGORIES else DEFAULT_RETRY_WINDOW


def route_for(
    spec: MessageSpec, settings: Settings, directive: RoutingDirective | None = None
) -> Route:
    """The SMTP destination of ``spec``: the route a customer rule forces, else the mailbox
    simulator for its domain, else the relay; from the pool a rule forces, else its lane's."""
    forced = directive.route if directive is not None else None
    name = RouteName(forced) if forced is not None else None
    if name is None:
        simulated = recipient_domain(spec.recipient.address) == settings.simulator_domain.lower()
        name = RouteName.SIMULATOR if simulated else RouteName.DEFAULT_RELAY
    if name is RouteName.SIMULATOR:
        host, port = settings.simulator_host, settings.simulator_port
    else:
        host, port = settings.relay_host, settings.relay_port
    pool = directive.pool if directive is not None else None
    return Route(
        name=name.value,
        host=host,
        port=port,
        pool=pool or ip_pool(spec.lane, spec.stream).value,
        timeout_seconds=settings.smtp_timeout_seconds,
    )


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def delivery_job(rendered: RenderedMessage, settings: Settings) -> DeliveryJob:
    """The first delivery attempt of a message; its window opens at acceptance or ``send_at``."""
    spec = rendered.message
    starts = max(_utc(spec.accepted_at), _utc(spec.send_at or spec.accepted_at))
    return DeliveryJob(
        message=spec,
        content=rendered.content,
        route=route_for(spec, settings, rendered.directive),
        attempt=1,
        retry_until=starts + retry_window(spec.category),
    )


def scheduled_send(job: DeliveryJob, now: datetime) -> RetryRequest | None:
    """The deferral that holds ``job`` until its ``send_at``, or None when it may go now."""
    send_at = job.message.send_at
    if send_at is None or _utc(send_at) <= now:
        return None
    return RetryRequest(job=job, due_at=_utc(send_at), reply=SCHEDULED_REPLY)
