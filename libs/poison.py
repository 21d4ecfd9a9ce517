"""The poison policy of every consumer: what is retried without end, and what is parked.

Only a dependency that is down (the broker, the database, the network) is worth waiting for:
those failures are retried, with backoff, and never skip a record. Anything else — a record
that cannot be decoded, a handler that raises something unexpected, a record too large to
publish — is the record's own problem: it is parked on its stage's dead-letter topic with its
original bytes and the reason, its message (when it can be identified) is reported ``failed``,
a counter goes up, and the partition moves on.
"""

from __future__ import annotations

import json
import logging
import socket
from datetime import UTC, datetime

import asyncpg
from aiokafka import ConsumerRecord
from aiokafka.errors import KafkaError, MessageSizeTooLargeError, RecordTooLargeError
from prometheus_client import Counter
from pydantic import ValidationError

from libs.batch import Outbox
from libs.database import DATABASE_DOWN
from libs.events import event_data
from schemas.common import Problem
from schemas.events import MessageState
from schemas.pipeline import PARKED_HEADER_PREFIX, MessageSpec, ParkedRecord

log = logging.getLogger(__name__)

RECORD_FAULTS: tuple[type[Exception], ...] = (MessageSizeTooLargeError, RecordTooLargeError)
"""Broker errors that are about one record, not about the broker: retrying never helps."""

DEPENDENCY_DOWN: tuple[type[Exception], ...] = (
    KafkaError,
    *DATABASE_DOWN,
    ConnectionError,
    TimeoutError,
    socket.gaierror,
    asyncpg.exceptions.TransactionRollbackError,  # deadlock or serialization failure: run again
)
"""Failures of a dependency rather than of a record: waited out, never a reason to skip."""

UNDECODABLE = "undecodable_record"
HANDLER_FAILED = "handler_failed"
RECORD_TOO_LARGE = "record_too_large"
DETAIL_MAX_CHARS = 2000

PARKED = Counter(
    "sendarix_parked_records",
    "Records parked on a dead-letter topic, by consumer and reason.",
    ["service", "role", "reason"],
)


def is_transient(error: BaseException) -> bool:
    """True when ``error`` says a dependency is down (retry), False when the record is at fault."""
    if isinstance(error, RECORD_FAULTS):
        return False
    return isinstance(error, DEPENDENCY_DOWN)


def spec_in(value: bytes | None) -> MessageSpec | None:
    """The message spec inside a pipeline record that is otherwise broken, if that part is intact.

    Every pipeline record carries it as ``message``, or (a ``RetryRequest``) as ``job.message``.
    """
    try:
        record = json.loads(value or b"")
        return MessageSpec.model_validate(record.get("message") or record["job"]["message"])
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError, ValidationError):
        return None


def park(
    outbox: Outbox,
    raw: ConsumerRecord[bytes, bytes],
    topic: str,
    why: ParkedRecord,
) -> None:
    """Put ``raw`` on the dead-letter ``topic``: its key, value and headers as they were, plus
    the ``sendarix-dlq-*`` headers saying why."""
    kept = [
        (name, value) for name, value in raw.headers if not name.startswith(PARKED_HEADER_PREFIX)
    ]
    outbox.add(None, topic, raw.value or b"", raw.key, [*kept, *why.headers()])
    PARKED.labels(why.service, why.role, why.reason).inc()
    log.error(
        "parked %s/%s@%s on %s: %s (%s)",
        raw.topic,
        raw.partition,
        raw.offset,
        topic,
        why.reason,
        why.detail,
    )


def parking_note(
    raw: ConsumerRecord[bytes, bytes],
    service: str,
    role: str,
    reason: str,
    detail: str,
    *,
    exception: BaseException | None = None,
    pointers: tuple[str, ...] = (),
    message_id: str | None = None,
    origin: tuple[str, int, int] | None = None,
) -> ParkedRecord:
    """Why a record is parked, as its dead-letter headers say it; ``origin`` (topic, partition,
    offset) where it was first produced, when that is not where it was read."""
    topic, partition, offset = origin or (raw.topic, raw.partition, raw.offset)
    return ParkedRecord(
        reason=reason,
        detail=detail[:DETAIL_MAX_CHARS],
        pointers=pointers,
        exception=type(exception).__name__ if exception is not None else None,
        service=service,
        role=role,
        topic=topic,
        partition=partition,
        offset=offset,
        message_id=message_id,
        parked_at=datetime.now(UTC),
    )


def report_failed(
    outbox: Outbox, spec: MessageSpec, service: str, reason: str, detail: str
) -> None:
    """Tell the message's sender it will never be delivered, and why."""
    problem = Problem(code=reason, detail=detail[:DETAIL_MAX_CHARS])
    outbox.emit(None, MessageState.FAILED, event_data(spec, service, problem=problem))
