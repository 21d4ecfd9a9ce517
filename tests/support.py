"""Helpers for tests on the real stack: watch a topic, wait, receive webhooks, read traces."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import aiosmtplib
import asyncpg
import httpx
import uvicorn
from aiokafka import AIOKafkaConsumer, ConsumerRecord
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from libs.batch import Outbox
from libs.broker import Broker
from libs.service import Service
from libs.settings import Settings
from libs.trace_waterfall import fetch_trace
from schemas.events import DeliveryEvent, EventData, MessageState
from schemas.pipeline import PARKED_HEADER_PREFIX, ParkedRecord

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
        """Every record's value decoded as JSON (records that are not JSON are left out)."""
        values = []
        for record in self.records:
            try:
                values.append(json.loads(record.value or b""))
            except ValueError:
                continue
        return values

    def parked(self) -> list[tuple[ConsumerRecord[bytes, bytes], ParkedRecord]]:
        """Every parked record seen (on any dead-letter topic), with why it was parked."""
        return [
            (record, ParkedRecord.from_headers(list(record.headers)))
            for record in self.records
            if any(name.startswith(PARKED_HEADER_PREFIX) for name, _ in record.headers)
        ]

    async def wait_for_parked(
        self, predicate: Callable[[ParkedRecord], bool], count: int = 1, timeout: float = 30.0
    ) -> list[tuple[ConsumerRecord[bytes, bytes], ParkedRecord]]:
        """Wait until ``count`` parked records match ``predicate``; return them."""

        async def matched() -> list[tuple[ConsumerRecord[bytes, bytes], ParkedRecord]] | None:
            found = [(record, why) for record, why in self.parked() if predicate(why)]
            return found if len(found) >= count else None

        return await eventually(matched, timeout=timeout)

    async def wait_for(
        self, predicate: Callable[[Any], bool], count: int = 1, timeout: float = 30.0
    ) -> list[Any]:
        """Wait until ``count`` JSON values match ``predicate``; return the matches."""

        async def matched() -> list[Any] | None:
            found = [value for value in self.json_values() if predicate(value)]
            return found if len(found) >= count else None

        return await eventually(matched, timeout=timeout)


class WebhookReceiver:
    """A tenant's webhook endpoint: records every post, answers the statuses it is told to."""

    def __init__(self) -> None:
        self.posts: dict[str, list[tuple[dict[str, str], bytes]]] = defaultdict(list)
        self.answered: dict[str, list[int]] = defaultdict(list)
        """The status each post of ``posts`` was answered."""
        self.arrived: dict[str, list[float]] = defaultdict(list)
        """When (``time.monotonic()``) each post of ``posts`` arrived."""
        self.answers: dict[str, list[int]] = {}
        self.bodies: dict[str, bytes] = {}
        """What each endpoint answers with (empty when not set)."""
        self.base_url = ""

    async def _hook(self, request: Request) -> Response:
        name = request.path_params["name"]
        self.arrived[name].append(time.monotonic())
        self.posts[name].append((dict(request.headers), await request.body()))
        answers = self.answers.get(name) or [200]
        status = answers.pop(0) if len(answers) > 1 else answers[0]
        self.answered[name].append(status)
        return Response(self.bodies.get(name, b""), status_code=status)

    def delivered_ids(self, name: str) -> list[str]:
        """The ``webhook-id`` of every post to ``name`` answered 2xx, in order."""
        posts = zip(self.posts[name], self.answered[name], strict=True)
        return [headers["webhook-id"] for (headers, _), status in posts if status < 300]

    def url(self, answers: list[int] | None = None) -> tuple[str, str]:
        """A fresh endpoint answering ``answers`` in turn (the last one from then on)."""
        name = uuid.uuid4().hex
        self.answers[name] = list(answers or [200])
        return name, f"{self.base_url}/hooks/{name}"

    def app(self) -> Starlette:
        """The ASGI app that serves the endpoints."""
        return Starlette(routes=[Route("/hooks/{name}", self._hook, methods=["POST"])])


