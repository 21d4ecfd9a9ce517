"""Vocabulary shared by every record: lanes, streams, categories and problem codes."""

from __future__ import annotations

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


def lane_for(category: str | None, stream: Stream, priority: Lane | None) -> Lane:
    """The lane a message travels in: explicit priority, else its category's, else the stream's."""
    if priority is not None:
        return priority
    if category in CATEGORY_LANES:
        return CATEGORY_LANES[category]
    return Lane.BULK if stream is Stream.BROADCAST else Lane.NORMAL


class Problem(Record):
    """Why a message was refused or stopped: a machine-readable code and a human sentence."""

    code: str
    detail: str
    pointers: tuple[str, ...] = ()
