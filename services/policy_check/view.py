"""policy-check's in-process view of the suppression list: no database round trip for a batch
whose recipients are not suppressed, which is nearly every batch.

The view is a Bloom filter of the suppressed (tenant, address) keys: about 1.2 MB per million
suppressions at a 1 % false-positive rate, where a set of Python objects would take ~100 MB.
It answers "certainly not suppressed" or "maybe"; only the maybes of a batch are looked up in
the database (one query), which stays the truth, so a removed or expired suppression, whose
bits stay set until the next rebuild, costs a look-up and never a wrongly stopped message.

Kept current three ways: loaded at start (correct across restarts), fed by the feedback reader
of this process as it stores what events teach, and a poll of the rows written since the
previous poll (by the HTTP API, the CLI, an import, or another policy-check process) every
``suppression_poll_seconds``. A suppression written elsewhere therefore stops messages at
most one poll interval plus one poll query later (≤ 2 s by default) — while the database
answers; the poll keeps retrying while it does not. The filter is rebuilt from the table when
it holds more keys than it was sized for, and every hour (dropping removed keys' bits).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime

import asyncpg

from libs.database import DATABASE_DOWN
from libs.suppressions import (
    Key,
    Suppression,
    active_suppressions,
    changes_since,
    keys_and_horizon,
    normalise_address,
)
from schemas.common import Problem
from schemas.pipeline import MessageSpec
from services.policy_check.decide import verdict

log = logging.getLogger(__name__)

MIN_CAPACITY = 1_000_000
FALSE_POSITIVE_RATE = 0.01
REBUILD_SECONDS = 3600.0


class AddressFilter:
    """A Bloom filter of suppression keys, sized for ``capacity`` keys."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.size = math.ceil(-capacity * math.log(FALSE_POSITIVE_RATE) / math.log(2) ** 2)
        self.hashes = max(1, round(self.size / capacity * math.log(2)))
        self.bits = bytearray(self.size // 8 + 1)
        self.count = 0

    def _positions(self, key: Key) -> Iterator[int]:
        """Double hashing over Python's own (keyed, per process) hash: the filter never leaves
        the process, and an address cannot be crafted to collide in every process."""
        first = hash(key)
        step = hash((first, key)) | 1
        return ((first + i * step) % self.size for i in range(self.hashes))

    def add(self, key: Key) -> None:
        for position in self._positions(key):
            self.bits[position >> 3] |= 1 << (position & 7)
        self.count += 1

    def __contains__(self, key: Key) -> bool:
        bits = self.bits
        return all(bits[p >> 3] & (1 << (p & 7)) for p in self._positions(key))

    @property
    def full(self) -> bool:
        return self.count > self.capacity


class SuppressionView:
    """Which recipients of a batch are suppressed, with the database asked only about maybes."""

    def __init__(self, pool: asyncpg.Pool, poll_seconds: float) -> None:
        self.pool = pool
        self.poll_seconds = poll_seconds
        self.filter = AddressFilter(MIN_CAPACITY)
        self.horizon = 0
        self.loaded_at = 0.0
        self._polling: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Load every suppressed key, then poll for changes in the background."""
        await self.load()
        self._polling = asyncio.create_task(self._poll_forever(), name="suppression poll")

    async def stop(self) -> None:
        if self._polling is not None:
            self._polling.cancel()
            await asyncio.gather(self._polling, return_exceptions=True)

    async def load(self) -> None:
        """(Re)build the filter from the table, and poll on from the snapshot it was read in."""
        started = time.monotonic()
        async with self.pool.acquire() as connection:
            keys, horizon = await keys_and_horizon(connection)
        rebuilt = AddressFilter(max(MIN_CAPACITY, 2 * len(keys)))
        for key in keys:
            rebuilt.add(key)
        self.filter, self.horizon, self.loaded_at = rebuilt, horizon, time.monotonic()
        log.info(
            "suppression view: %d keys loaded in %.1f s (%d KiB)",
            len(keys),
            self.loaded_at - started,
            len(rebuilt.bits) // 1024,
        )

    async def poll(self) -> None:
        """Take in the keys written since the previous poll (rebuild when due)."""
        if self.filter.full or time.monotonic() - self.loaded_at > REBUILD_SECONDS:
            await self.load()
            return
        keys, self.horizon = await changes_since(self.pool, self.horizon)
        self._add(keys)

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            try:
                await self.poll()
            except DATABASE_DOWN as error:
                log.warning("suppression view: poll failed (%r); retrying", error)

    def _add(self, keys: Iterable[Key]) -> None:
        for key in keys:
            self.filter.add(key)

    def learned(self, suppressions: Sequence[Suppression]) -> None:
        """Take in suppressions this process just stored (no need to wait for the poll)."""
        self._add(s.key for s in suppressions)

    async def problems(self, specs: Sequence[MessageSpec], now: datetime) -> list[Problem | None]:
        """The problem that stops each message, or None: it may go."""
        keys = [(spec.tenant_id, normalise_address(spec.recipient.address)) for spec in specs]
        maybe = [key for key in keys if key in self.filter]
        found = await active_suppressions(self.pool, maybe) if maybe else {}
        return [
            verdict(spec, found.get(key, ()), now) for spec, key in zip(specs, keys, strict=True)
        ]