@asynccontextmanager
async def serving_app(app: Starlette, **config: Any) -> AsyncIterator[int]:
    """``app`` served by uvicorn (with ``config``, e.g. ``ssl_certfile``) on a free loopback
    port while the block runs; that port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", **config))
    serving = asyncio.create_task(server.serve(sockets=[sock]))

    async def started() -> bool | None:
        return True if server.started else None

    try:
        await eventually(started)
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        await serving
        sock.close()


@asynccontextmanager
async def serving_webhooks() -> AsyncIterator[WebhookReceiver]:
    """A ``WebhookReceiver`` served by uvicorn on a free loopback port while the block runs."""
    receiver = WebhookReceiver()
    async with serving_app(receiver.app()) as port:
        receiver.base_url = f"http://127.0.0.1:{port}"
        yield receiver


@asynccontextmanager
async def black_hole() -> AsyncIterator[str]:
    """An endpoint that takes connections and never answers; its URL."""
    held: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        while await reader.read(65536):
            pass

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/hole"
    finally:
        server.close()
        for writer in held:
            writer.close()


async def jaeger_services(settings: Settings, trace_id: str) -> set[str] | None:
    """The services with spans in a trace, as Jaeger's query API reports it (None: not found)."""
    async with httpx.AsyncClient() as client:
        found = await fetch_trace(client, settings, trace_id)
    return None if found is None else {p["serviceName"] for p in found["processes"].values()}


async def emit(
    broker: Broker, settings: Settings, state: MessageState, data: EventData
) -> DeliveryEvent:
    """Publish one event as the services do (with its headers), and wait for the broker."""
    outbox = Outbox(settings.topic_prefix)
    event = outbox.emit(None, state, data)
    await broker.send_confirmed(outbox.publications)
    return event


ServiceT = TypeVar("ServiceT", bound=Service)


@asynccontextmanager
async def started(service: ServiceT) -> AsyncIterator[ServiceT]:
    """``service`` started for the block and stopped after it, as a fixture wants it."""
    await service.start()
    try:
        yield service
    finally:
        await service.stop()


async def logged_delivered(
    pool: asyncpg.Pool,
    recipient: str,
    stream: str = "transactional",
    tenant_id: str | None = None,
    message_id: str | None = None,
) -> asyncpg.Record:
    """A delivered message in the log (of a fresh tenant, and a fresh id, unless given), as the
    recorder would have written it (what the listener and the unsubscribe link check tokens
    against)."""
    row: asyncpg.Record | None = await pool.fetchrow(
        "INSERT INTO messages (id, tenant_id, trace_id, status, lane, stream, category, sender,"
        " recipient, accepted_at) VALUES ($1, $2, $3, 'delivered', 'normal', $4, 'notification',"
        " 'app@example.test', $5, now()) RETURNING *",
        uuid.UUID(message_id) if message_id else uuid.uuid4(),
        uuid.UUID(tenant_id) if tenant_id else uuid.uuid4(),
        uuid.uuid4().hex,
        stream,
        recipient,
    )
    assert row is not None
    return row


def sent_headers(message_id: str, recipient: str) -> str:
    """The header block of a message as the sender wrote it (as reports return it)."""
    return (
        f"From: app@example.test\r\nTo: {recipient}\r\nSubject: Hello\r\n"
        f"Message-ID: <{message_id}@example.test>\r\nX-Sendarix-Message-ID: {message_id}\r\n"
    )


def delivery_status(
    message_id: str, recipient: str, action: str = "failed", status: str = "5.1.1"
) -> bytes:
    """An RFC 3464 report about a message, as a receiving MTA writes one after its 250."""
    code = "550" if status.startswith("5") else "451"
    return (
        "From: Mail Delivery System <MAILER-DAEMON@mx.example.com>\r\n"
        "To: <bounces@sendarix.test>\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.com\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: {action}\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: smtp; {code} {status} mailbox unavailable\r\n\r\n"
        "--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"{sent_headers(message_id, recipient)}\r\n--B--\r\n"
    ).encode()


async def mail_from_null_sender(port: int, recipient: str, content: bytes) -> Any:
    """Hand ``content`` to the SMTP server on ``port`` from the null sender, as MTAs return
    mail; the server's reply to DATA."""
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=10) as smtp:
        return await smtp.sendmail("", [recipient], content)


Scrape = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(url: str) -> Scrape:
    """Every sample a metrics endpoint shows: (name, labels) -> value."""
    async with httpx.AsyncClient(timeout=5) as client:
        answer = await client.get(url)
    assert answer.status_code == 200, answer.text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def moved(before: Scrape, after: Scrape, name: str, **labels: str) -> float:
    """How much the samples of ``name`` that carry ``labels`` grew between two scrapes."""

    def total(scraped: Scrape) -> float:
        wanted = set(labels.items())
        return sum(v for (n, ls), v in scraped.items() if n == name and wanted <= ls)

    return total(after) - total(before)
