"""Token buckets kept in this process: the critical lane's cap and the send rate limits.

Each bucket holds at most ``burst`` tokens and refills at ``rate`` per second. A request that
needs several buckets (its tenant's and its key's) is admitted by all of them or by none, so a
refusal never spends anybody's allowance.
"""

from __future__ import annotations

import math
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Limit:
    """One bucket a request draws on: its name, its refill rate (per second) and its size."""

    name: Hashable
    rate: float
    burst: int


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class TokenBuckets:
    """Buckets by name, created full on first use."""

    def __init__(self) -> None:
        self._buckets: dict[Hashable, _Bucket] = {}

    def take(self, limits: Sequence[Limit], count: int, now: float | None = None) -> float:
        """Take ``count`` tokens from every bucket of ``limits`` and return 0, or take nothing
        and return how many seconds to wait until they would all admit it.

        A request larger than a bucket's burst is admitted by a full bucket and leaves it in
        debt, so it is not refused for ever and the rate still holds over time.
        """
        moment = time.monotonic() if now is None else now
        wait = 0.0
        buckets = []
        for limit in limits:
            bucket = self._refilled(limit, moment)
            needed = min(float(count), float(limit.burst))
            if bucket.tokens < needed:
                wait = max(
                    wait, (needed - bucket.tokens) / limit.rate if limit.rate > 0 else math.inf
                )
            buckets.append(bucket)
        if wait > 0:
            return wait
        for bucket in buckets:
            bucket.tokens -= count
        return 0.0

    def _refilled(self, limit: Limit, moment: float) -> _Bucket:
        bucket = self._buckets.get(limit.name)
        if bucket is None:
            bucket = self._buckets[limit.name] = _Bucket(float(limit.burst), moment)
        bucket.tokens = min(
            float(limit.burst), bucket.tokens + (moment - bucket.stamp) * limit.rate
        )
        bucket.stamp = moment
        return bucket
