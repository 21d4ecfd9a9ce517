"""``delivery_attempts``: the record of every attempt handed to SMTP, the guard against copies.

A row is claimed in state ``data`` right before DATA and set to ``done`` with the reply right
after it. A row still in ``data`` after DATA's longest possible duration is an attempt whose
outcome nobody knows. Claims and replies of concurrent attempts are written together
(``libs.group_commit``); each still happens before (claim) or right after (reply) its DATA.
The claim's statement also keeps the bytes about to be sent (``message_raw``), and a message
cancelled through the API has a row of its own (``libs.cancellation``) that no claim passes.
"""

from __future__ import annotations

import asyncio
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import asyncpg

from libs.cancellation import CANCELLED_STATE
from schemas.events import MessageState
from schemas.pipeline import SmtpReply

AttemptKey = tuple[str, int]
"""(message id, attempt number)."""


class AttemptState(StrEnum):
    """How far an attempt got once it was claimed."""

    DATA = "data"
    DONE = "done"
    CANCELLED = CANCELLED_STATE
    """Not an attempt: the message was cancelled before any attempt of it was claimed."""


@dataclass(frozen=True)
class RecordedAttempt:
    """An attempt already handed to SMTP (by this process or an earlier one)."""

    state: AttemptState
    outcome: MessageState | None
    reply: SmtpReply | None
    finished_at: datetime | None
    age: timedelta
    """How long ago it was claimed (by the database's clock, as every instance sees it)."""


@dataclass(frozen=True)
class FinishedAttempt:
    """The server's answer to one attempt's DATA."""

    message_id: str
    attempt: int
    outcome: MessageState
    reply: SmtpReply
    finished_at: datetime

    @property
    def key(self) -> AttemptKey:
        return (self.message_id, self.attempt)


COMPRESS_IN_THREAD_BYTES = 256 * 1024
"""A message this large is compressed off the event loop (zlib releases the GIL), so the
other attempts' SMTP exchanges do not wait for it."""


async def compressed(message: bytes) -> bytes:
    """A message as ``message_raw`` keeps it."""
    if len(message) < COMPRESS_IN_THREAD_BYTES:
        return zlib.compress(message)
    return await asyncio.to_thread(zlib.compress, message)


@dataclass(frozen=True)
class AttemptClaim:
    """An attempt to claim right before its DATA, with the bytes DATA is about to send."""

    key: AttemptKey
    tenant_id: str
    content: bytes
    """The message, ``compressed``."""


def _ids(keys: Sequence[AttemptKey]) -> tuple[list[uuid.UUID], list[int]]:
    return [uuid.UUID(message_id) for message_id, _ in keys], [attempt for _, attempt in keys]


async def recorded_attempts(
    pool: asyncpg.Pool, keys: Sequence[AttemptKey]
) -> dict[AttemptKey, RecordedAttempt]:
    """The records of those of ``keys`` that were handed to SMTP before, or whose message was
    cancelled (one query); an attempt's own record wins over its message's cancellation."""
    if not keys:
        return {}
    rows = await pool.fetch(
        "SELECT k.attempt AS key_attempt, a.message_id, a.attempt, a.state, a.outcome, a.reply,"
        " a.finished_at, now() - a.started_at AS age FROM delivery_attempts a"
        " JOIN unnest($1::uuid[], $2::int[]) AS k (message_id, attempt)"
        " ON a.message_id = k.message_id AND (a.attempt = k.attempt OR a.state = $3)",
        *_ids(keys),
        CANCELLED_STATE,
    )
    recorded: dict[AttemptKey, RecordedAttempt] = {}
    for row in sorted(rows, key=lambda row: row["state"] != CANCELLED_STATE):
        recorded[(str(row["message_id"]), row["key_attempt"])] = RecordedAttempt(
            state=AttemptState(row["state"]),
            outcome=MessageState(row["outcome"]) if row["outcome"] else None,
            reply=SmtpReply.model_validate(row["reply"]) if row["reply"] else None,
            finished_at=row["finished_at"],
            age=row["age"],
        )
    return recorded


