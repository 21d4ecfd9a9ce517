"""Group commit: writes that arrive while one is in flight go together in the next statement.

Each caller waits for its own row as if it had written it alone, so the guarantee of a single
write is kept (e.g. the sender's claim right before DATA), but under load a statement carries
every row that came in meanwhile instead of one round trip each — with no added delay when
the load is light. A key submitted twice into one write is written once and both submitters get
its result: a caller that needs a key to be granted once must not submit it twice at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
R = TypeVar("R")

Write = Callable[[Sequence[K]], Awaitable[dict[K, R]]]


class GroupCommit(Generic[K, R]):
    """Runs ``write`` over the keys submitted meanwhile; each submitter gets its key's result."""

    def __init__(self, write: Write[K, R], limit: int = 500) -> None:
        self._write = write
        self._limit = limit
        self._waiting: list[tuple[K, asyncio.Future[R]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, key: K) -> R:
        """Write ``key`` with whatever else is waiting; its result (or the write's error)."""
        done: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((key, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain())
        return await done

    async def _drain(self) -> None:
        while self._waiting:
            group, self._waiting = self._waiting[: self._limit], self._waiting[self._limit :]
            try:
                results = await self._write(list(dict.fromkeys(key for key, _ in group)))
            except Exception as error:
                for _, done in group:
                    if not done.done():
                        done.set_exception(error)
                continue
            for key, done in group:
                if not done.done():
                    done.set_result(results[key])
