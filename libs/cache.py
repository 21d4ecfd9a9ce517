"""A small time-bounded cache for rows read on every message (templates, tenants).

Entries expire after ``ttl`` seconds, so a change in the database reaches the pipeline within
that time without a query per message. Misses (None) are never cached: a row created a moment
ago is found on the next message. Concurrent look-ups of one key share one load, so a batch of
hundreds of requests for one tenant costs one query when its entry has expired, not hundreds.
"""

from __future__ import annotations

import asyncio
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
        self._loading: dict[K, asyncio.Future[V | None]] = {}

    async def get(self, key: K, load: Callable[[], Awaitable[V | None]]) -> V | None:
        """The cached value of ``key``, or what ``load`` returns now (cached unless None)."""
        entry = self._entries.get(key)
        if entry is not None and entry[0] > time.monotonic():
            return entry[1]
        loading = self._loading.get(key)
        if loading is None:
            loading = self._loading[key] = asyncio.ensure_future(self._load(key, load))
        return await asyncio.shield(loading)  # a waiter that gives up leaves the load running

    def fresh(self, key: K) -> V | None:
        """The cached value of ``key`` while it lasts (None: absent or expired)."""
        entry = self._entries.get(key)
        return entry[1] if entry is not None and entry[0] > time.monotonic() else None

    def put(self, key: K, value: V) -> None:
        """Cache ``value`` for ``ttl`` seconds (values loaded together, in one query)."""
        now = time.monotonic()
        if len(self._entries) >= self.size:
            self._entries = {k: e for k, e in self._entries.items() if e[0] > now}
            if len(self._entries) >= self.size:
                self._entries.pop(next(iter(self._entries)))
        self._entries[key] = (now + self.ttl, value)

    def forget(self, stale: Callable[[V], bool]) -> None:
        """Drop the entries whose value is ``stale``: the next look-up loads them afresh."""
        self._entries = {k: e for k, e in self._entries.items() if not stale(e[1])}

    def discard(self, key: K) -> None:
        """Drop ``key``'s entry: its next look-up loads it afresh."""
        self._entries.pop(key, None)

    async def _load(self, key: K, load: Callable[[], Awaitable[V | None]]) -> V | None:
        try:
            value = await load()
        finally:
            self._loading.pop(key, None)
        if value is None:
            self._entries.pop(key, None)
            return None
        self.put(key, value)
        return value
