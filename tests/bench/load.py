"""The offered load: bulk notices and OTPs, through the HTTP gateway and ``sendarix.send.requests``.

The load generator must cost the co-located stack next to nothing, so it sends the way a busy
application would: bulk through ``POST /v1/messages/batch`` (up to 500 a request) and as records
produced without awaiting each one (many ``send()`` calls, then the broker's acks); OTPs one
``POST /v1/messages`` each, as an app sends them. Bodies are small dicts made into JSON once.

A message's accept time is when the platform acknowledged it: the 202 of a single request, the
200 of the batch it was in, or the broker's ack of its record (acks=all). Open loop: at a fixed
rate, a slow platform does not slow the offered load down.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterable, Sized
from dataclasses import dataclass
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from aiokafka.structs import RecordMetadata
from tqdm import tqdm

from libs.topics import SEND_REQUESTS, public_topic
from schemas.common import Lane
from services.ingest.ids import RecordOrigin, record_message_ids
from tests.bench.plans import Entry, Kind, Planned
from tests.bench.stack import NOTICE_TEMPLATE, OTP_TEMPLATE, SENDER_DOMAIN, BenchStack, BenchTenant

BATCH_SIZE = 500
"""The most ``POST /v1/messages/batch`` takes in one request."""
BATCH_WAIT_SECONDS = 0.1
"""At a fixed rate, a batch goes out when it is full or this old, as an app's sender would."""
TICK_SECONDS = 0.02
"""At a fixed rate, the messages due are sent together at most this often: waking up for each
one would cost more CPU than sending it."""
BATCHES_IN_FLIGHT = 4
"""Batch requests waiting at once; more wait in the load generator."""
LINGER_MS = 20
"""The producer waits this long to fill a batch: at a fixed rate, a produce request per tick
rather than per record (the accept time is the broker's ack, so the wait is not in any latency)."""
STICKY_RECORDS = 100
"""Records produced to one partition before the next one takes over."""
HTTP_IN_FLIGHT = 16
"""Single requests waiting at once (OTPs: a few percent of the messages); more wait in the load
generator, so a slow door never holds the others up."""
TRANSPORT_ERRORS = (httpx.HTTPError, OSError)
JSON = {"Content-Type": "application/json"}
"""What a request that got no answer raises (``IncompleteReadError`` is an ``EOFError``)."""


@dataclass(frozen=True)
class Accepted:
    """A message the platform accepted, when (ns since the epoch), and its trace if known."""

    message_id: str
    kind: Kind
    entry: Entry
    at_ns: int
    trace_id: str | None = None

    @property
    def lane(self) -> Lane:
        """The lane its kind asks for."""
        return self.kind.lane


@dataclass(frozen=True)
class Driven:
    """What one ``Load.drive`` offered, and what of it the platform accepted."""

    offered: int
    accepted: list[Accepted]


def _otp(number: int, recipient: str) -> dict[str, Any]:
    return {
        "from": f"Acme Security <login@{SENDER_DOMAIN}>",
        "to": recipient,
        "template": OTP_TEMPLATE[0],
        "data": {"code": f"{number % 1_000_000:06d}", "app": "Acme"},
        "category": "otp",
        "tags": ["login"],
    }


def _notice(number: int, recipient: str) -> dict[str, Any]:
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
        "priority": "bulk",
        "tags": ["digest"],
        "metadata": {"account": f"acct-{number % 5000}"},
    }


def _broadcast(number: int, recipient: str) -> dict[str, Any]:
    return _notice(number, recipient) | {"stream": "broadcast", "priority": "critical"}


BODIES: dict[Kind, Callable[[int, str], dict[str, Any]]] = {
    Kind.NOTICE: _notice,
    Kind.OTP: _otp,
    Kind.BROADCAST: _broadcast,
}


def batch_results(
    answer: dict[str, Any], kinds: list[Kind], at_ns: int
) -> tuple[list[Accepted], list[str]]:
    """The messages a batch answer accepted, and why each of the others was refused."""
    accepted: list[Accepted] = []
    refused: list[str] = []
    for kind, result in zip(kinds, answer["results"], strict=True):
        if result["status"] == 202:
            body = result["accepted"]
            accepted.append(Accepted(body["id"], kind, Entry.BATCH, at_ns, body["trace_id"]))
        else:
            refused.append(f"batch item {result['status']} {result['problem'].get('code')}")
    return accepted, refused


