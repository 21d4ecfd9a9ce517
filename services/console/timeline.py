"""A message's timeline as the message page lists it: each event with the details that explain it.

The events are the gateway's (``GET /v1/messages/{id}``); an SMTP attempt's remote host and
duration come from the sender's span of that attempt, when the trace has it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from libs.trace_waterfall import WaterfallRow
from services.console.times import utc

SUPPRESSING_EVENTS = frozenset({"suppressed", "complained", "unsubscribed"})
"""Events that stop (or stopped) mail to the recipient through the suppression list."""


@dataclass(frozen=True)
class TimelineRow:
    """One event: when, what, which service reported it, and its details as label/value pairs."""

    time: str
    type: str
    service: str
    details: tuple[tuple[str, str], ...]


def duration(milliseconds: float) -> str:
    """A duration in ms below a second, in s above."""
    if milliseconds < 1000:
        return f"{milliseconds:.1f} ms"
    return f"{milliseconds / 1000:.2f} s"


def smtp_spans(rows: list[WaterfallRow]) -> dict[str, WaterfallRow]:
    """The sender's SMTP exchange span of each attempt, by attempt number (as text)."""
    found = {}
    for row in rows:
        notes = dict(row.notes)
        if "handover" in notes and "attempt" in notes:
            found[notes["attempt"]] = row
    return found


def timeline(events: list[dict[str, Any]], spans: list[WaterfallRow]) -> list[TimelineRow]:
    """Every event in the order it happened, with what the event and its attempt's span say."""
    exchanges = smtp_spans(spans)
    return [
        TimelineRow(
            time=utc(event.get("time"), milliseconds=True),
            type=str(event.get("type", "")),
            service=str(event.get("service", "")),
            details=tuple(_details(event, exchanges)),
        )
        for event in events
    ]


def _details(event: dict[str, Any], exchanges: dict[str, WaterfallRow]) -> list[tuple[str, str]]:
    details: list[tuple[str, str]] = []
    attempt = event.get("attempt")
    if attempt is not None:
        details.append(("attempt", str(attempt)))
    if route := event.get("route"):
        details += [("route", route["name"]), ("pool", route["pool"])]
        if source := route.get("source"):
            details.append(("source IP", source["address"]))
    exchange = exchanges.get(str(attempt)) if event.get("smtp") else None
    if exchange is not None and (remote := dict(exchange.notes).get("remote host")):
        details.append(("remote host", remote))
    elif route and route.get("host") and event.get("smtp"):
        details.append(("remote host", f"{route['host']}:{route['port']}"))
    if smtp := event.get("smtp"):
        reply = " ".join(str(p) for p in (smtp["code"], smtp.get("enhanced_status")) if p)
        details += [("reply", reply), ("reply text", smtp["text"])]
    if bounce := event.get("bounce"):
        kind = "hard" if bounce["hard"] else "soft"
        late = ", reported later (DSN)" if bounce.get("async") else ""
        details.append(("classification", f"{bounce['category']} ({kind}{late})"))
    if exchange is not None:
        details.append(("duration", duration(exchange.duration_ms)))
    if problem := event.get("problem"):
        details.append(("problem", f"{problem['code']}: {problem['detail']}"))
    if rule := event.get("rule"):
        described = f" — {rule['description']}" if rule.get("description") else ""
        details.append(("rule", f"{rule['id']} ({rule['action']}){described}"))
    if feedback := event.get("feedback_type"):
        details.append(("feedback type", feedback))
    if due := event.get("next_attempt_at"):
        details.append(("next attempt", utc(due)))
    return details


def suppressed_address(message: dict[str, Any]) -> str | None:
    """The recipient, when an event of the message put (or found) it on the suppression list:
    a suppression, a complaint, an unsubscribe, a hard bounce."""
    for event in message.get("events", []):
        hard = bool((event.get("bounce") or {}).get("hard"))
        if event.get("type") in SUPPRESSING_EVENTS or (event.get("type") == "bounced" and hard):
            return str(message.get("to") or "") or None
    return None


def rule_ids(message: dict[str, Any]) -> list[str]:
    """The policy rules the events name, each once, in the order they acted."""
    named = (event["rule"]["id"] for event in message.get("events", []) if event.get("rule"))
    return list(dict.fromkeys(named))
