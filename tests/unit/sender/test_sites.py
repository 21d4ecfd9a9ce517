"""Sites: limits, the per-minute bucket, a throttle's cut and its gradual release, slowness."""

from __future__ import annotations

import pytest

from schemas.common import Lane
from schemas.pipeline import SmtpReply
from services.sender.sites import (
    DEFAULT_LIMITS,
    QUIET_SECONDS,
    Site,
    SiteChange,
    SiteLimits,
    Sites,
    SiteState,
    TokenBucket,
    is_throttle,
    site_limits,
)

OK = SmtpReply(code=250, text="ok")
THROTTLE = SmtpReply(code=421, enhanced_status="4.7.0", text="Too many messages, slow down")


def test_providers_have_limits_of_their_own_and_others_the_defaults() -> None:
    office = site_limits("smtp.office365.com:587")
    assert office.messages_per_minute == 30
    assert site_limits("smtp.gmail.com:587").messages_per_minute is not None
    for provider in ("google", "microsoft", "yahoo", "apple"):
        assert site_limits(provider) != DEFAULT_LIMITS
    assert site_limits("mx.example.test") == DEFAULT_LIMITS
    assert DEFAULT_LIMITS.messages_per_minute is None  # unknown sites: only cut when they throttle
    mine = SiteLimits(max_connections=2, messages_per_minute=10)
    assert site_limits("google", {"google": mine}) == mine


@pytest.mark.parametrize(
    ("reply", "throttle"),
    [
        (THROTTLE, True),
        (SmtpReply(code=421, text="Service not available"), True),
        (SmtpReply(code=450, enhanced_status="4.7.28", text="unusual rate of mail"), True),
        (SmtpReply(code=451, enhanced_status="4.7.650", text="The mail server is limited"), True),
        (SmtpReply(code=451, text="Rate limit exceeded"), True),
        (SmtpReply(code=452, text="Too many recipients, try again later"), True),
        (SmtpReply(code=450, text="Message throttled"), True),
        (SmtpReply(code=452, enhanced_status="4.2.2", text="Mailbox full"), False),
        (SmtpReply(code=452, enhanced_status="4.2.2", text="Mailbox full, try again later"), False),
        (SmtpReply(code=450, enhanced_status="4.7.1", text="Greylisted, try again later"), False),
        (SmtpReply(code=550, enhanced_status="5.7.1", text="too many complaints"), False),
        (OK, False),
    ],
)
def test_throttle_detection(reply: SmtpReply, throttle: bool) -> None:
    assert is_throttle(reply) is throttle


def test_the_bucket_allows_its_rate_and_says_how_long_to_wait() -> None:
    bucket = TokenBucket.full(30, now=0.0)  # one every two seconds, bursts of one
    assert bucket.take(0.0) == 0.0
    assert bucket.take(0.0) == pytest.approx(2.0)
    assert bucket.take(1.0) == pytest.approx(1.0)  # nothing taken meanwhile
    assert bucket.take(2.0) == 0.0
    fast = TokenBucket.full(600, now=0.0)  # ten a second: bursts of ten
    assert [fast.take(0.0) for _ in range(10)] == [0.0] * 10
    assert fast.take(0.0) == pytest.approx(0.1)


def test_a_site_with_a_limit_shapes_to_it() -> None:
    site = Site.new("smtp.office365.com:587", Lane.NORMAL, site_limits("smtp.office365.com:587"), 0)
    assert site.admit(0.0) == 0.0
    assert site.admit(0.5) == pytest.approx(1.5)
    assert site.admit(2.0) == 0.0


def shown(site: Site) -> tuple[SiteState, float | None]:
    """What the queue view shows of a site (read afresh: the state changes under the test)."""
    return site.state, site.rate_per_minute


def _sent(site: Site, count: int, now: float) -> None:
    for _ in range(count):
        site.admit(now)
        site.started(now)
        site.finished(OK, now)


def test_a_site_barely_sent_to_is_slowed_to_one_a_second() -> None:
    site = Site.new("mx.example.test", Lane.NORMAL, DEFAULT_LIMITS, 0.0)
    _sent(site, 3, 1.0)
    site.throttled(THROTTLE, 2.0)
    assert site.rate_per_minute == 60.0


