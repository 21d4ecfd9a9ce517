"""Backoff: exponential, jittered ±20 % by the message id, capped, inside the retry window."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from services.sender.backoff import backoff_seconds, jitter_factor, next_attempt_at

IDS = [str(uuid.UUID(int=n)) for n in range(200)]


@pytest.mark.parametrize("attempt", [1, 2, 3, 5])
def test_delay_doubles_per_attempt_within_the_jitter(attempt: int) -> None:
    nominal = 30.0 * 2 ** (attempt - 1)
    delays = [backoff_seconds(i, attempt, 30.0, 3600.0) for i in IDS]
    assert all(0.8 * nominal <= d < 1.2 * nominal for d in delays)
    assert min(delays) < 0.9 * nominal and max(delays) > 1.1 * nominal  # it does spread


def test_delay_never_exceeds_the_cap() -> None:
    delays = [backoff_seconds(i, attempt, 30.0, 3600.0) for i in IDS for attempt in (8, 20, 500)]
    assert all(0.8 * 3600.0 <= d <= 3600.0 for d in delays)


def test_jitter_is_fixed_by_message_and_attempt() -> None:
    assert jitter_factor(IDS[7], 2) == jitter_factor(IDS[7], 2)
    assert jitter_factor(IDS[7], 2) != jitter_factor(IDS[8], 2)
    assert jitter_factor(IDS[7], 2) != jitter_factor(IDS[7], 3)


def test_next_attempt_is_clamped_to_the_retry_window() -> None:
    now = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    far, near = now + timedelta(hours=1), now + timedelta(seconds=5)
    at = next_attempt_at(IDS[1], 1, now, far, 30.0, 3600.0)
    assert now + timedelta(seconds=24) <= at < now + timedelta(seconds=36)
    assert next_attempt_at(IDS[1], 1, now, near, 30.0, 3600.0) == near
