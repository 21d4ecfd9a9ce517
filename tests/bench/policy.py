"""The policy scenario: suppression checks with a million suppressions in the database.

1. A CSV of ``suppressions`` rows (one address each, the stream alternating) is streamed to
   ``POST /v1/suppressions/import`` of the running gateway: the import time is the client's,
   from the first byte sent to the answer (the rows are committed by then).
2. policy-check's decision path (``services.policy_check.view``: the in-process view loaded
   from the table, the pure verdict) is built in this process, as a policy-check process
   builds it at start, and asked for ``decisions`` decisions in batches of
   ``BATCH`` (a normal lane's chunk), one in ``HIT_EVERY`` recipients suppressed. Decisions/s is
   their count over the time spent in the calls; a decision's latency is its batch's call (each
   message waits for its batch), p99 over the batches. The suppressions are deleted afterwards.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx

from schemas.common import Lane, Stream
from schemas.pipeline import MessageSpec
from services.policy_check.view import SuppressionView
from tests.bench.measure import latency_summary
from tests.bench.stack import BenchStack
from tests.records import message_spec

BATCH = 25
HIT_EVERY = 100
CSV_CHUNK_ROWS = 20_000
IMPORT_TIMEOUT_SECONDS = 600.0
DECISIONS_GOAL_PER_S = 5000
DECISION_P99_MS = 2.0
IMPORT_GOAL_S = 60.0


def _address(prefix: str, number: int) -> str:
    return f"{prefix}{number}@bench.example.org"


async def _csv(prefix: str, rows: int) -> AsyncIterator[bytes]:
    yield b"address,stream\n"
    streams = [stream.value for stream in Stream]
    for first in range(0, rows, CSV_CHUNK_ROWS):
        numbers = range(first, min(rows, first + CSV_CHUNK_ROWS))
        yield "".join(f"{_address(prefix, n)},{streams[n % 2]}\n" for n in numbers).encode()


async def import_through_gateway(stack: BenchStack, prefix: str, rows: int) -> dict[str, Any]:
    """Stream the CSV to the gateway; the seconds until it answered."""
    url = f"http://127.0.0.1:{stack.settings.http_port}/v1/suppressions/import"
    headers = {"Authorization": f"Bearer {stack.tenant.api_key}", "Content-Type": "text/csv"}
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=IMPORT_TIMEOUT_SECONDS) as client:
        response = await client.post(url, content=_csv(prefix, rows), headers=headers)
    seconds = time.monotonic() - started
    response.raise_for_status()
    return {"rows": rows, "written": response.json()["written"], "seconds": round(seconds, 1)}


def _specs(tenant_id: str, prefix: str, rows: int, count: int) -> list[MessageSpec]:
    """Messages to random addresses: one in ``HIT_EVERY`` suppressed in its stream, the others
    not suppressed at all (addresses outside the imported range)."""
    chance = random.Random(10)
    specs = []
    for index in range(count):
        if index % HIT_EVERY == 0:
            number = chance.randrange(rows)
            stream = list(Stream)[number % 2]
        else:
            number, stream = rows + chance.randrange(10 * rows), Stream.TRANSACTIONAL
        specs.append(
            message_spec(
                tenant_id=tenant_id,
                recipient=_address(prefix, number),
                stream=stream,
                lane=Lane.BULK if stream is Stream.BROADCAST else Lane.NORMAL,
            )
        )
    return specs


async def decide(stack: BenchStack, prefix: str, rows: int, decisions: int) -> dict[str, Any]:
    """Load the view as policy-check does, then time the decisions."""
    view = SuppressionView(stack.pool, stack.settings.suppression_poll_seconds)
    started = time.monotonic()
    await view.load()
    load_s = time.monotonic() - started
    specs = _specs(stack.tenant.id, prefix, rows, decisions)
    latencies, stopped, spent = [], 0, 0.0
    for first in range(0, len(specs), BATCH):
        batch = specs[first : first + BATCH]
        began = time.perf_counter()
        problems = view.problems(batch, datetime.now(UTC))
        took = time.perf_counter() - began
        spent += took
        latencies.append(1000 * took)
        stopped += sum(problem is not None for problem in problems)
    return {
        "view_keys": len(view.addresses.hashes),
        "view_load_s": round(load_s, 1),
        "view_bytes": view.addresses.nbytes,
        "decisions": len(specs),
        "batch": BATCH,
        "stopped": stopped,
        "expected_stopped": len(range(0, decisions, HIT_EVERY)),
        "decisions_per_s": round(len(specs) / spent),
        "batch_latency": latency_summary(latencies),
    }


async def policy(stack: BenchStack, rows: int, decisions: int) -> dict[str, Any]:
    """Import ``rows`` suppressions, time ``decisions`` decisions, remove the suppressions."""
    prefix = f"p{uuid.uuid4().hex[:6]}-"
    try:
        imported = await import_through_gateway(stack, prefix, rows)
        return {"import": imported, **await decide(stack, prefix, rows, decisions)}
    finally:
        await stack.pool.execute(
            "DELETE FROM suppressions WHERE tenant_id = $1", uuid.UUID(stack.tenant.id)
        )


def policy_goals(figures: dict[str, Any] | None) -> list[tuple[bool, str]]:
    """The issue's goals for the policy scenario."""
    if not figures:
        return []
    rate, p99 = figures["decisions_per_s"], figures["batch_latency"].get("p99_ms")
    seconds = figures["import"]["seconds"]
    return [
        (
            rate >= DECISIONS_GOAL_PER_S,
            f"policy decisions >= {DECISIONS_GOAL_PER_S}/s with {figures['view_keys']:,}"
            f" suppressions: {rate}/s",
        ),
        (
            p99 is not None and p99 <= DECISION_P99_MS,
            f"policy decision p99 <= {DECISION_P99_MS} ms (its batch of {figures['batch']}):"
            f" {p99} ms",
        ),
        (
            figures["stopped"] == figures["expected_stopped"],
            f"every suppressed recipient stopped (a view that stops nothing is fast too):"
            f" {figures['stopped']}/{figures['expected_stopped']}",
        ),
        (
            seconds <= IMPORT_GOAL_S,
            f"CSV import of {figures['import']['rows']:,} rows <= {IMPORT_GOAL_S:g} s: {seconds} s",
        ),
    ]


def policy_report(figures: dict[str, Any]) -> str:
    """The policy scenario's figures, for the terminal and docs/benchmarks.md."""
    latency = figures["batch_latency"]
    return (
        f"policy: CSV import of {figures['import']['rows']:,} rows through the gateway in"
        f" {figures['import']['seconds']} s; view of {figures['view_keys']:,} keys loaded in"
        f" {figures['view_load_s']} s ({figures['view_bytes'] / 2**20:.1f} MiB);"
        f" {figures['decisions_per_s']} decisions/s in batches of {figures['batch']}, batch"
        f" p50/95/99 {latency.get('p50_ms')}/{latency.get('p95_ms')}/{latency.get('p99_ms')} ms;"
        f" {figures['stopped']}/{figures['expected_stopped']} suppressed recipients stopped"
    )
