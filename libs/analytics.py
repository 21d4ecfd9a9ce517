"""The vocabulary of the analytics aggregates: time buckets, dimensions, latency bins, rates.

The analytics service (``services.analytics``) adds a batch of events to these aggregates; the
report (``libs.analytics_report``) and the alert evaluation read them. What both sides must
agree on — how a moment falls into a bucket, which bin a latency falls into, what a rate
means — is defined here, once.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from schemas.events import MessageState


class Granularity(StrEnum):
    MINUTE = "minute"
    HOUR = "hour"
    DAY = "day"

    @property
    def step(self) -> timedelta:
        """The length of one bucket."""
        return GRANULARITY_STEPS[self]


GRANULARITY_STEPS = {
    Granularity.MINUTE: timedelta(minutes=1),
    Granularity.HOUR: timedelta(hours=1),
    Granularity.DAY: timedelta(days=1),
}

DIMENSIONS = ("stream", "lane", "category", "template", "variant", "recipient_domain")
"""What a count is kept per, besides tenant, bucket and event type. ``variant`` is the template
version the message was rendered from (an experiment's variant); '' in the tables: not known."""

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def bucket_start(moment: datetime, granularity: Granularity) -> datetime:
    """The start of the bucket ``moment`` falls in (UTC; a day starts at midnight UTC)."""
    step = granularity.step
    return EPOCH + ((moment - EPOCH) // step) * step


LATENCY_BINS = 40
LATENCY_MIN_MS = 10.0
LATENCY_MAX_MS = 86_400_000.0
LATENCY_EDGES_MS: tuple[float, ...] = tuple(
    LATENCY_MIN_MS * (LATENCY_MAX_MS / LATENCY_MIN_MS) ** (i / (LATENCY_BINS - 1))
    for i in range(LATENCY_BINS)
)
"""Upper edges of the accept->delivered latency bins: 10 ms to one day, log-spaced (each about
1.5 times the one before), so a fixed number of rows holds any distribution with a relative
error the percentiles interpolate down to a few per cent."""


def latency_bin(milliseconds: float) -> int:
    """The bin a latency falls in (below 10 ms: the first; above a day: the last)."""
    return min(bisect.bisect_left(LATENCY_EDGES_MS, milliseconds), LATENCY_BINS - 1)


def percentile(histogram: Mapping[int, int], fraction: float) -> float | None:
    """The ``fraction`` quantile (0-1) of a latency histogram (bin -> count), in ms.

    Within its bin the value is interpolated log-linearly on its rank, as if the latencies in
    a bin were spread evenly over its (logarithmic) width. None for an empty histogram.
    """
    total = sum(histogram.values())
    if total <= 0:
        return None
    rank = fraction * total
    seen = 0
    for index in sorted(histogram):
        count = histogram[index]
        if count <= 0:
            continue
        if seen + count >= rank:
            upper = LATENCY_EDGES_MS[index]
            lower = LATENCY_EDGES_MS[index - 1] if index else 0.0
            share = (rank - seen) / count
            if lower <= 0:
                return upper * share
            return lower * math.exp(share * math.log(upper / lower))
        seen += count
    return LATENCY_EDGES_MS[max(histogram)]


def rate(numerator: int, denominator: int) -> float | None:
    """A share, or None when there is nothing to measure it over."""
    return numerator / denominator if denominator > 0 else None


def rates(counts: Mapping[str, int]) -> dict[str, float | None]:
    """The deliverability rates of a set of counts per event type.

    - ``delivery``: delivered / (delivered + bounced + failed) — the share of the messages whose
      delivery ended that reached the mailbox (suppressed or rejected mail was never tried).
    - ``bounce``: bounced / (delivered + bounced) — as mailbox providers and the alerts count it.
    - ``complaint``: complained / delivered.
    - ``deferral``: deferred / (delivered + bounced + deferred) — the share of SMTP attempts
      the receiving server asked to come back later.
    """
    delivered = counts.get(MessageState.DELIVERED, 0)
    bounced = counts.get(MessageState.BOUNCED, 0)
    deferred = counts.get(MessageState.DEFERRED, 0)
    failed = counts.get(MessageState.FAILED, 0)
    return {
        "delivery": rate(delivered, delivered + bounced + failed),
        "bounce": rate(bounced, delivered + bounced),
        "complaint": rate(counts.get(MessageState.COMPLAINED, 0), delivered),
        "deferral": rate(deferred, delivered + bounced + deferred),
    }
