"""What a webhook post's answer means: delivered, try again when, give up, or disable the endpoint.

Network errors, timeouts, 408, 429 and 5xx may pass: the post is tried again after a pause of
the schedule (about 5 s, 30 s, 2 min, 10 min, 30 min, 1 h, 2 h, 4 h, then every 8 h, scaled
from ``webhook_retry_base_seconds``) with full jitter — a random pause between zero and the
step, so that an endpoint coming back is not hit by every retry at once — or after what its
``Retry-After`` asks (capped), until ``webhook_give_up_seconds`` after the first attempt. Any
other 4xx (and a redirect, never followed) is the endpoint refusing the post: repeating it
only repeats the refusal. ``410 Gone`` disables the endpoint at once; an endpoint whose posts
all fail, at least ``webhook_disable_failures`` in a row over ``webhook_disable_seconds``,
is disabled too.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from enum import StrEnum

from libs.settings import Settings

SCHEDULE = (1, 6, 24, 120, 360, 720, 1440, 2880, 5760)
"""Each pause as a multiple of the first (5 s → 30 s, 2 min, 10 min, 30 min, 1 h, 2 h, 4 h, 8 h);
the last repeats."""
MAX_RETRY_AFTER = timedelta(hours=1)
"""The longest ``Retry-After`` honoured: an endpoint may slow us down, not park its events."""
GONE = 410


class PostStatus(StrEnum):
    """Where a queued post stands after an attempt."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


@dataclass(frozen=True)
class RetryPolicy:
    """How long to keep trying a post, and when an endpoint is given up on."""

    base_seconds: float
    give_up: timedelta
    disable_failures: int
    disable_after: timedelta

    @classmethod
    def of(cls, settings: Settings) -> RetryPolicy:
        return cls(
            settings.webhook_retry_base_seconds,
            timedelta(seconds=settings.webhook_give_up_seconds),
            settings.webhook_disable_failures,
            timedelta(seconds=settings.webhook_disable_seconds),
        )


@dataclass(frozen=True)
class Answer:
    """What one post got: an HTTP status (None: no answer at all) or an error."""

    code: int | None
    error: str | None = None
    retry_after: str | None = None


@dataclass(frozen=True)
class Verdict:
    """What to do with a queued post after an attempt."""

    status: PostStatus
    due_at: datetime
    disable: str | None = None
    """Why the endpoint is to be disabled now (None: it is not)."""


def retryable(code: int | None) -> bool:
    """True when a post that got ``code`` (None: no answer at all) may succeed later."""
    return code is None or code in (408, 429) or code >= 500


def backoff(attempt: int, base_seconds: float, rng: random.Random) -> timedelta:
    """The pause after failed attempt number ``attempt`` (1, 2, …): full jitter over its step."""
    step = SCHEDULE[min(attempt, len(SCHEDULE)) - 1] * base_seconds
    return timedelta(seconds=rng.uniform(0, step))


def retry_after(value: str | None, now: datetime) -> timedelta | None:
    """A ``Retry-After`` header (seconds or an HTTP date) as a pause, capped; None if absent
    or unreadable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        # More seconds than a timedelta holds only means "as long as allowed".
        seconds = int(text) if len(text) <= 9 else MAX_RETRY_AFTER.total_seconds()
        pause = timedelta(seconds=seconds)
    else:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, OverflowError):
            return None
        pause = (when if when.tzinfo else when.replace(tzinfo=UTC)) - now
    return max(timedelta(0), min(pause, MAX_RETRY_AFTER))


def verdict(
    answer: Answer,
    attempt: int,
    first_attempt_at: datetime,
    now: datetime,
    policy: RetryPolicy,
    rng: random.Random,
) -> Verdict:
    """What attempt number ``attempt`` of a post, first tried at ``first_attempt_at``, leads to."""
    if answer.code is not None and 200 <= answer.code < 300:
        return Verdict(PostStatus.DELIVERED, now)
    if answer.code == GONE:
        return Verdict(PostStatus.FAILED, now, "the endpoint answered 410 Gone")
    if not retryable(answer.code):
        return Verdict(PostStatus.FAILED, now)
    pause = max(
        backoff(attempt, policy.base_seconds, rng),
        retry_after(answer.retry_after, now) or timedelta(0),
    )
    if now + pause - first_attempt_at > policy.give_up:
        return Verdict(PostStatus.FAILED, now)
    return Verdict(PostStatus.PENDING, now + pause)


def disable_reason(
    failures: int, failing_since: datetime | None, now: datetime, policy: RetryPolicy
) -> str | None:
    """Why an endpoint whose last ``failures`` posts (since ``failing_since``) all failed is to
    be disabled, or None while it is given more time."""
    if failing_since is None or failures < policy.disable_failures:
        return None
    if now - failing_since < policy.disable_after:
        return None
    hours = (now - failing_since).total_seconds() / 3600
    return f"every post failed for {hours:.1f} h ({failures} in a row)"
