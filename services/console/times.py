"""Times as the console shows them: UTC, ISO 8601, to the second."""

from __future__ import annotations

from datetime import UTC, datetime


def utc(moment: str | None) -> str:
    """An API date-time as ``2026-05-01 12:30:05Z``; empty for none, as given if unreadable."""
    if not moment:
        return ""
    try:
        parsed = datetime.fromisoformat(moment)
    except ValueError:
        return moment
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
