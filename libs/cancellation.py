"""Cancelling a message before SMTP: a row of ``delivery_attempts`` that no claim passes.

The gateway cancels, the sender claims; both write ``delivery_attempts``, where a unique index
(migration 0007) lets a message have at most one row in state ``data`` or ``cancelled``. So a
cancel and a claim of the same message exclude each other whatever their timing: a cancel that
comes second finds the attempt in DATA (too late), a claim that comes second finds the message
cancelled (nothing is sent).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from enum import StrEnum

import asyncpg

from libs.broker import Broker
from libs.late_events import report_logged
from schemas.events import MessageState

CANCELLED_STATE = "cancelled"
CANCEL_ATTEMPT = 0
"""The cancel row's attempt number: before every real attempt (they count from 1)."""
CANCEL_CLAIMER = "api"

HANDED_OVER_OUTCOMES = ("delivered", "bounced", "failed")
"""Outcomes of an attempt after which the message is past cancelling."""
PAST_CANCELLING = frozenset(state for state in MessageState if state.terminal) | {
    MessageState.COMPLAINED,
    MessageState.UNSUBSCRIBED,
}
"""States of a logged message that no cancel changes any more."""
REPORT_CONCURRENCY = 200
"""Cancelled events published at once when many messages are cancelled together."""


class Cancellation(StrEnum):
    """What became of a request to cancel a message."""

    CANCELLED = "cancelled"
    """Cancelled now: no attempt of it will be handed to SMTP."""
    ALREADY = "already"
    """It was cancelled before."""
    TOO_LATE = "too_late"
    """An attempt is in DATA, or one ended the message's journey."""


async def cancel_sending(pool: asyncpg.Pool, message_id: str) -> Cancellation:
    """Keep every future attempt of a message from being sent, if none is being sent or ended it."""
    return (await cancel_many(pool, [message_id]))[message_id]


async def cancel_many(pool: asyncpg.Pool, message_ids: Sequence[str]) -> dict[str, Cancellation]:
    """``cancel_sending`` for many messages at once; what became of each.

    One statement: a cancel row is written for each message unless an attempt is in DATA (the
    unique index, also against a claim not committed yet) or ended with an outcome past
    cancelling.
    """
    keys = [uuid.UUID(message_id) for message_id in message_ids]
    async with pool.acquire() as connection:
        written = await connection.fetch(
            "INSERT INTO delivery_attempts (message_id, attempt, state, claimed_by)"
            " SELECT m.id, $2, $3, $4 FROM unnest($1::uuid[]) AS m (id)"
            " WHERE NOT EXISTS (SELECT 1 FROM delivery_attempts"
            " WHERE message_id = m.id AND outcome = ANY($5::text[]))"
            " ON CONFLICT DO NOTHING RETURNING message_id",
            keys,
            CANCEL_ATTEMPT,
            CANCELLED_STATE,
            CANCEL_CLAIMER,
            list(HANDED_OVER_OUTCOMES),
        )
        cancelled = {row["message_id"] for row in written}
        before = {
            row["message_id"]
            for row in await connection.fetch(
                "SELECT message_id FROM delivery_attempts"
                " WHERE message_id = ANY($1::uuid[]) AND state = $2",
                [key for key in keys if key not in cancelled],
                CANCELLED_STATE,
            )
        }
    return {
        str(key): Cancellation.CANCELLED
        if key in cancelled
        else Cancellation.ALREADY
        if key in before
        else Cancellation.TOO_LATE
        for key in keys
    }


async def cancel_logged(
    pool: asyncpg.Pool, broker: Broker, prefix: str, rows: Sequence[asyncpg.Record], service: str
) -> dict[str, Cancellation]:
    """Cancel the logged messages ``rows`` (their ``messages`` rows) and report each one not
    past cancelling ``cancelled`` on the event stream, in its trace; what became of each.

    A message cancelled before is reported again: the event id is the message's and the
    state's, so a cancel whose report a crash lost is reported once, never twice.
    """
    outcomes = await cancel_many(pool, [str(row["id"]) for row in rows])
    reportable = [row for row in rows if outcomes[str(row["id"])] is not Cancellation.TOO_LATE]
    for start in range(0, len(reportable), REPORT_CONCURRENCY):
        await asyncio.gather(
            *(
                report_logged(broker, prefix, row, MessageState.CANCELLED, service)
                for row in reportable[start : start + REPORT_CONCURRENCY]
            )
        )
    return outcomes
