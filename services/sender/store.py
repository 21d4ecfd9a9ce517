"""``delivery_attempts``: the record of every attempt handed to SMTP, the guard against copies.

A row is claimed in state ``data`` right before DATA and set to ``done`` with the reply right
after it. A row still in ``data`` after DATA's longest possible duration is an attempt whose
outcome nobody knows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import asyncpg

from schemas.events import MessageState
from schemas.pipeline import SmtpReply


class AttemptState(StrEnum):
    """How far an attempt got once it was claimed."""

    DATA = "data"
    DONE = "done"


@dataclass(frozen=True)
class RecordedAttempt:
    """An attempt already handed to SMTP (by this process or an earlier one)."""

    state: AttemptState
    outcome: MessageState | None
    reply: SmtpReply | None
    finished_at: datetime | None
    age: timedelta
    """How long ago it was claimed (by the database's clock, as every instance sees it)."""


async def recorded_attempt(
    pool: asyncpg.Pool, message_id: str, attempt: int
) -> RecordedAttempt | None:
    """The record of an attempt, or None when it was never handed to SMTP."""
    row = await pool.fetchrow(
        "SELECT state, outcome, reply, finished_at, now() - started_at AS age"
        " FROM delivery_attempts"
        " WHERE message_id = $1 AND attempt = $2",
        message_id,
        attempt,
    )
    if row is None:
        return None
    return RecordedAttempt(
        state=AttemptState(row["state"]),
        outcome=MessageState(row["outcome"]) if row["outcome"] else None,
        reply=SmtpReply.model_validate(row["reply"]) if row["reply"] else None,
        finished_at=row["finished_at"],
        age=row["age"],
    )


async def claim_attempt(pool: asyncpg.Pool, message_id: str, attempt: int) -> bool:
    """Claim an attempt for DATA; False when it was claimed before (then it must not be sent)."""
    claimed = await pool.fetchval(
        "INSERT INTO delivery_attempts (message_id, attempt, state) VALUES ($1, $2, 'data')"
        " ON CONFLICT DO NOTHING RETURNING true",
        message_id,
        attempt,
    )
    return bool(claimed)


async def finish_attempt(
    pool: asyncpg.Pool,
    message_id: str,
    attempt: int,
    outcome: MessageState,
    reply: SmtpReply,
    finished_at: datetime,
) -> None:
    """Record the server's answer to DATA; the verdict can be derived again from it."""
    await pool.execute(
        "UPDATE delivery_attempts SET state = 'done', outcome = $3, reply = $4, finished_at = $5"
        " WHERE message_id = $1 AND attempt = $2",
        message_id,
        attempt,
        outcome.value,
        reply.model_dump(mode="json"),
        finished_at,
    )
