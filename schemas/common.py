"""Vocabulary shared by every record: lanes, streams, categories and problem codes."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


class Record(BaseModel):
    """Base of every record: immutable, strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class Lane(StrEnum):
    """Priority lane. Every pipeline stage has one stream per lane, drained independently."""

    CRITICAL = "critical"
    HIGH = "high"
    NORMAL = "normal"
    BULK = "bulk"


class Stream(StrEnum):
    """Message stream: transactional and broadcast mail keep separate policies and pools."""

    TRANSACTIONAL = "transactional"
    BROADCAST = "broadcast"


CATEGORY_LANES: dict[str, Lane] = {
    "otp": Lane.CRITICAL,
    "password_reset": Lane.CRITICAL,
    "login_verification": Lane.CRITICAL,
    "security_alert": Lane.CRITICAL,
    "billing": Lane.HIGH,
    "receipt": Lane.HIGH,
    "account": Lane.HIGH,
    "notification": Lane.NORMAL,
}
"""Default lane of each well-known category; others go to ``normal`` (broadcast: ``bulk``)."""

Category = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
Tag = Annotated[str, Field(min_length=1, max_length=64)]


LANE_ORDER: tuple[Lane, ...] = tuple(Lane)
"""Most urgent first."""

DEFAULT_PRIORITY_CEILING = Lane.HIGH
"""The most urgent lane a tenant may ask for with ``priority`` unless configured otherwise."""


def natural_lane(category: str | None, stream: Stream) -> Lane:
    """The lane the category table gives: broadcast mail is always bulk."""
    if stream is Stream.BROADCAST:
        return Lane.BULK
    return CATEGORY_LANES.get(category or "", Lane.NORMAL)


def lane_for(
    category: str | None,
    stream: Stream,
    priority: Lane | None,
    ceiling: Lane = DEFAULT_PRIORITY_CEILING,
) -> Lane:
    """The lane a message travels in.

    The category table decides (security mail is critical, broadcast mail bulk); ``priority``
    may always lower that lane, and may raise transactional mail up to the tenant's
    ``ceiling`` but never into ``critical``, which only a security category earns — so no
    tenant can put its bulk mail in front of other tenants' one-time codes by asking.
    """
    natural = natural_lane(category, stream)
    if priority is None or LANE_ORDER.index(priority) >= LANE_ORDER.index(natural):
        return natural if priority is None else priority
    if stream is Stream.BROADCAST:
        return natural
    highest = max(LANE_ORDER.index(ceiling), LANE_ORDER.index(Lane.HIGH))
    return LANE_ORDER[max(LANE_ORDER.index(priority), highest)]


class Mailbox(Record):
    """An address as Sendarix sends to or from it: parsed once at the edge, never re-parsed.

    ``address`` is an ASCII addr-spec (an internationalised domain in its ``xn--`` form);
    ``name`` is the display name as plain Unicode, encoded by the MIME writer.
    """

    address: str
    name: str = ""


class Problem(Record):
    """Why a message was refused or stopped: a machine-readable code and a human sentence."""

    code: str
    detail: str
    pointers: tuple[str, ...] = ()


class AppliedRule(Record):
    """The customer rule that decided what happened to a message (``libs.rules``): events and
    the route stage's record carry it, so the timeline says which rule did what."""

    id: str
    action: str
    description: str = ""
    hold_until: datetime | None = None
    """When a held message expires unless released (``held`` only)."""
