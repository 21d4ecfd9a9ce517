"""When a deferred message is tried again: exponential backoff with deterministic jitter."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from libs.settings import Settings
from schemas.common import Lane

JITTER = 0.2
"""Spread of the delay (±20 %), so deferrals of one burst do not come back as one burst."""

CRITICAL_BACKOFF = (5.0, 120.0)
"""Base and cap (at most) of a critical message's backoff: a one-time code is retried within
seconds (its window is minutes long), not after the half minute every other lane waits first."""

_MAX_EXPONENT = 62  # beyond this every delay is the cap anyway; keeps the float finite


def jitter_factor(message_id: str, attempt: int) -> float:
    """A factor in [0.8, 1.2) fixed by the message and attempt: a rerun finds the same delay."""
    digest = hashlib.sha256(f"{message_id}/{attempt}".encode()).digest()
    unit = int.from_bytes(digest[:8], "big") / 2**64
    return 1 - JITTER + 2 * JITTER * unit


def backoff_seconds(message_id: str, attempt: int, base: float, cap: float) -> float:
    """Seconds to wait after the ``attempt``-th try: ``base * 2**(attempt-1)``, jittered, ≤ cap."""
    exponential = base * 2.0 ** min(attempt - 1, _MAX_EXPONENT)
    return min(min(exponential, cap) * jitter_factor(message_id, attempt), cap)


def next_attempt_at(
    message_id: str, attempt: int, now: datetime, retry_until: datetime, base: float, cap: float
) -> datetime:
    """When to make the next attempt: after the backoff, but never past the retry window."""
    delay = timedelta(seconds=backoff_seconds(message_id, attempt, base, cap))
    return min(now + delay, retry_until)


def lane_backoff(lane: Lane, settings: Settings) -> tuple[float, float]:
    """The base and cap of the backoff of ``lane``'s deferrals."""
    base, cap = settings.retry_base_seconds, settings.retry_max_seconds
    if lane is Lane.CRITICAL:
        return min(base, CRITICAL_BACKOFF[0]), min(cap, CRITICAL_BACKOFF[1])
    return base, cap
