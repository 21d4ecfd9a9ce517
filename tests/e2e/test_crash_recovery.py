"""``kill -9`` of any service while messages flow: nothing answered 202 is lost or sent twice."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from functools import partial
from typing import Any

import asyncpg
import httpx
import pytest

from deploy.stack.pipeline import SERVICES
from libs.tenants import Tenant
from schemas.events import TERMINAL_STATES
from tests.e2e.conftest import Topology
from tests.support import eventually

pytestmark = pytest.mark.e2e

MESSAGES_PER_SERVICE = 15
TERMINAL_TYPES = [state.event_type for state in TERMINAL_STATES]


async def _send_until_accepted(http: httpx.AsyncClient, api_key: str, index: int) -> str:
    """Send one message the way a careful client does: retry with the same Idempotency-Key."""
    key = f"chaos-{uuid.uuid4()}"
    body = {
        "from": "alerts@example.test",
        "to": f"success+{index}@simulator.sendarix.test",
        "subject": f"Chaos {index}",
        "text": "Survive this.",
        "category": "otp" if index % 4 == 0 else "notification",
    }
    headers = {"Authorization": f"Bearer {api_key}", "Idempotency-Key": key}
    for _ in range(600):
        try:
            response = await http.post("/v1/messages", json=body, headers=headers)
        except httpx.TransportError:
            await asyncio.sleep(0.2)
            continue
        if response.status_code == 202:
            message_id: str = response.json()["id"]
            return message_id
        assert response.status_code in (502, 503, 504), response.text
        await asyncio.sleep(0.2)
    raise AssertionError(f"message {index} was never accepted")


async def _terminal_states(pool: asyncpg.Pool, ids: list[str]) -> dict[str, list[str]]:
    rows = await pool.fetch(
        "SELECT message_id::text AS id, array_agg(DISTINCT type) AS types FROM message_events"
        " WHERE message_id = ANY($1::uuid[]) AND type = ANY($2::text[]) GROUP BY message_id",
        ids,
        TERMINAL_TYPES,
    )
    return {row["id"]: list(row["types"]) for row in rows}


async def test_kill_9_of_each_service_loses_and_duplicates_nothing(
    topology: Topology, pool: asyncpg.Pool, tenant: tuple[Tenant, str]
) -> None:
    _, api_key = tenant
    accepted: list[str] = []
    total = MESSAGES_PER_SERVICE * len(SERVICES)

    async def traffic() -> None:
        for start in range(0, total, 5):
            batch = range(start, min(start + 5, total))
            ids = await asyncio.gather(
                *(_send_until_accepted(topology.http, api_key, i) for i in batch)
            )
            accepted.extend(ids)

    async def crashes() -> list[str]:
        killed = []
        for round_number, service in enumerate(SERVICES, start=1):
            due = round_number * MESSAGES_PER_SERVICE // 2
            await eventually(partial(_at_least, accepted, due), timeout=120)
            topology.supervisor.kill(service)
            killed.append(service)
            await asyncio.sleep(0.5)
            await topology.restart(service)
        return killed

    _, killed = await asyncio.gather(traffic(), crashes())

    assert killed == list(SERVICES)
    assert len(set(accepted)) == total

    async def all_terminal() -> dict[str, list[str]] | None:
        states = await _terminal_states(pool, accepted)
        return states if len(states) == total else None

    states = await eventually(all_terminal, timeout=180, every=1.0)
    assert all(len(types) == 1 for types in states.values()), states
    outcomes = Counter(types[0] for types in states.values())
    received = Counter(d["message_id"] for d in topology.simulator_deliveries())
    ours = {mid: n for mid, n in received.items() if any(i in mid for i in accepted)}
    assert max(ours.values()) == 1, [mid for mid, n in ours.items() if n > 1]
    delivered = outcomes["sendarix.message.delivered"]
    assert delivered + outcomes["sendarix.message.failed"] == total, outcomes
    assert len(ours) >= delivered


async def _at_least(items: list[Any], count: int) -> bool | None:
    return True if len(items) >= count else None
