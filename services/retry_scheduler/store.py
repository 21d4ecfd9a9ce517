"""``retry_schedule``: deferred attempts, durable until released to ``deliver.<lane>``.

Several scheduler instances may release at once: each locks the rows it releases
(``FOR UPDATE SKIP LOCKED``) and deletes them in the same transaction. An attempt a pause covers
(``queue_controls``, matched on the row's tenant, lane, route and site) stays until the pause is
lifted, unless its retry window closed meanwhile: then it goes, for the sender to fail it
``expired``. One held because its route and every fallback were drained waits for the undrain.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from libs.cancellation import CANCELLED_STATE
from libs.sendable import domain_of
from schemas.common import Lane
from schemas.pipeline import HoldReason, RetryRequest

LANE_ORDER = [lane.value for lane in Lane]
"""Release order when more attempts are due than one batch holds: critical first."""


@dataclass(frozen=True)
class DueAttempt:
    """A scheduled attempt whose time has come: the job to deliver and its trace context."""

    message_id: str
    attempt: int
    lane: Lane
    topic: str
    job: dict[str, Any]
    headers: dict[str, str]


async def schedule_attempts(
    pool: asyncpg.Pool, requests: Sequence[tuple[RetryRequest, str, dict[str, str]]]
) -> None:
    """Keep deferred attempts, each with the topic it goes to when due and its trace headers,
    in one statement; a repeat changes nothing."""
    if not requests:
        return
    await pool.execute(
        "INSERT INTO retry_schedule (message_id, attempt, lane, topic, due_at, job, headers,"
        " tenant_id, domain, site, route, reason)"
        " SELECT * FROM unnest($1::uuid[], $2::int[], $3::text[], $4::text[],"
        " $5::timestamptz[], $6::jsonb[], $7::jsonb[], $8::text[], $9::text[], $10::text[],"
        " $11::text[], $12::text[])"
        " ON CONFLICT DO NOTHING",
        [request.job.message.message_id for request, _, _ in requests],
        [request.job.attempt for request, _, _ in requests],
        [request.job.message.lane.value for request, _, _ in requests],
        [topic for _, topic, _ in requests],
        [request.due_at for request, _, _ in requests],
        [request.job.model_dump(mode="json") for request, _, _ in requests],
        [headers for _, _, headers in requests],
        [request.spec.tenant_id for request, _, _ in requests],
        [domain_of(request.spec.recipient.address) for request, _, _ in requests],
        [request.site for request, _, _ in requests],
        [request.job.route.name for request, _, _ in requests],
        [request.hold.value for request, _, _ in requests],
    )


def _covered(kind: str) -> str:
    """SQL: whether an active control of ``kind`` covers row ``r`` (a NULL field: any)."""
    return (
        "EXISTS (SELECT 1 FROM queue_controls c"
        f" WHERE c.kind = '{kind}'"
        " AND (c.tenant_id IS NULL OR c.tenant_id = r.tenant_id)"
        " AND (c.lane IS NULL OR c.lane = r.lane)"
        " AND (c.route IS NULL OR c.route = r.route)"
        " AND (c.site IS NULL OR c.site = r.site))"
    )


@asynccontextmanager
async def releasing_due_attempts(
    pool: asyncpg.Pool, topics: list[str], now: datetime, limit: int
) -> AsyncIterator[list[DueAttempt]]:
    """Lock up to ``limit`` attempts for ``topics`` due at ``now`` that no other instance holds.

    The caller publishes them inside the block; their deletion commits only when the block
    ends without an error. They are deleted before the block runs: an attempt the sender holds
    again at once (a shaped or paused hold keeps its attempt number) is scheduled while this
    transaction is open, and its insert must wait for the deletion rather than find the old
    row and do nothing. Attempts of messages cancelled meanwhile are deleted without being
    handed to the caller.
    """
    async with pool.acquire() as connection, connection.transaction():
        rows = await connection.fetch(
            "SELECT r.message_id, r.attempt, r.lane, r.topic, r.job, r.headers,"
            " EXISTS (SELECT 1 FROM delivery_attempts a"
            " WHERE a.message_id = r.message_id AND a.state = $5) AS cancelled"
            " FROM retry_schedule r"
            " WHERE r.due_at <= $1 AND r.topic = ANY($4::text[])"
            " AND ((r.job->>'retry_until')::timestamptz <= $1"
            f" OR NOT ({_covered('pause')} OR (r.reason = $6 AND {_covered('drain')})))"
            " ORDER BY array_position($2::text[], r.lane), r.due_at"
            " LIMIT $3 FOR UPDATE OF r SKIP LOCKED",
            now,
            LANE_ORDER,
            limit,
            topics,
            CANCELLED_STATE,
            HoldReason.PAUSED.value,
        )
        if rows:
            await connection.execute(
                "DELETE FROM retry_schedule r"
                " USING unnest($1::uuid[], $2::int[]) AS d (id, attempt)"
                " WHERE r.message_id = d.id AND r.attempt = d.attempt",
                [row["message_id"] for row in rows],
                [row["attempt"] for row in rows],
            )
        yield [
            DueAttempt(
                message_id=str(row["message_id"]),
                attempt=row["attempt"],
                lane=Lane(row["lane"]),
                topic=row["topic"],
                job=row["job"],
                headers=row["headers"],
            )
            for row in rows
            if not row["cancelled"]
        ]
