"""What the scenarios send: kinds of message, their ways in, and the plans that mix them."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from itertools import cycle

from schemas.common import Lane

OTP_EVERY = 20
"""One message in 20 is an OTP (5 %); the others are bulk notices."""


class Kind(StrEnum):
    """What a message is."""

    NOTICE = "notice"
    """A bulk notice: a template with a loop, priority ``bulk``."""
    OTP = "otp"
    """A one-time code: category ``otp``, so lane ``critical`` (within the tenant's rate)."""
    BROADCAST = "broadcast"
    """Broadcast mail asking for ``priority: critical``, which the platform must keep in bulk."""

    @property
    def lane(self) -> Lane:
        """The lane the category table gives this kind (before any rate cap)."""
        return Lane.CRITICAL if self is Kind.OTP else Lane.BULK


class Entry(StrEnum):
    """How a message enters the platform."""

    HTTP = "http"
    """``POST /v1/messages``, one request per message."""
    BATCH = "batch"
    """``POST /v1/messages/batch``, up to 500 messages per request."""
    TOPIC = "topic"
    """A record produced to ``sendarix.send.requests``."""


@dataclass(frozen=True)
class Planned:
    """One message to send: what it is and its way in."""

    kind: Kind
    entry: Entry


def mixed_plan(count: int) -> list[Planned]:
    """95 % bulk notices and 5 % OTPs, spread evenly.

    Bulk takes turns between the topic and the batch endpoint, OTPs between a single HTTP
    request and the topic, so every lane's latency is measured through every door it uses.
    """
    bulk_entries = cycle((Entry.TOPIC, Entry.BATCH))
    otp_entries = cycle((Entry.HTTP, Entry.TOPIC))
    return [
        Planned(Kind.OTP, next(otp_entries))
        if index % OTP_EVERY == OTP_EVERY - 1
        else Planned(Kind.NOTICE, next(bulk_entries))
        for index in range(count)
    ]


FLOOD_KINDS = (Kind.OTP, Kind.BROADCAST)
"""What a tenant floods with in the fairness scenario: mail that would jump the queue."""


def flood_plan(count: int) -> list[Planned]:
    """A tenant's flood: half ``otp`` mail, half broadcast asking for ``critical``, taking
    turns between the topic and the batch endpoint."""
    kinds = cycle(FLOOD_KINDS)
    entries = cycle((Entry.TOPIC, Entry.TOPIC, Entry.BATCH, Entry.BATCH))
    return [Planned(next(kinds), next(entries)) for _ in range(count)]


def uniform_plan(count: int, kind: Kind, entry: Entry) -> list[Planned]:
    """``count`` messages of one kind, all one way in."""
    return [Planned(kind, entry)] * count
