"""Send rate limits: how many messages a tenant, and each of its keys, may send per second.

Token buckets in this ingest process (``buckets.py``, the same as the critical lane's cap): the
tenant's own (default 5,000/s, burst 10,000 — above what ``make bench`` sends through one
tenant) and, when the key has one, the key's. A request costs one token per message it would
create, so a batch costs its message count. Several ingest processes each allow the full rate.
"""

from __future__ import annotations

import math

from libs.tenants import Caller
from services.ingest.buckets import Limit, TokenBuckets


class SendRateLimits:
    """The send buckets of every tenant and key this process has seen."""

    def __init__(self) -> None:
        self._buckets = TokenBuckets()

    def retry_after(self, caller: Caller, count: int, now: float | None = None) -> int:
        """Take ``count`` messages from the caller's allowances and return 0, or take nothing
        and return how many whole seconds to wait (at least 1)."""
        tenant, key = caller.tenant, caller.key.settings
        limits = [Limit(("tenant", tenant.id), tenant.rate_per_second, tenant.rate_burst)]
        if key.rate_per_second is not None:
            burst = key.rate_burst or max(1, math.ceil(key.rate_per_second))
            limits.append(Limit(("key", caller.key.id), key.rate_per_second, burst))
        wait = self._buckets.take(limits, count, now)
        return 0 if wait == 0 else max(1, math.ceil(wait))
