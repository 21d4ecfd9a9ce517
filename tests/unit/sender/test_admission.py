"""Admission: pauses and drains by scope, fallbacks past a drain, slow sites, shaping, expiry."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from libs.queue_controls import ControlKind, QueueControl, Scope
from schemas.common import Lane
from schemas.pipeline import HoldReason, Route
from services.sender.admission import Admit, admit, hold_request, undrained
from services.sender.sites import DEFAULT_LIMITS, Site, SiteLimits
from tests.unit.sender.jobs import delivery_job

TENANT = "t-1"
PRIMARY = Route(name="primary", host="10.0.0.1", port=25, pool="default")
BACKUP = Route(name="backup", host="10.0.0.2", port=25, pool="default")
LAST = Route(name="last", host="10.0.0.3", port=25, pool="default")
JOB = delivery_job(route=PRIMARY, tenant_id=TENANT).model_copy(update={"fallbacks": [BACKUP, LAST]})
NOW = JOB.message.accepted_at + timedelta(seconds=10)


def control(kind: ControlKind, **scope: object) -> QueueControl:
    return QueueControl(
        id=str(uuid.uuid4()),
        kind=kind,
        scope=Scope.model_validate(scope),
        reason="maintenance",
        created_by="key-1",
        created_at=datetime.now(UTC),
    )


def site(limits: SiteLimits = DEFAULT_LIMITS) -> Site:
    return Site.new("10.0.0.1:25", Lane.CRITICAL, limits, 0.0)


def test_an_unhindered_attempt_goes() -> None:
    assert admit(JOB, site(), [], None, NOW, 0.0, slow_topic=False).decision is Admit.SEND


def test_a_pause_of_its_tenant_lane_route_or_site_holds_it() -> None:
    for scope in (
        {"tenant_id": TENANT},
        {"lane": Lane.CRITICAL},
        {"route": "primary"},
        {"site": "10.0.0.1:25"},
        {"tenant_id": TENANT, "lane": Lane.CRITICAL},
    ):
        pause = control(ControlKind.PAUSE, **scope)
        admission = admit(JOB, site(), [pause], None, NOW, 0.0, slow_topic=False)
        assert (admission.decision, admission.control) == (Admit.PAUSED, pause)


def test_a_pause_of_something_else_does_not_hold_it() -> None:
    for scope in ({"tenant_id": "other"}, {"lane": Lane.BULK}, {"route": "backup"}, {"site": "x"}):
        pause = control(ControlKind.PAUSE, **scope)
        assert admit(JOB, site(), [pause], None, NOW, 0.0, False).decision is Admit.SEND
    drain = control(ControlKind.DRAIN, tenant_id=TENANT)  # a drain is not a pause
    assert admit(JOB, site(), [drain], None, NOW, 0.0, False).decision is Admit.SEND


def test_a_held_attempt_is_the_same_attempt_due_now_and_kept_paused() -> None:
    pause = control(ControlKind.PAUSE, tenant_id=TENANT)
    admission = admit(JOB, site(), [pause], None, NOW, 0.0, slow_topic=False)
    request = hold_request(JOB, admission, "10.0.0.1:25", NOW)
    assert (request.job, request.due_at, request.hold, request.site) == (
        JOB,
        NOW,
        HoldReason.PAUSED,
        "10.0.0.1:25",
    )


def test_a_drained_route_hands_the_attempt_to_its_first_undrained_fallback() -> None:
    assert undrained(JOB, []) == (JOB, None)
    moved, drain = undrained(JOB, [control(ControlKind.DRAIN, route="primary")])
    assert (moved.route, moved.fallbacks, drain) == (BACKUP, [LAST], None)
    both = [control(ControlKind.DRAIN, route="primary"), control(ControlKind.DRAIN, route="backup")]
    moved, drain = undrained(JOB, both)
    assert (moved.route, moved.fallbacks, moved.attempt) == (LAST, [], JOB.attempt)
    other_tenant = control(ControlKind.DRAIN, route="primary", tenant_id="other")
    assert undrained(JOB, [other_tenant]) == (JOB, None)


def test_a_drain_without_fallback_holds_the_attempt_paused() -> None:
    lone = JOB.model_copy(update={"fallbacks": []})
    drain = control(ControlKind.DRAIN, route="primary")
    kept, found = undrained(lone, [drain])
    assert (kept, found) == (lone, drain)
    admission = admit(kept, site(), [drain], found, NOW, 0.0, slow_topic=False)
    assert (admission.decision, admission.control) == (Admit.PAUSED, drain)


def test_a_slow_site_sends_its_attempts_to_deliver_slow_but_not_from_there() -> None:
    slow = site()
    slow.mark_slow(0.0, cooldown_seconds=60)
    assert admit(JOB, slow, [], None, NOW, 1.0, slow_topic=False).decision is Admit.SLOW
    assert admit(JOB, slow, [], None, NOW, 1.0, slow_topic=True).decision is Admit.SEND


def test_a_site_over_its_rate_holds_the_attempt_until_it_has_room() -> None:
    shaped = site(SiteLimits(messages_per_minute=30))
    assert admit(JOB, shaped, [], None, NOW, 0.0, False).decision is Admit.SEND
    admission = admit(JOB, shaped, [], None, NOW, 0.5, False)
    assert admission.decision is Admit.SHAPED and admission.wait_seconds > 1
    request = hold_request(JOB, admission, "10.0.0.1:25", NOW)
    assert request.hold is HoldReason.SHAPED
    assert request.due_at == NOW + timedelta(seconds=admission.wait_seconds)
    assert request.job.attempt == JOB.attempt


def test_an_attempt_that_would_be_held_after_its_window_expires() -> None:
    pause = control(ControlKind.PAUSE, tenant_id=TENANT)
    late = JOB.retry_until
    assert admit(JOB, site(), [pause], None, late, 0.0, False).decision is Admit.EXPIRED
    shaped = site(SiteLimits(messages_per_minute=1))
    shaped.admit(0.0)
    assert admit(JOB, shaped, [], None, late, 0.0, False).decision is Admit.EXPIRED
    assert admit(JOB, site(), [], None, late, 0.0, False).decision is Admit.SEND  # a last try
