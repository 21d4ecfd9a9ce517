"""The offered load: bulk notices and OTPs, through the HTTP gateway and ``sendarix.send.requests``.

Each message's accept time is taken when the platform acknowledged it: the 202 of the gateway,
or the broker's ack of the record (acks=all). Open loop: at a fixed rate, a slow platform does
not slow the offered load down (up to ``in_flight`` requests wait at once).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from tqdm import tqdm

from libs.topics import SEND_REQUESTS, public_topic
from schemas.common import Lane
from services.ingest.ids import RecordOrigin, record_message_ids
from tests.bench.stack import NOTICE_TEMPLATE, OTP_TEMPLATE, SENDER_DOMAIN, BenchStack

OTP_EVERY = 20
"""One message in 20 is an OTP (5 %); the others are bulk notices."""


class Entry(StrEnum):
    """How a message enters the platform."""

    HTTP = "http"
    TOPIC = "topic"


@dataclass(frozen=True)
class Planned:
    """One message to send: its lane and its way in."""

    lane: Lane
    entry: Entry


@dataclass(frozen=True)
class Accepted:
    """A message the platform accepted, and when (ns since the epoch)."""

    message_id: str
    lane: Lane
    entry: Entry
    at_ns: int


def mixed_plan(count: int, entries: tuple[Entry, ...] = (Entry.HTTP, Entry.TOPIC)) -> list[Planned]:
    """95 % bulk and 5 % OTPs, spread evenly, taking turns over ``entries``."""
    return [
        Planned(
            Lane.CRITICAL if index % OTP_EVERY == OTP_EVERY - 1 else Lane.BULK,
            entries[index % len(entries)],
        )
        for index in range(count)
    ]


def uniform_plan(count: int, lane: Lane, entry: Entry) -> list[Planned]:
    """``count`` messages of one lane, all one way in."""
    return [Planned(lane, entry)] * count


class Load:
    """Clients of both ways in, bound to the bench tenant."""

    def __init__(self, stack: BenchStack) -> None:
        self.stack = stack
        self.run = uuid.uuid4().hex[:6]
        self.errors: dict[str, int] = {}
        self._sent = 0
        self._topic = public_topic(SEND_REQUESTS, stack.settings.topic_prefix)
        self._http = httpx.AsyncClient(
            base_url=stack.settings.public_url,
            headers={"Authorization": f"Bearer {stack.api_key}"},
            # idle connections are dropped before uvicorn closes them (5 s), never mid-request
            limits=httpx.Limits(
                max_connections=64, max_keepalive_connections=64, keepalive_expiry=2
            ),
            timeout=60,
        )
        self._producer = AIOKafkaProducer(
            bootstrap_servers=stack.settings.kafka_bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
        )

    async def start(self) -> None:
        await self._producer.start()

    async def close(self) -> None:
        await self._producer.stop()
        await self._http.aclose()

    def body(self, lane: Lane) -> dict[str, Any]:
        """A realistic request of ``lane``: a templated bulk notice or an OTP, a new recipient."""
        self._sent += 1
        number = self._sent
        recipient = f"user{number}.{self.run}@mail.example.com"
        if lane is Lane.CRITICAL:
            return {
                "from": f"Acme Security <login@{SENDER_DOMAIN}>",
                "to": recipient,
                "template": OTP_TEMPLATE[0],
                "data": {"code": f"{number % 1_000_000:06d}", "app": "Acme"},
                "category": "otp",
                "tags": ["login"],
            }
        return {
            "from": f"Acme Updates <updates@{SENDER_DOMAIN}>",
            "to": recipient,
            "template": NOTICE_TEMPLATE[0],
            "data": {
                "name": f"Customer {number}",
                "product": "Acme Cloud",
                "count": 3,
                "items": ["A new sign-in method", "Your usage report is ready", "Status: OK"],
            },
            "category": "notification",
            "priority": lane.value,
            "tags": ["digest"],
            "metadata": {"account": f"acct-{number % 5000}"},
        }

    def record_size(self) -> int:
        """The size of a bulk send request as it travels on the topic, in bytes."""
        return len(self._record(self.body(Lane.BULK)))

    def _record(self, body: dict[str, Any]) -> bytes:
        return json.dumps({**body, "tenant_id": self.stack.tenant_id}).encode()

    def _failed(self, why: str) -> None:
        self.errors[why] = self.errors.get(why, 0) + 1

    async def send(self, planned: Planned) -> Accepted | None:
        """Send one message; None when the platform refused it (counted in ``errors``)."""
        body = self.body(planned.lane)
        if planned.entry is Entry.HTTP:
            try:
                response = await self._http.post("/v1/messages", json=body)
            except httpx.HTTPError as error:
                self._failed(type(error).__name__)
                return None
            if response.status_code != 202:
                self._failed(f"http {response.status_code}")
                return None
            return Accepted(response.json()["id"], planned.lane, planned.entry, time.time_ns())
        pending = await self._producer.send(self._topic, self._record(body))
        sent = await pending
        origin = RecordOrigin(sent.topic, sent.partition, sent.offset)
        [message_id] = record_message_ids(origin, 1)
        return Accepted(message_id, planned.lane, planned.entry, time.time_ns())

    async def drive(
        self, plan: list[Planned], rate: float | None, what: str, in_flight: int = 256
    ) -> list[Accepted]:
        """Send ``plan`` at ``rate`` messages/s (None: as fast as the platform takes them)."""
        accepted: list[Accepted] = []
        slots = asyncio.Semaphore(in_flight)
        started = time.monotonic()
        with tqdm(total=len(plan), desc=what, unit="msg", leave=False) as bar:

            async def one(planned: Planned) -> None:
                try:
                    if (result := await self.send(planned)) is not None:
                        accepted.append(result)
                finally:
                    slots.release()
                    bar.update()

            async with asyncio.TaskGroup() as group:
                for index, planned in enumerate(plan):
                    if rate is not None:
                        await asyncio.sleep(max(0.0, started + index / rate - time.monotonic()))
                    await slots.acquire()
                    group.create_task(one(planned))
        return accepted


async def wait_delivered(
    stack: BenchStack, accepted: list[Accepted], what: str, idle_seconds: float = 30.0
) -> None:
    """Poll the sink until every accepted message arrived, or nothing arrived for a while."""
    waiting = {item.message_id for item in accepted}
    idle_since = time.monotonic()
    with tqdm(total=len(waiting), desc=what, unit="msg", leave=False) as bar:
        while waiting and time.monotonic() - idle_since < idle_seconds:
            if await stack.sink.poll():
                idle_since = time.monotonic()
            arrived = waiting & stack.sink.received.keys()
            waiting -= arrived
            bar.update(len(arrived))
            await asyncio.sleep(0.25)