def test_a_throttle_halves_the_rate_and_quiet_gives_it_back_gradually() -> None:
    site = Site.new("mx.example.test", Lane.NORMAL, DEFAULT_LIMITS, 0.0)
    _sent(site, 239, 1.0)
    assert (site.state, site.rate_per_minute) == (SiteState.NORMAL, None)

    site.started(2.0)
    site.finished(THROTTLE, 2.0)
    assert (site.state, site.rate_per_minute) == (SiteState.THROTTLED, 120.0)
    assert site.admit(2.0) > 0  # the cut starts from an empty bucket
    site.started(3.0)
    site.finished(THROTTLE, 3.0)  # the same burst: cut once
    assert site.rate_per_minute == 120.0

    site.release(3.0 + QUIET_SECONDS)
    assert (site.state, site.rate_per_minute) == (SiteState.RECOVERING, 150.0)
    site.release(3.0 + 2 * QUIET_SECONDS)
    assert site.rate_per_minute == pytest.approx(187.5)
    site.release(3.0 + 10 * QUIET_SECONDS)
    assert shown(site) == (SiteState.NORMAL, None) and site.bucket is None
    assert [t.change for t in site.transitions] == [
        SiteChange.THROTTLED,
        SiteChange.RELEASED,
        SiteChange.RECOVERED,
    ]
    assert site.transitions[0].reply == THROTTLE
    assert list(site.last_replies)[-2:] == [THROTTLE, THROTTLE]


def test_a_site_with_a_limit_is_cut_below_it_and_released_back_to_it() -> None:
    limits = SiteLimits(messages_per_minute=30)
    site = Site.new("relay:587", Lane.BULK, limits, 0.0)
    site.throttled(THROTTLE, 0.0)
    assert site.rate_per_minute == 15
    site.throttled(THROTTLE, 10.0)  # throttled again after the burst: cut again
    assert site.rate_per_minute == 7.5
    site.release(10.0 + 20 * QUIET_SECONDS)
    assert (site.state, site.rate_per_minute) == (SiteState.NORMAL, 30)


def test_the_rate_is_never_cut_below_one_a_minute() -> None:
    site = Site.new("relay:25", Lane.NORMAL, SiteLimits(messages_per_minute=1), 0.0)
    for at in range(0, 100, 10):
        site.throttled(THROTTLE, float(at))
    assert site.rate_per_minute == 1.0


def test_a_slow_site_is_slow_for_its_cooldown_or_until_it_answers_quickly() -> None:
    site = Site.new("mx.example.test", Lane.NORMAL, DEFAULT_LIMITS, 0.0)
    site.mark_slow(1.0, cooldown_seconds=60)
    site.mark_slow(2.0, cooldown_seconds=60)  # still slow: one change
    assert site.is_slow(30.0) and shown(site)[0] is SiteState.SLOW
    assert not site.is_slow(62.0) and shown(site)[0] is SiteState.NORMAL
    site.mark_slow(70.0, cooldown_seconds=60)
    site.answered_quickly(71.0)
    assert not site.is_slow(72.0)
    assert [t.change for t in site.transitions] == [
        SiteChange.SLOW,
        SiteChange.RECOVERED,
        SiteChange.SLOW,
        SiteChange.RECOVERED,
    ]


def test_sites_are_kept_per_site_and_lane_and_report_their_changes_once() -> None:
    sites = Sites()
    normal = sites.get("google", Lane.NORMAL, 0.0)
    assert sites.get("google", Lane.NORMAL, 1.0) is normal
    assert sites.get("google", Lane.BULK, 1.0) is not normal
    assert normal.limits == site_limits("google")
    normal.mark_slow(1.0, 60)
    [change] = sites.transitions(2.0)
    assert (change.change, change.site, change.lane) == (SiteChange.SLOW, "google", Lane.NORMAL)
    assert sites.transitions(3.0) == []
    assert {site.lane for site in sites.recent(100.0, within_seconds=60)} == set()
    assert len(sites.recent(30.0, within_seconds=60)) == 2
