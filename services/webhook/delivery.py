"""When a webhook post is worth repeating, how long to wait, and how the delivery ended.

Network errors, timeouts, 408, 429 and 5xx may pass; any other 4xx is the endpoint refusing
the post, and repeating it only repeats the refusal.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class DeliveryStatus(StrEnum):
    """How posting one event to one endpoint ended."""

    DELIVERED = "delivered"
    FAILED = "failed"


@dataclass(frozen=True)
class WebhookDelivery:
    """The outcome of posting one event: status, posts made, the last answer or error."""

    status: DeliveryStatus
    attempts: int
    last_code: int | None = None
    last_error: str | None = None


def retryable(status_code: int | None) -> bool:
    """True when a post that got ``status_code`` (None: no answer at all) may succeed later."""
    return status_code is None or status_code in (408, 429) or status_code >= 500


def backoff_seconds(attempt: int, base: float) -> float:
    """The pause after failed post number ``attempt``: ``base``, doubling each time."""
    return float(base * 2 ** (attempt - 1))
