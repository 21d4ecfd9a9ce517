"""Helpers for tests on the real broker: watch a topic, wait for a condition."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRecord

from libs.settings import Settings

T = TypeVar("T")


async def eventually(
    check: Callable[[], Awaitable[T | None]], timeout: float = 30.0, every: float = 0.1
) -> T:
    """Poll ``check`` until it returns something other than None; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(every)


class TopicTap:
    """Reads every record appended to some topics after it started (its own consumer group)."""

    def __init__(self, settings: Settings, *topics: str) -> None:
        self.records: list[ConsumerRecord[bytes, bytes]] = []
        self._consumer = AIOKafkaConsumer(
            *topics,
            bootstrap_servers=settings.kafka_bootstrap,
            group_id=f"test-tap-{uuid.uuid4().hex[:8]}",
            auto_offset_reset="latest",
            enable_auto_commit=False,
        )
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> TopicTap:
        await self._consumer.start()
        await eventually(self._assigned, timeout=30)
        self._task = asyncio.create_task(self._pump())
        return self

    async def _assigned(self) -> bool | None:
        assignment = self._consumer.assignment()
        if not assignment:
            await self._consumer.getmany(timeout_ms=100)
            return None
        for partition in assignment:
            await self._consumer.position(partition)
        return True

    async def _pump(self) -> None:
        async for record in self._consumer:
            self.records.append(record)

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
        await self._consumer.stop()

    def json_values(self) -> list[Any]:
        """Every record's value decoded as JSON."""
        return [json.loads(r.value) for r in self.records if r.value is not None]

    async def wait_for(
        self, predicate: Callable[[Any], bool], count: int = 1, timeout: float = 30.0
    ) -> list[Any]:
        """Wait until ``count`` JSON values match ``predicate``; return the matches."""

        async def matched() -> list[Any] | None:
            found = [value for value in self.json_values() if predicate(value)]
            return found if len(found) >= count else None

        return await eventually(matched, timeout=timeout)
