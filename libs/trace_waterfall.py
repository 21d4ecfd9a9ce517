"""A message's trace as a waterfall: its spans in tree order, placed on the trace's time axis.

Read from Jaeger's query API (every service exports there); the console draws the rows and
``sendarix trace`` prints them, so both tell the same story as the Zipkin page they link to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from libs.settings import Settings

JAEGER_TIMEOUT_SECONDS = 3.0
MIN_WIDTH_PCT = 0.5
"""So that a span far shorter than its trace still shows as a bar."""

NOTABLE_ATTRIBUTES = (
    ("smtp.reply", "smtp reply"),
    ("smtp.handover", "handover"),
    ("server.address", "remote host"),
    ("sendarix.route", "route"),
    ("sendarix.site", "site"),
    ("sendarix.attempt", "attempt"),
    ("sendarix.lane", "lane"),
    ("sendarix.event", "event"),
    ("sendarix.endpoint", "webhook endpoint"),
    ("messaging.destination.name", "topic"),
)
"""The span attributes our services set that a support engineer looks for, with their labels."""


@dataclass(frozen=True)
class WaterfallRow:
    """One span, placed: how deep in the tree, and where its bar starts and ends."""

    span_id: str
    depth: int
    service: str
    name: str
    start_ms: float
    duration_ms: float
    offset_pct: float
    width_pct: float
    error: bool
    notes: tuple[tuple[str, str], ...]


def waterfall(trace: dict[str, Any]) -> list[WaterfallRow]:
    """A Jaeger query-API trace (one element of `data`) as rows in tree order.

    A span whose parent is not in the trace (not exported yet, or lost) is shown as a root
    rather than hidden; siblings are in start order.
    """
    spans = {span["spanID"]: span for span in trace.get("spans", [])}
    if not spans:
        return []
    processes = trace.get("processes", {})
    children: dict[str | None, list[dict[str, Any]]] = {}
    for span in spans.values():
        parents = [
            ref["spanID"]
            for ref in span.get("references", [])
            if ref.get("refType", "CHILD_OF") == "CHILD_OF" and ref["spanID"] in spans
        ]
        children.setdefault(parents[0] if parents else None, []).append(span)
    first = min(span["startTime"] for span in spans.values())
    last = max(span["startTime"] + span["duration"] for span in spans.values())
    total = max(last - first, 1)
    rows: list[WaterfallRow] = []

    def walk(parent: str | None, depth: int) -> None:
        for span in sorted(children.get(parent, []), key=lambda s: (s["startTime"], s["spanID"])):
            tags = {tag["key"]: tag.get("value") for tag in span.get("tags", [])}
            offset = span["startTime"] - first
            rows.append(
                WaterfallRow(
                    span_id=span["spanID"],
                    depth=depth,
                    service=processes.get(span.get("processID"), {}).get("serviceName", "?"),
                    name=span["operationName"],
                    start_ms=offset / 1000,
                    duration_ms=span["duration"] / 1000,
                    offset_pct=100 * offset / total,
                    width_pct=max(100 * span["duration"] / total, MIN_WIDTH_PCT),
                    error=_failed(tags),
                    notes=_notes(tags),
                )
            )
            walk(span["spanID"], depth + 1)

    walk(None, 0)
    return rows


def _failed(tags: dict[str, Any]) -> bool:
    return tags.get("error") in (True, "true") or tags.get("otel.status_code") == "ERROR"


def _notes(tags: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    if "smtp.reply_code" in tags and "smtp.reply" in tags:
        tags = tags | {"smtp.reply": f"{tags['smtp.reply_code']} {tags['smtp.reply']}"}
    return tuple((label, str(tags[key])) for key, label in NOTABLE_ATTRIBUTES if key in tags)


async def fetch_trace(
    http: httpx.AsyncClient, settings: Settings, trace_id: str
) -> dict[str, Any] | None:
    """The trace from Jaeger's query API; None when absent or Jaeger does not answer (3 s)."""
    url = f"{settings.jaeger_ui_url.rstrip('/')}/api/traces/{trace_id}"
    try:
        response = await http.get(url, timeout=JAEGER_TIMEOUT_SECONDS)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    found: list[dict[str, Any]] = response.json().get("data") or []
    return found[0] if found else None


def trace_ui_url(settings: Settings, trace_id: str) -> str:
    """Where the tracing UI (Zipkin) shows a trace."""
    return f"{settings.tracing_ui_url.rstrip('/')}/zipkin/traces/{trace_id}"
