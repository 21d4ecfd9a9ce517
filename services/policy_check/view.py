"""policy-check's in-process view of the suppression list: a batch is decided without a
database round trip, whether its recipients are suppressed or not.

The view maps each suppressed (tenant, address) to the set of (stream, reason) pairs in force,
as a bit mask. It is kept compact: the 64-bit keyed hashes of the keys in one sorted
``array('q')`` and their masks in an ``array('H')`` (10 bytes per address: about 10 MB per
million, where Python sets or dicts would take well over 100 MB), plus a small dict of the
changes since the last compaction; expiring suppressions (few: pauses, temporary manual ones)
keep their expiry in a dict. Two addresses share a hash with a probability of about one in
10^13 per message at a million suppressions (Python's hash is keyed per process, so no address
can be crafted to collide): the cost of never asking the database.

Kept current three ways: loaded at start (correct across restarts), fed by the feedback reader
of this process as it stores what events teach, and a poll of what was written or removed since
the previous poll (by the HTTP API, the CLI, an import, or another policy-check process) every
``suppression_poll_seconds``. A change made elsewhere therefore applies to messages at most one
poll interval plus one poll query later (≤ 2 s by default) — while the database answers; the
poll keeps retrying while it does not, and the database stays the truth. The view is rebuilt
from the table every hour (dropping expired suppressions).
"""

from __future__ import annotations

import asyncio
import logging
import time
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from datetime import datetime

import asyncpg

from libs.database import DATABASE_DOWN
from libs.suppressions import (
    Key,
    Suppression,
    SuppressionReason,
    changes_since,
    load_all,
    normalise_address,
    verdict,
)
from schemas.common import Problem, Stream
from schemas.pipeline import MessageSpec

log = logging.getLogger(__name__)

PAIRS: tuple[tuple[Stream, SuppressionReason], ...] = tuple(
    (stream, reason) for stream in Stream for reason in SuppressionReason
)
"""What each bit of a mask stands for."""
BIT = {pair: 1 << index for index, pair in enumerate(PAIRS)}
COMPACT_AFTER = 50_000
"""Changes kept in the dict before they are merged into the sorted arrays."""
REBUILD_SECONDS = 3600.0


class SuppressedAddresses:
    """(tenant, address) → mask of (stream, reason) pairs, with expiries of the expiring ones."""

    def __init__(self) -> None:
        self.hashes = array("q")
        self.masks = array("H")
        self.changed: dict[int, int] = {}
        self.expiries: dict[tuple[int, int], datetime] = {}

    def mask(self, hashed: int) -> int:
        if (changed := self.changed.get(hashed)) is not None:
            return changed
        index = bisect_left(self.hashes, hashed)
        if index < len(self.hashes) and self.hashes[index] == hashed:
            return self.masks[index]
        return 0

    def add(self, suppressions: Iterable[Suppression], merge: bool = True) -> None:
        """Take in suppressions in force (a suppression known already: its expiry moves);
        ``merge``: into the arrays once the changes are many (not while loading them all)."""
        for s in suppressions:
            hashed, bit = hash(s.key), BIT[(s.stream, s.reason)]
            self.changed[hashed] = self.mask(hashed) | bit
            if s.expires_at is None:
                self.expiries.pop((hashed, bit), None)
            else:
                self.expiries[(hashed, bit)] = s.expires_at
        if merge and len(self.changed) > COMPACT_AFTER:
            self.compact()

    def replace(self, key: Key, suppressions: Sequence[Suppression]) -> None:
        """Set an address's whole state (after a removal)."""
        hashed = hash(key)
        for bit in BIT.values():
            self.expiries.pop((hashed, bit), None)
        self.changed[hashed] = 0
        self.add(suppressions)

    def compact(self) -> None:
        """Merge the changes into the sorted arrays: a sorted walk that copies the runs between
        them in C (50,000 changes into a million addresses: ~0.1 s, not the seconds of a
        rebuild), so the event loop is held up briefly."""
        hashes, masks = self.hashes, self.masks
        merged_hashes, merged_masks = array("q"), array("H")
        start = 0
        for hashed in sorted(self.changed):
            index = bisect_left(hashes, hashed, start)
            merged_hashes.extend(hashes[start:index])
            merged_masks.extend(masks[start:index])
            start = index + (index < len(hashes) and hashes[index] == hashed)
            if mask := self.changed[hashed]:
                merged_hashes.append(hashed)
                merged_masks.append(mask)
        merged_hashes.extend(hashes[start:])
        merged_masks.extend(masks[start:])
        self.hashes, self.masks, self.changed = merged_hashes, merged_masks, {}

    def suppressions(self, key: Key) -> list[Suppression]:
        """The address's suppressions, as the verdict reads them."""
        hashed = hash(key)
        if not (mask := self.mask(hashed)):
            return []  # the common case: one probe, nothing built
        return [
            Suppression(*key, stream, reason, expires_at=self.expiries.get((hashed, bit)))
            for (stream, reason), bit in BIT.items()
            if mask & bit
        ]

    @property
    def nbytes(self) -> int:
        """Memory of the arrays (the dicts are small between compactions)."""
        return self.hashes.itemsize * len(self.hashes) + self.masks.itemsize * len(self.masks)