class StickyPartitioner:
    """Records without a key go to one partition, ``STICKY_RECORDS`` at a time, then the next,
    as Kafka's Java client does: a tick's records make one batch, not one per partition."""

    def __init__(self) -> None:
        self._records = 0

    def __call__(self, key: bytes | None, partitions: list[int], available: list[int]) -> int:
        choices = available or partitions
        chosen = choices[self._records // STICKY_RECORDS % len(choices)]
        self._records += 1
        return chosen


class Load:
    """Clients of every way in, bound to one tenant; refusals are counted in ``errors``."""

    def __init__(self, stack: BenchStack, tenant: BenchTenant) -> None:
        self.tenant = tenant
        self.run = uuid.uuid4().hex[:6]
        self.errors: dict[str, int] = {}
        self._sent = 0
        self._topic = public_topic(SEND_REQUESTS, stack.settings.topic_prefix)
        connections = HTTP_IN_FLIGHT + BATCHES_IN_FLIGHT
        self._gateway = httpx.AsyncClient(
            base_url=stack.settings.public_url,
            headers={"Authorization": f"Bearer {tenant.api_key}"},
            # idle connections are dropped before uvicorn closes them (5 s), never mid-request
            limits=httpx.Limits(
                max_connections=connections,
                max_keepalive_connections=connections,
                keepalive_expiry=2,
            ),
            timeout=120,
        )
        self._producer = AIOKafkaProducer(
            bootstrap_servers=stack.settings.kafka_bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=LINGER_MS,
            max_batch_size=256 * 1024,
            partitioner=StickyPartitioner(),
        )

    async def start(self) -> None:
        await self._producer.start()

    async def close(self) -> None:
        await self._producer.stop()
        await self._gateway.aclose()

    def body(self, kind: Kind) -> dict[str, Any]:
        """A realistic request of ``kind`` to a new recipient."""
        self._sent += 1
        return BODIES[kind](self._sent, f"user{self._sent}.{self.run}@mail.example.com")

    def record(self, kind: Kind) -> bytes:
        """A send request of ``kind`` as it travels on the topic."""
        return json.dumps({**self.body(kind), "tenant_id": self.tenant.id}).encode()

    async def get(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """A JSON answer of the gateway, as this tenant; None unless 200."""
        answer = await self._gateway.get(path, params=params)
        found: dict[str, Any] | None = answer.json() if answer.status_code == 200 else None
        return found

    def _failed(self, why: str, count: int = 1) -> None:
        self.errors[why] = self.errors.get(why, 0) + count

    async def produce(self, kind: Kind) -> asyncio.Future[Accepted | None]:
        """Hand a record to the producer (waiting only while its batch is full); the future
        resolves once the broker acknowledged it."""
        acked = await self._producer.send(self._topic, self.record(kind))
        accepted: asyncio.Future[Accepted | None] = asyncio.get_running_loop().create_future()

        def on_ack(done: asyncio.Future[RecordMetadata]) -> None:
            if done.cancelled() or done.exception() is not None:
                self._failed("topic: not acknowledged")
                accepted.set_result(None)
                return
            sent = done.result()
            origin = RecordOrigin(sent.topic, sent.partition, sent.offset)
            [message_id] = record_message_ids(origin, 1)
            accepted.set_result(Accepted(message_id, kind, Entry.TOPIC, time.time_ns()))

        acked.add_done_callback(on_ack)
        return accepted

    async def post_one(self, kind: Kind) -> Accepted | None:
        """``POST /v1/messages`` of one message; None when refused."""
        try:
            answer = await self._gateway.post(
                "/v1/messages", content=json.dumps(self.body(kind)).encode(), headers=JSON
            )
        except TRANSPORT_ERRORS as error:
            self._failed(type(error).__name__)
            return None
        if answer.status_code != 202:
            self._failed(f"http {answer.status_code}")
            return None
        accepted = answer.json()
        return Accepted(accepted["id"], kind, Entry.HTTP, time.time_ns(), accepted["trace_id"])

    async def post_batch(self, kinds: list[Kind]) -> list[Accepted]:
        """``POST /v1/messages/batch`` of one message of each of ``kinds``; the accepted ones.

        The platform answers once every request of the batch is accepted, and may have delivered
        the first ones by then: each message counts as accepted when the batch was sent (its
        latency includes the whole batch's acceptance, never less than the truth).
        """
        items = b",".join(json.dumps(self.body(kind)).encode() for kind in kinds)
        sent_at = time.time_ns()
        try:
            answer = await self._gateway.post(
                "/v1/messages/batch", content=b'{"messages":[' + items + b"]}", headers=JSON
            )
        except TRANSPORT_ERRORS as error:
            self._failed(f"batch: {type(error).__name__}", len(kinds))
            return []
        if answer.status_code != 200:
            self._failed(f"batch: http {answer.status_code}", len(kinds))
            return []
        accepted, refused = batch_results(answer.json(), kinds, sent_at)
        for why in refused:
            self._failed(why)
        return accepted

    async def drive(
        self,
        plan: Iterable[Planned],
        rate: float | None,
        what: str,
        until: asyncio.Future[Any] | None = None,
    ) -> Driven:
        """Send ``plan`` at ``rate`` messages/s (None: as fast as the platform takes them),
        stopping early once ``until`` is done."""
        drive = _Drive(self, len(plan) if isinstance(plan, Sized) else None, what)
        started = time.monotonic()
        offered = 0
        try:
            async with asyncio.TaskGroup() as group:
                for index, planned in enumerate(plan):
                    if until is not None and until.done():
                        break
                    offered += 1
                    if (
                        rate is not None
                        and (ahead := started + index / rate - time.monotonic()) > 0
                    ):
                        drive.flush(group, stale_only=True)
                        await asyncio.sleep(max(ahead, TICK_SECONDS))
                    await drive.offer(planned, group)
                drive.flush(group)
                await drive.acked()
        finally:
            drive.bar.close()
        return Driven(offered, drive.accepted)


class _Drive:
    """One ``Load.drive``: the batch being filled, what waits for an answer, what was accepted."""

    def __init__(self, load: Load, total: int | None, what: str) -> None:
        self.load = load
        self.accepted: list[Accepted] = []
        self.bar = tqdm(total=total, desc=what, unit="msg", leave=False)
        self._batch: list[Kind] = []
        self._batch_since = 0.0
        self._batches = asyncio.Semaphore(BATCHES_IN_FLIGHT)
        self._singles = asyncio.Semaphore(HTTP_IN_FLIGHT)
        self._records: list[asyncio.Future[Accepted | None]] = []

    async def offer(self, planned: Planned, group: asyncio.TaskGroup) -> None:
        if planned.entry is Entry.TOPIC:
            record = await self.load.produce(planned.kind)
            record.add_done_callback(self._on_record)
            self._records.append(record)
        elif planned.entry is Entry.BATCH:
            if not self._batch:
                self._batch_since = time.monotonic()
            self._batch.append(planned.kind)
            if len(self._batch) == BATCH_SIZE:
                self.flush(group)
        else:
            group.create_task(self._single(planned.kind))

    def flush(self, group: asyncio.TaskGroup, stale_only: bool = False) -> None:
        """Post the batch filled so far (with ``stale_only``, only if it waited long enough)."""
        if not self._batch or (
            stale_only and time.monotonic() - self._batch_since < BATCH_WAIT_SECONDS
        ):
            return
        group.create_task(self._post(self._batch))
        self._batch = []

    async def acked(self) -> None:
        """Wait for the broker's answer to every record produced."""
        await asyncio.gather(*self._records)

    def _on_record(self, done: asyncio.Future[Accepted | None]) -> None:
        self.bar.update()
        if (accepted := done.result()) is not None:
            self.accepted.append(accepted)

    async def _single(self, kind: Kind) -> None:
        async with self._singles:
            if (accepted := await self.load.post_one(kind)) is not None:
                self.accepted.append(accepted)
        self.bar.update()

    async def _post(self, kinds: list[Kind]) -> None:
        async with self._batches:
            self.accepted += await self.load.post_batch(kinds)
        self.bar.update(len(kinds))


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
