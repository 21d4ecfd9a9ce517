"""Times as the console shows them: UTC, ISO 8601, to the second (the millisecond where order
within a second matters: a message's timeline)."""

from __future__ import annotations

from datetime import UTC, datetime


def utc(moment: str | None, *, milliseconds: bool = False) -> str:
    """An API date-time as ``2026-05-01 12:30:05Z`` (``…:05.123Z``); empty for none, as given if
    unreadable."""
    if not moment:
        return ""
    try:
        parsed = datetime.fromisoformat(moment)
    except ValueError:
        return moment
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    shown = parsed.astimezone(UTC)
    fraction = f".{shown.microsecond // 1000:03d}" if milliseconds else ""
    return f"{shown:%Y-%m-%d %H:%M:%S}{fraction}Z"


def form_moment(text: str) -> str:
    """A form's date-time (``datetime-local``: read as UTC unless it says otherwise) as the
    API's RFC 3339; ValueError when it is not one."""
    moment = datetime.fromisoformat(text.strip())
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()