class SuppressionView:
    """Which recipients of a batch are suppressed, from memory kept in step with the table."""

    def __init__(self, pool: asyncpg.Pool, poll_seconds: float) -> None:
        self.pool = pool
        self.poll_seconds = poll_seconds
        self.addresses = SuppressedAddresses()
        self.horizon = ""
        """The snapshot of the last load or poll (``libs.suppressions.changes_since``)."""
        self.loaded_at = 0.0
        self._polling: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Load every suppression in force, then poll for changes in the background."""
        await self.load()
        self._polling = asyncio.create_task(self._poll_forever(), name="suppression poll")

    async def stop(self) -> None:
        if self._polling is not None:
            self._polling.cancel()
            await asyncio.gather(self._polling, return_exceptions=True)

    async def load(self) -> None:
        """(Re)build the view from the table, and poll on from the snapshot it was read in."""
        started = time.monotonic()
        loaded = SuppressedAddresses()
        async with self.pool.acquire() as connection:
            horizon = await load_all(connection, lambda chunk: loaded.add(chunk, merge=False))
        loaded.compact()
        self.addresses, self.horizon, self.loaded_at = loaded, horizon, time.monotonic()
        log.info(
            "suppression view: %d addresses loaded in %.1f s (%d KiB)",
            len(loaded.hashes),
            self.loaded_at - started,
            loaded.nbytes // 1024,
        )

    async def poll(self) -> None:
        """Take in what was written or removed since the previous poll (rebuild when due)."""
        if time.monotonic() - self.loaded_at > REBUILD_SECONDS:
            await self.load()
            return
        async with self.pool.acquire() as connection:
            removals = await changes_since(connection, self.horizon, self.addresses.add)
        for key, in_force in removals.now_in_force.items():
            self.addresses.replace(key, in_force)
        self.horizon = removals.horizon

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            try:
                await self.poll()
            except DATABASE_DOWN as error:
                log.warning("suppression view: poll failed (%r); retrying", error)

    def learned(self, suppressions: Sequence[Suppression]) -> None:
        """Take in suppressions this process just stored (no need to wait for the poll)."""
        self.addresses.add(suppressions)

    def suppressed(self, key: Key) -> bool:
        """Whether the address has a suppression in force in some stream (expiry aside)."""
        return self.addresses.mask(hash(key)) != 0

    def problems(self, specs: Sequence[MessageSpec], now: datetime) -> list[Problem | None]:
        """The problem that stops each message, or None: it may go."""
        decided: list[Problem | None] = []
        for spec in specs:
            key = (spec.tenant_id, normalise_address(spec.recipient.address))
            decided.append(verdict(spec, self.addresses.suppressions(key), now))
        return decided
