"""Which lane a request's messages travel in, and the critical lane's per-tenant rate cap.

The category table decides (``schemas.common.lane_for``): a tenant may lower its mail's
priority at will and raise transactional mail up to its ceiling, never into ``critical``. Even
genuine security mail enters the critical lane at most at the tenant's rate (a token bucket per
tenant, in this ingest process); beyond it the messages still go, in ``high`` — so a tenant that
labels a flood ``otp`` cannot delay another tenant's one-time codes.
"""

from __future__ import annotations

from dataclasses import dataclass

from libs.tenants import Tenant
from schemas.common import Lane, lane_for, natural_lane
from schemas.send import SendRequest
from services.ingest.buckets import Limit, TokenBuckets


@dataclass(frozen=True)
class LaneChoice:
    """The lane of a request's messages, and why (the ``accepted`` event says it)."""

    lane: Lane
    reason: str


class CriticalRateCap:
    """Per tenant, how many messages may still enter the critical lane right now."""

    def __init__(self) -> None:
        self._buckets = TokenBuckets()

    def admit(self, tenant: Tenant, count: int, now: float | None = None) -> bool:
        """Take ``count`` messages' worth of the tenant's critical allowance, if it has it
        (a request larger than the whole burst never has it)."""
        limit = Limit(tenant.id, tenant.critical_per_second, tenant.critical_burst)
        return count <= tenant.critical_burst and self._buckets.take([limit], count, now) == 0


def choose_lane(
    request: SendRequest, tenant: Tenant, cap: CriticalRateCap, now: float | None = None
) -> LaneChoice:
    """The lane of ``request``'s messages (one per recipient), and the reason for it."""
    lane = lane_for(request.category, request.stream, request.priority, tenant.priority_ceiling)
    natural = natural_lane(request.category, request.stream)
    if request.priority is None or lane is natural:
        reason = f"{request.stream.value} stream, category {request.category or 'none'}"
    elif lane is request.priority:
        reason = f"priority {lane.value} asked for"
    else:
        reason = (
            f"priority {request.priority.value} asked for; the tenant may go up to {lane.value}"
        )
    if lane is Lane.CRITICAL and not cap.admit(tenant, len(request.to), now):
        return LaneChoice(
            Lane.HIGH,
            f"{reason}; over the tenant's critical-lane rate"
            f" ({tenant.critical_per_second:g}/s, burst {tenant.critical_burst}): high",
        )
    return LaneChoice(lane, reason)


def requested_rank_lane(request: SendRequest) -> Lane:
    """The lane a request most probably gets, before its tenant is known (for the gate)."""
    return lane_for(request.category, request.stream, request.priority)
