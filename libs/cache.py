"""A small time-bounded cache for rows read on every message (templates, tenants).

Entries expire after ``ttl`` seconds, so a change in the database reaches the pipeline within
that time without a query per message. Misses (None) are never cached: a row created a moment
ago is found on the next message.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """Values by key, each kept for ``ttl`` seconds; at most ``size`` of them."""

    def __init__(self, ttl: float, size: int = 1024) -> None:
        self.ttl = ttl
        self.size = size
        self._entries: dict[K, tuple[float, V]] = {}

    async def get(self, key: K, load: Callable[[], Awaitable[V | None]]) -> V | None:
        """The cached value of ``key``, or what ``load`` returns now (cached unless None)."""
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is not None and entry[0] > now:
            return entry[1]
        value = await load()
        if value is None:
            self._entries.pop(key, None)
            return None
        if len(self._entries) >= self.size:
            self._entries = {k: e for k, e in self._entries.items() if e[0] > now}
            if len(self._entries) >= self.size:
                self._entries.pop(next(iter(self._entries)))
        self._entries[key] = (now + self.ttl, value)
        return value
