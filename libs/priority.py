"""Lane priority inside one process: lower lanes start no new work while higher lanes have some.

Every lane has its own topic and consumer, but the consumers of one service share its event
loop, its CPU share and its connections. With this gate, a chunk of bulk work (25 records, see
``libs.subscriptions.Tuning``) starts only when no critical, high or normal work is running or
waiting in the process. Work already started always finishes (no pre-emption), so an OTP waits
at most for the chunk of a lower lane that is in flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from schemas.common import Lane

LANE_RANK: dict[Lane, int] = {lane: rank for rank, lane in enumerate(Lane)}
"""Lower rank, higher priority: critical 0, high 1, normal 2, bulk 3."""

FEEDBACK_RANK = LANE_RANK[Lane.NORMAL]
"""Rank of lane-less work (reading the event stream): above bulk, so a bulk surge cannot starve
the message log, the webhooks and the suppression feedback, below what users wait for."""


class PriorityGate:
    """Admits work in rank order: rank ``r`` starts only when no rank below ``r`` is pending."""

    def __init__(self) -> None:
        self._pending = [0] * len(LANE_RANK)
        self._changed: asyncio.Condition | None = None

    def _condition(self) -> asyncio.Condition:
        # Created lazily: it must belong to the running event loop.
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    def _clear_for(self, rank: int) -> bool:
        return not any(self._pending[:rank])

    @asynccontextmanager
    async def turn(self, rank: int) -> AsyncIterator[None]:
        """Hold lower ranks back while the block runs; first wait for the higher ranks' work.

        Work of ``rank`` counts as pending from the moment it asks, so lower ranks queue behind
        it even while it waits. Higher-priority work that arrives while the block runs does not
        interrupt it.
        """
        changed = self._condition()
        self._pending[rank] += 1
        try:
            if not self._clear_for(rank):
                async with changed:
                    await changed.wait_for(lambda: self._clear_for(rank))
            yield
        finally:
            self._pending[rank] -= 1
            async with changed:
                changed.notify_all()


gate = PriorityGate()
"""The process's gate: every subscriber and the HTTP gateway go through it."""
