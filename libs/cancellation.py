"""Cancelling a message before SMTP: a row of ``delivery_attempts`` that no claim passes.

The gateway cancels, the sender claims; both write ``delivery_attempts``, where a unique index
(migration 0007) lets a message have at most one row in state ``data`` or ``cancelled``. So a
cancel and a claim of the same message exclude each other whatever their timing: a cancel that
comes second finds the attempt in DATA (too late), a claim that comes second finds the message
cancelled (nothing is sent).
"""

from __future__ import annotations

import uuid
from enum import StrEnum

import asyncpg

CANCELLED_STATE = "cancelled"
CANCEL_ATTEMPT = 0
"""The cancel row's attempt number: before every real attempt (they count from 1)."""
CANCEL_CLAIMER = "api"

HANDED_OVER_OUTCOMES = ("delivered", "bounced", "failed")
"""Outcomes of an attempt after which the message is past cancelling."""


class Cancellation(StrEnum):
    """What became of a request to cancel a message."""

    CANCELLED = "cancelled"
    """Cancelled now: no attempt of it will be handed to SMTP."""
    ALREADY = "already"
    """It was cancelled before."""
    TOO_LATE = "too_late"
    """An attempt is in DATA, or one ended the message's journey."""


async def cancel_sending(pool: asyncpg.Pool, message_id: str) -> Cancellation:
    """Keep every future attempt of a message from being sent, if none is being sent or ended it.

    One statement: the cancel row is written unless an attempt is in DATA (the unique index, also
    against a claim not committed yet) or ended with an outcome past cancelling.
    """
    key = uuid.UUID(message_id)
    async with pool.acquire() as connection:
        written = await connection.fetchval(
            "INSERT INTO delivery_attempts (message_id, attempt, state, claimed_by)"
            " SELECT $1, $2, $3, $4 WHERE NOT EXISTS (SELECT 1 FROM delivery_attempts"
            " WHERE message_id = $1 AND outcome = ANY($5::text[]))"
            " ON CONFLICT DO NOTHING RETURNING true",
            key,
            CANCEL_ATTEMPT,
            CANCELLED_STATE,
            CANCEL_CLAIMER,
            list(HANDED_OVER_OUTCOMES),
        )
        if written:
            return Cancellation.CANCELLED
        before = await connection.fetchval(
            "SELECT true FROM delivery_attempts WHERE message_id = $1 AND state = $2",
            key,
            CANCELLED_STATE,
        )
    return Cancellation.ALREADY if before else Cancellation.TOO_LATE
