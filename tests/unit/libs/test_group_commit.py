"""Group commit: concurrent submissions share a write; each gets its own result or error."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from libs.group_commit import GroupCommit


async def test_submissions_made_during_a_write_share_the_next_one() -> None:
    writes: list[list[int]] = []
    release = asyncio.Event()

    async def write(keys: Sequence[int]) -> dict[int, int]:
        writes.append(list(keys))
        await release.wait()
        return {key: key * 10 for key in keys}

    group: GroupCommit[int, int] = GroupCommit(write)
    first = asyncio.create_task(group.submit(1))
    await asyncio.sleep(0)  # the first write is in flight
    rest = [asyncio.create_task(group.submit(key)) for key in (2, 3, 4)]
    await asyncio.sleep(0)
    release.set()
    assert await first == 10
    assert [await task for task in rest] == [20, 30, 40]
    assert writes == [[1], [2, 3, 4]]


async def test_a_failed_write_fails_its_submitters_only() -> None:
    async def write(keys: Sequence[int]) -> dict[int, int]:
        if 13 in keys:
            raise RuntimeError("unlucky")
        return dict.fromkeys(keys, 0)

    group: GroupCommit[int, int] = GroupCommit(write)
    with pytest.raises(RuntimeError):
        await group.submit(13)
    assert await group.submit(1) == 0


async def test_a_write_carries_at_most_the_limit() -> None:
    sizes: list[int] = []

    async def write(keys: Sequence[int]) -> dict[int, None]:
        sizes.append(len(keys))
        await asyncio.sleep(0)
        return dict.fromkeys(keys)

    group: GroupCommit[int, None] = GroupCommit(write, limit=3)
    await asyncio.gather(*(group.submit(key) for key in range(8)))
    assert max(sizes) <= 3 and sum(sizes) == 8
