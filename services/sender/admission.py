"""Whether an attempt may go now: operator controls, the site's slowness and its rate.

Decided before anything is built or claimed: a held attempt (paused, shaped) is not an attempt,
it waits in the retry-scheduler with the same attempt number and no event; an attempt for a
slow site goes to ``deliver-slow`` unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from libs.queue_controls import ControlKind, QueueControl, matching
from schemas.pipeline import DeliveryJob, HoldReason, RetryRequest, SmtpReply
from services.sender.sites import Site


class Admit(StrEnum):
    """What becomes of an attempt before its exchange."""

    SEND = "send"
    PAUSED = "paused"
    """A pause covers it (or a drain with no fallback left): held until lifted."""
    SHAPED = "shaped"
    """Its site's rate has no room: held until it has."""
    SLOW = "slow"
    """Its site is slow: to ``deliver-slow``, where it holds no lane."""
    EXPIRED = "expired"
    """It would be held, but its retry window is closed."""


@dataclass(frozen=True)
class Admission:
    decision: Admit
    wait_seconds: float = 0.0
    control: QueueControl | None = None
    """The pause or drain that holds it."""


def undrained(
    job: DeliveryJob, controls: list[QueueControl]
) -> tuple[DeliveryJob, QueueControl | None]:
    """``job`` over its first route no drain covers (its fallbacks after that one), or ``job``
    as it is with the drain that covers its last route when every route is drained."""
    spec = job.message
    routes = [job.route, *job.fallbacks]
    drain: QueueControl | None = None
    for position, route in enumerate(routes):
        drain = matching(controls, ControlKind.DRAIN, spec.tenant_id, spec.lane, route.name)
        if drain is None:
            if position == 0:
                return job, None
            return job.model_copy(
                update={"route": route, "fallbacks": routes[position + 1 :]}
            ), None
    return job, drain


def admit(
    job: DeliveryJob,
    site: Site,
    controls: list[QueueControl],
    drain: QueueControl | None,
    now: datetime,
    clock: float,
    slow_topic: bool,
) -> Admission:
    """The admission of ``job`` to ``site`` at ``now`` (``clock``: the monotonic time the site's
    state runs on); on ``deliver-slow`` (``slow_topic``) a slow site is what is expected."""
    spec = job.message
    pause = drain or matching(
        controls, ControlKind.PAUSE, spec.tenant_id, spec.lane, job.route.name, site.name
    )
    if pause is not None:
        return _held(job, now, Admission(Admit.PAUSED, control=pause))
    if not slow_topic and site.is_slow(clock):
        return Admission(Admit.SLOW)
    wait = site.admit(clock)
    if wait > 0:
        return _held(job, now, Admission(Admit.SHAPED, wait_seconds=wait))
    return Admission(Admit.SEND)


def _held(job: DeliveryJob, now: datetime, hold: Admission) -> Admission:
    """``hold``, unless the window it would wait in is already closed."""
    return Admission(Admit.EXPIRED) if now >= job.retry_until else hold


HOLD_REASONS = {Admit.PAUSED: HoldReason.PAUSED, Admit.SHAPED: HoldReason.SHAPED}


def hold_request(job: DeliveryJob, admission: Admission, site: str, now: datetime) -> RetryRequest:
    """The retry-scheduler's record of a held attempt: the same attempt, due when the site has
    room (a pause: at once, and the scheduler keeps it while the pause lasts), never past the
    retry window."""
    due_at = min(now + timedelta(seconds=admission.wait_seconds), job.retry_until)
    why = admission.control.reason if admission.control else "the site's rate limit"
    reply = SmtpReply(code=0, text=f"held ({admission.decision.value}): {why}".rstrip(": "))
    return RetryRequest(
        job=job, due_at=due_at, reply=reply, hold=HOLD_REASONS[admission.decision], site=site
    )
