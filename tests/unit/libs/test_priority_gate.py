"""The priority gate: lower lanes start no new work while higher lanes have some."""

from __future__ import annotations

import asyncio

from libs.priority import LANE_RANK, PriorityGate
from schemas.common import Lane

CRITICAL, HIGH, BULK = LANE_RANK[Lane.CRITICAL], LANE_RANK[Lane.HIGH], LANE_RANK[Lane.BULK]


async def _enter(
    gate: PriorityGate, rank: int, log: list[str], name: str, hold: asyncio.Event
) -> None:
    async with gate.turn(rank):
        log.append(name)
        await hold.wait()


async def test_critical_never_waits_for_bulk() -> None:
    gate, release = PriorityGate(), asyncio.Event()
    log: list[str] = []
    bulk = asyncio.create_task(_enter(gate, BULK, log, "bulk", release))
    await asyncio.sleep(0)
    critical = asyncio.create_task(_enter(gate, CRITICAL, log, "critical", release))
    await asyncio.sleep(0)

    assert log == ["bulk", "critical"]
    release.set()
    await asyncio.gather(bulk, critical)


async def test_bulk_waits_until_critical_work_is_done() -> None:
    gate = PriorityGate()
    log: list[str] = []
    critical_done, bulk_done = asyncio.Event(), asyncio.Event()
    critical = asyncio.create_task(_enter(gate, CRITICAL, log, "critical", critical_done))
    await asyncio.sleep(0)
    bulk = asyncio.create_task(_enter(gate, BULK, log, "bulk", bulk_done))
    for _ in range(5):
        await asyncio.sleep(0)
    assert log == ["critical"]

    critical_done.set()
    bulk_done.set()
    await asyncio.gather(critical, bulk)
    assert log == ["critical", "bulk"]


async def test_waiting_high_work_goes_before_bulk() -> None:
    gate = PriorityGate()
    log: list[str] = []
    release = asyncio.Event()
    critical = asyncio.create_task(_enter(gate, CRITICAL, log, "critical", release))
    await asyncio.sleep(0)
    high = asyncio.create_task(_enter(gate, HIGH, log, "high", asyncio.Event()))
    bulk = asyncio.create_task(_enter(gate, BULK, log, "bulk", asyncio.Event()))
    await asyncio.sleep(0)

    release.set()
    for _ in range(10):
        await asyncio.sleep(0)
    assert log == ["critical", "high"]  # bulk still held back by the running high work
    high.cancel()
    bulk.cancel()
    await asyncio.gather(critical, high, bulk, return_exceptions=True)
