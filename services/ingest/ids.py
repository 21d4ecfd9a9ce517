"""Message ids: random for a one-off request, derived when the request may be repeated.

A request with an idempotency key, or a record redelivered from ``sendarix.send.requests``,
must produce the same ids every time it is processed, so a replay after a crash republishes
the same messages (which every later stage recognises) instead of new ones.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

MESSAGE_NAMESPACE = uuid.UUID("0c6f3b0e-93a4-4d58-8a61-2f6d1c5e7b90")


@dataclass(frozen=True)
class RecordOrigin:
    """Where a record of the send-requests topic was read: its identity on the broker."""

    topic: str
    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"

    @classmethod
    def parse(cls, text: str) -> RecordOrigin | None:
        """The origin ``str()`` wrote (None for text that is not one)."""
        topic, _, rest = text.rpartition("/")
        topic, _, partition = topic.rpartition("/")
        if not topic or not partition.isdigit() or not rest.isdigit():
            return None
        return cls(topic, int(partition), int(rest))


def fresh_message_ids(count: int) -> list[str]:
    """Ids for a request that will not be repeated."""
    return [str(uuid.uuid4()) for _ in range(count)]


def keyed_message_ids(tenant_id: str, key: str, claimed_at: datetime, count: int) -> list[str]:
    """Ids for a request under an idempotency key, one per recipient index.

    ``claimed_at`` is when the key was (re)claimed: a key reused once it expired (24 h) gets
    new ids, so the new request is not mistaken for the old one downstream.
    """
    return [
        str(uuid.uuid5(MESSAGE_NAMESPACE, f"{tenant_id}/{key}/{claimed_at.isoformat()}/{index}"))
        for index in range(count)
    ]


def record_message_ids(origin: RecordOrigin, count: int) -> list[str]:
    """Ids for the recipients of a record without an idempotency key."""
    return [str(uuid.uuid5(MESSAGE_NAMESPACE, f"{origin}/{index}")) for index in range(count)]


def rejection_id(origin: RecordOrigin) -> str:
    """The message id a ``rejected`` event of an invalid record reports."""
    return str(uuid.uuid5(MESSAGE_NAMESPACE, str(origin)))
