"""Which webhook answers are worth another post, when, and when an endpoint is given up on."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from services.webhook.delivery import (
    MAX_RETRY_AFTER,
    SCHEDULE,
    Answer,
    PostStatus,
    RetryPolicy,
    backoff,
    disable_reason,
    retry_after,
    retryable,
    verdict,
)

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
POLICY = RetryPolicy(5.0, timedelta(hours=72), 20, timedelta(hours=24))


@pytest.mark.parametrize("code", [None, 408, 429, 500, 502, 503, 504])
def test_transient_answers_are_retried(code: int | None) -> None:
    assert retryable(code)


@pytest.mark.parametrize("code", [301, 302, 400, 401, 403, 404, 410, 413, 422])
def test_refusals_and_redirects_are_not(code: int) -> None:
    assert not retryable(code)


def test_backoff_is_full_jitter_within_each_step_of_the_schedule() -> None:
    rng = random.Random(7)
    steps = [5, 30, 120, 600, 1800, 3600, 7200, 14400, 28800, 28800, 28800]
    for attempt, step in enumerate(steps, start=1):
        pauses = [backoff(attempt, 5.0, rng).total_seconds() for _ in range(200)]
        assert min(pauses) >= 0 and max(pauses) <= step
        assert max(pauses) > step * 0.8  # spread over the whole step, not a fixed pause


def test_the_schedule_spans_about_three_days_before_giving_up() -> None:
    assert sum(SCHEDULE) * 5.0 / 3600 == pytest.approx(16.0, rel=0.1)
    rng = random.Random(1)
    first = NOW - timedelta(hours=71, minutes=59)
    kept = verdict(Answer(500), 12, first, NOW, POLICY, rng)
    assert kept.status is PostStatus.FAILED or kept.due_at - first <= timedelta(hours=72)
    late = verdict(Answer(500), 12, NOW - timedelta(hours=72, seconds=1), NOW, POLICY, rng)
    assert late.status is PostStatus.FAILED


def test_verdicts() -> None:
    rng = random.Random(3)
    assert verdict(Answer(204), 1, NOW, NOW, POLICY, rng).status is PostStatus.DELIVERED
    retried = verdict(Answer(None, "timeout"), 1, NOW, NOW, POLICY, rng)
    assert retried.status is PostStatus.PENDING and NOW <= retried.due_at <= NOW + timedelta(
        seconds=5
    )
    refused = verdict(Answer(404), 1, NOW, NOW, POLICY, rng)
    assert (refused.status, refused.disable) == (PostStatus.FAILED, None)
    gone = verdict(Answer(410), 1, NOW, NOW, POLICY, rng)
    assert gone.status is PostStatus.FAILED and gone.disable and "410" in gone.disable


def test_retry_after_is_honoured_in_seconds_or_as_a_date_and_capped() -> None:
    assert retry_after("120", NOW) == timedelta(seconds=120)
    assert retry_after("9" * 40, NOW) == MAX_RETRY_AFTER  # no overflow: as long as allowed
    assert retry_after("\u00b2", NOW) is None  # a digit, but not a number of seconds
    assert retry_after("Fri, 01 May 2026 12:10:00 GMT", NOW) == timedelta(minutes=10)
    assert retry_after("Thu, 01 Jan 2026 00:00:00 GMT", NOW) == timedelta(0)
    assert retry_after("999999", NOW) == MAX_RETRY_AFTER
    assert retry_after("soon", NOW) is None and retry_after(None, NOW) is None
    slowed = verdict(Answer(429, "HTTP 429", "600"), 1, NOW, NOW, POLICY, random.Random(0))
    assert slowed.due_at == NOW + timedelta(seconds=600)


def test_an_endpoint_is_disabled_after_many_failures_over_a_day_only() -> None:
    day_ago = NOW - timedelta(hours=24)
    assert disable_reason(20, day_ago, NOW, POLICY) is not None
    assert disable_reason(19, day_ago, NOW, POLICY) is None  # a few failures a day apart
    assert disable_reason(500, NOW - timedelta(hours=23), NOW, POLICY) is None  # an outage
    assert disable_reason(0, None, NOW, POLICY) is None
