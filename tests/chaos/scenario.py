"""One chaos run: traffic through both intakes while every service is killed in turn and the
broker and the database restart once each; then a drain, and the figures.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import asyncpg
import httpx
from aiokafka import AIOKafkaProducer
from tqdm import tqdm

from deploy.stack.pipeline import SERVICES
from libs.topics import SEND_REQUESTS, public_topic
from schemas.events import TERMINAL_STATES, MessageState
from services.ingest.ids import keyed_message_ids
from tests.chaos.stack import SENDER_DOMAIN, ChaosStack
from tests.chaos.tally import ChaosFigures, TerminalEvent, received_ids, tally
from tests.chaos.traffic import (
    Ledger,
    Refused,
    post_until_accepted,
    produce_until_acked,
    send_request,
)
from tests.support import eventually

STALL_TIMEOUT = 600.0
"""Seconds the traffic may take to reach the next fault before the run gives up."""

TOPIC_SHARE = 2
"""Every second message goes onto the send-requests topic, the others over HTTP."""


@dataclass(frozen=True)
class Fault:
    """One failure to inject, once ``due`` messages were accepted."""

    name: str
    due: int
    inject: Callable[[ChaosStack], Awaitable[None]]


def fault_plan(messages: int, *, settle: bool = True) -> list[Fault]:
    """Kill every service in turn; restart the broker and the database once, between them.

    The faults are spread evenly over the traffic, the last one well before it ends. With
    ``settle``, each killed service is ready again before the next fault.
    """
    steps: list[tuple[str, Callable[[ChaosStack], Awaitable[None]]]] = []
    for service in SERVICES:
        steps.append(
            (f"kill -9 {service}", partial(ChaosStack.crash, service=service, settle=settle))
        )
        if service == "policy-check":
            steps.append(("restart broker", ChaosStack.restart_broker))
        if service == "sender":
            steps.append(("restart database", ChaosStack.restart_database))
    spacing = messages // (len(steps) + 1)
    return [Fault(name, spacing * (i + 1), inject) for i, (name, inject) in enumerate(steps)]


@dataclass
class Progress:
    """Progress bars of the long run (silent in CI)."""

    show: bool

    def bar(self, total: int, what: str) -> tqdm[None]:
        return tqdm(total=total, desc=what, unit="msg", disable=not self.show, leave=True)

    def note(self, text: str) -> None:
        if self.show:
            tqdm.write(text)


async def _traffic(
    stack: ChaosStack,
    messages: int,
    concurrency: int,
    rate: float,
    ledger: Ledger,
    bar: tqdm[None],
) -> None:
    settings = stack.settings
    topic = public_topic(SEND_REQUESTS, settings.topic_prefix)
    run = uuid.uuid4().hex[:8]
    indices = iter(range(messages))  # shared: each worker takes the next one
    # acks=all without idempotence: aiokafka's idempotent producer wedges after a broker
    # restart (see libs.broker.Broker); a resent record is a repeat of its idempotency key.
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    begun = time.monotonic()

    async def worker(http: httpx.AsyncClient) -> None:
        for index in indices:
            if rate:
                await asyncio.sleep(begun + index / rate - time.monotonic())
            key = f"chaos-{run}-{index}"
            body = send_request(index, SENDER_DOMAIN, settings.simulator_domain)
            if index % TOPIC_SHARE:
                record = {**body, "tenant_id": stack.tenant_id, "idempotency_key": key}
                await produce_until_acked(producer, topic, record, key)
                ledger.topic_keys.append(key)
            else:
                try:
                    ledger.http_ids.extend(
                        await post_until_accepted(http, stack.api_key, body, key)
                    )
                except Refused as refusal:
                    ledger.refused.append(str(refusal))
            bar.update()

    try:
        async with httpx.AsyncClient(base_url=settings.public_url, timeout=10) as http:
            await asyncio.gather(*(worker(http) for _ in range(concurrency)))
    finally:
        await producer.stop()


async def _reached(ledger: Ledger, count: int) -> bool | None:
    return True if ledger.settled >= count else None


async def _faults(
    stack: ChaosStack, plan: list[Fault], ledger: Ledger, progress: Progress
) -> list[str]:
    injected = []
    for fault in plan:
        await eventually(partial(_reached, ledger, fault.due), timeout=STALL_TIMEOUT, every=0.05)
        started = time.monotonic()
        await fault.inject(stack)
        injected.append(fault.name)
        progress.note(
            f"{fault.name} at {fault.due} accepted: back in {time.monotonic() - started:.1f} s"
        )
    return injected


async def _topic_message_ids(
    connection: asyncpg.Connection, tenant_id: str, keys: list[str]
) -> list[str]:
    """The ids ingest gave the acknowledged topic records (derived from their idempotency keys)."""
    rows = await connection.fetch(
        "SELECT key, created_at FROM idempotency_keys"
        " WHERE tenant_id = $1 AND key = ANY($2::text[])",
        tenant_id,
        keys,
    )
    return [keyed_message_ids(tenant_id, row["key"], row["created_at"], 1)[0] for row in rows]


async def _terminal_events(
    connection: asyncpg.Connection, ids: list[str]
) -> dict[str, list[TerminalEvent]]:
    rows = await connection.fetch(
        "SELECT DISTINCT message_id::text AS id, type, event->'data'->'problem'->>'code' AS code"
        " FROM message_events WHERE message_id = ANY($1::uuid[]) AND type = ANY($2::text[])",
        ids,
        [state.event_type for state in TERMINAL_STATES],
    )
    found: dict[str, list[TerminalEvent]] = defaultdict(list)
    for row in rows:
        state = MessageState(row["type"].removeprefix("sendarix.message."))
        found[row["id"]].append(TerminalEvent(state, row["code"]))
    return found


async def _drain(
    stack: ChaosStack, ledger: Ledger, timeout: float, progress: Progress
) -> tuple[list[str], dict[str, list[TerminalEvent]]]:
    """Wait until every accepted message ended, or none ended for ``timeout`` seconds.

    A backlog still draining is not a loss; a pipeline that stopped moving is. Returns the
    accepted ids and their endings.
    """
    deadline = time.monotonic() + timeout
    with progress.bar(ledger.accepted, "terminal") as bar:
        while True:
            connection = await asyncpg.connect(stack.settings.database_url)
            try:
                topic_ids = await _topic_message_ids(connection, stack.tenant_id, ledger.topic_keys)
                ids = ledger.http_ids + topic_ids
                terminal = await _terminal_events(connection, ids)
            finally:
                await connection.close()
            if len(terminal) > bar.n:
                deadline = time.monotonic() + timeout
                bar.update(len(terminal) - bar.n)
            if len(terminal) == ledger.accepted or time.monotonic() > deadline:
                return ids, terminal
            await asyncio.sleep(1.0)


def _mailbox_headers(log: Path) -> list[str]:
    """The Message-ID of every message the mailbox simulator accepted, as it logged them."""
    if not log.exists():
        return []
    return [json.loads(line)["message_id"] for line in log.read_text().splitlines() if line.strip()]


@dataclass(frozen=True)
class ChaosReport:
    """The figures of one run and what was done to the stack meanwhile."""

    messages: int
    faults: list[str]
    dead_services: list[str]
    refusals: dict[str, int]
    """Why the gateway refused what it refused (status and problem code)."""
    seconds: float
    figures: ChaosFigures


async def run_chaos(
    stack: ChaosStack,
    messages: int,
    *,
    rate: float = 0.0,
    concurrency: int = 32,
    settle: bool = True,
    drain_timeout: float = 300.0,
    show_progress: bool = False,
) -> ChaosReport:
    """Send ``messages`` while injecting every fault of the plan; drain; count.

    ``rate``: messages offered per second (0: as fast as the platform takes them), so that the
    traffic lasts as long as the faults; ``settle``: see :func:`fault_plan`; ``drain_timeout``:
    how long the drain waits without any message reaching its end.
    """
    progress = Progress(show_progress)
    ledger = Ledger()
    started = time.monotonic()
    with progress.bar(messages, "accepted") as bar:
        _, injected = await asyncio.gather(
            _traffic(stack, messages, concurrency, rate, ledger, bar),
            _faults(stack, fault_plan(messages, settle=settle), ledger, progress),
        )
    ids, terminal = await _drain(stack, ledger, drain_timeout, progress)
    figures = tally(
        ids,
        untraced=len(ledger.topic_keys) - (len(ids) - len(ledger.http_ids)),
        refused=len(ledger.refused),
        terminal=terminal,
        received=received_ids(_mailbox_headers(stack.settings.simulator_log)),
    )
    return ChaosReport(
        messages,
        injected,
        stack.dead_services(),
        dict(Counter(ledger.refused)),
        time.monotonic() - started,
        figures,
    )
