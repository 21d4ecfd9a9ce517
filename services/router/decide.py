"""Where, how and until when a message is delivered: route, IP pool, source address, fallbacks,
retry window — one pure decision over the tenant's routing book (``libs.routes.RoutingBook``).

The route: the one a customer rule forces, else the mailbox simulator for its domain, else the
tenant's default route, else the built-in relay. The pool: the one a rule forces, else the
security pool for critical and high mail (OTPs never share a reputation with bulk), else the
route's own, else the lane's. The retry window follows the lane, never the category: a
``critical`` receipt is as short-lived as a one-time code.
"""

from __future__ import annotations

from datetime import UTC, datetime

from libs.ip_pools import choose_source
from libs.routes import RoutingBook, TenantRoute, fallback_chain
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

MAX_FALLBACKS = 3
"""The fallbacks a job carries: enough for a route and its backups to fail over."""

SCHEDULED_REPLY = SmtpReply(code=0, text="scheduled for send_at")
"""The reply a scheduled send is deferred with (no SMTP server was asked yet)."""


def recipient_domain(recipient: str) -> str:
    """The lower-cased domain of an address (empty for a string that is not one)."""
    _, at, domain = recipient.rpartition("@")
    return domain.strip().rstrip(">").lower() if at else ""


def ip_pool(lane: Lane, stream: Stream) -> Pool:
    """The built-in IP pool whose reputation the lane's mail is sent on."""
    if lane is Lane.BULK or stream is Stream.BROADCAST:
        return Pool.BULK
    if lane in (Lane.CRITICAL, Lane.HIGH):
        return Pool.SECURITY
    return Pool.TRANSACTIONAL


def chosen_route(
    spec: MessageSpec, book: RoutingBook, settings: Settings, directive: RoutingDirective | None
) -> TenantRoute:
    """The route ``spec`` goes through (a forced route the tenant has since removed is passed
    over, as if no rule had forced one)."""
    forced = directive.route if directive is not None else None
    if forced is not None and forced in book.routes:
        return book.routes[forced]
    if recipient_domain(spec.recipient.address) == settings.simulator_domain.lower():
        return book.routes[RouteName.SIMULATOR]
    return book.default_route or book.routes[RouteName.DEFAULT_RELAY]


def chosen_pool(
    spec: MessageSpec, route: TenantRoute, book: RoutingBook, directive: RoutingDirective | None
) -> str:
    """The name of the pool ``spec`` is sent from over ``route``."""
    forced = directive.pool if directive is not None else None
    if forced is not None and forced in book.pools and forced != Pool.SECURITY:
        return forced
    lane_pool = ip_pool(spec.lane, spec.stream)
    if lane_pool is Pool.SECURITY:
        return lane_pool.value
    if route.pool is not None and route.pool in book.pools:
        return route.pool
    return lane_pool.value


def delivery_route(
    spec: MessageSpec,
    route: TenantRoute,
    book: RoutingBook,
    settings: Settings,
    now: datetime,
    directive: RoutingDirective | None = None,
) -> Route:
    """``route`` as the sender takes it for ``spec``: where to connect, how, from which
    address, and where its login is kept (never the password itself)."""
    host, port = route.server(settings)
    pool = book.pools[chosen_pool(spec, route, book, directive)]
    return Route(
        name=route.name,
        kind=route.kind,
        host=host,
        port=port,
        pool=pool.name,
        tls=route.tls,
        auth=route.auth,
        credentials=f"{spec.tenant_id}/{route.name}" if route.auth is not None else None,
        username=route.username,
        source=choose_source(pool, spec.message_id, now),
        return_path_domain=pool.return_path_domain,
        timeout_seconds=route.timeout_seconds,
    )


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def delivery_job(
    rendered: RenderedMessage, book: RoutingBook, settings: Settings, now: datetime
) -> DeliveryJob:
    """The first delivery attempt of a message, with its route's fallbacks (never a route
    twice); its window (its lane's, in ``book``) opens at acceptance or ``send_at``."""
    spec = rendered.message
    directive = rendered.directive
    route = chosen_route(spec, book, settings, directive)
    fallbacks = fallback_chain(route.name, book.routes)[:MAX_FALLBACKS]
    starts = max(_utc(spec.accepted_at), _utc(spec.send_at or spec.accepted_at))
    return DeliveryJob(
        message=spec,
        content=rendered.content,
        route=delivery_route(spec, route, book, settings, now, directive),
        fallbacks=[
            delivery_route(spec, book.routes[name], book, settings, now, directive)
            for name in fallbacks
        ],
        attempt=1,
        retry_until=starts + book.windows[spec.lane],
    )


def scheduled_send(job: DeliveryJob, now: datetime) -> RetryRequest | None:
    """The deferral that holds ``job`` until its ``send_at``, or None when it may go now."""
    send_at = job.message.send_at
    if send_at is None or _utc(send_at) <= now:
        return None
    return RetryRequest(job=job, due_at=_utc(send_at), reply=SCHEDULED_REPLY)