async def claim_attempts(
    pool: asyncpg.Pool, claims: Sequence[AttemptClaim], claimer: str
) -> dict[AttemptClaim, bool]:
    """Claim attempts for DATA in the name of ``claimer`` (a sender process), keeping the bytes
    of each one granted as its message's last sent; False for those claimed before, or whose
    message was cancelled, or has another attempt in DATA (they must not be sent)."""
    by_key = {claim.key: claim for claim in claims}  # one row per attempt, whatever the bytes
    rows = await pool.fetch(
        "WITH claimed AS ("
        " INSERT INTO delivery_attempts (message_id, attempt, state, claimed_by)"
        " SELECT message_id, attempt, 'data', $3 FROM unnest($1::uuid[], $2::int[])"
        " AS k (message_id, attempt)"
        " ON CONFLICT DO NOTHING RETURNING message_id, attempt),"
        " kept AS ("
        " INSERT INTO message_raw (message_id, tenant_id, attempt, content)"
        " SELECT c.message_id, r.tenant_id, c.attempt, r.content FROM claimed c"
        " JOIN unnest($1::uuid[], $2::int[], $4::uuid[], $5::bytea[])"
        " AS r (message_id, attempt, tenant_id, content)"
        " ON r.message_id = c.message_id AND r.attempt = c.attempt"
        " ON CONFLICT (message_id) DO UPDATE SET attempt = EXCLUDED.attempt,"
        " content = EXCLUDED.content, stored_at = now()"
        " WHERE message_raw.attempt <= EXCLUDED.attempt)"
        " SELECT message_id, attempt FROM claimed",
        *_ids(list(by_key)),
        claimer,
        [uuid.UUID(claim.tenant_id) for claim in by_key.values()],
        [claim.content for claim in by_key.values()],
    )
    claimed = {(str(row["message_id"]), row["attempt"]) for row in rows}
    return {claim: claim.key in claimed for claim in claims}


async def release_unsent(pool: asyncpg.Pool, keys: Sequence[AttemptKey], claimer: str) -> None:
    """Withdraw claims ``claimer`` may have written without handing their messages to SMTP
    (the write seemed to fail), and the bytes kept with them; a claim of anyone else, or one
    that got further, stays."""
    await pool.execute(
        "WITH released AS (DELETE FROM delivery_attempts a USING unnest($1::uuid[], $2::int[])"
        " AS k (message_id, attempt)"
        " WHERE a.message_id = k.message_id AND a.attempt = k.attempt"
        " AND a.state = 'data' AND a.claimed_by = $3 RETURNING a.message_id, a.attempt)"
        " DELETE FROM message_raw r USING released"
        " WHERE r.message_id = released.message_id AND r.attempt = released.attempt",
        *_ids(keys),
        claimer,
    )


async def finish_attempts(
    pool: asyncpg.Pool, finished: Sequence[FinishedAttempt]
) -> dict[FinishedAttempt, None]:
    """Record the servers' answers to DATA; each verdict can be derived again from them."""
    await pool.execute(
        "UPDATE delivery_attempts a SET state = 'done', outcome = f.outcome, reply = f.reply,"
        " finished_at = f.finished_at"
        " FROM unnest($1::uuid[], $2::int[], $3::text[], $4::jsonb[], $5::timestamptz[])"
        " AS f (message_id, attempt, outcome, reply, finished_at)"
        " WHERE a.message_id = f.message_id AND a.attempt = f.attempt",
        [uuid.UUID(f.message_id) for f in finished],
        [f.attempt for f in finished],
        [f.outcome.value for f in finished],
        [f.reply.model_dump(mode="json") for f in finished],
        [f.finished_at for f in finished],
    )
    return dict.fromkeys(finished)
