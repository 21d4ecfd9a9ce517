"""A Jaeger trace becomes waterfall rows: tree order, time axis, errors and notable attributes."""

from __future__ import annotations

from typing import Any

import httpx

from libs.settings import Settings
from libs.trace_waterfall import fetch_trace, trace_ui_url, waterfall

T0 = 1_700_000_000_000_000
"""A span start in Jaeger's unit, microseconds since the epoch."""


def _span(
    span_id: str,
    name: str,
    start_us: int,
    duration_us: int,
    parent: str | None = None,
    process: str = "p1",
    tags: dict[str, Any] | None = None,
) -> dict[str, Any]:
    references = [{"refType": "CHILD_OF", "traceID": "t", "spanID": parent}] if parent else []
    return {
        "traceID": "t",
        "spanID": span_id,
        "operationName": name,
        "references": references,
        "startTime": T0 + start_us,
        "duration": duration_us,
        "processID": process,
        "tags": [{"key": k, "type": "string", "value": v} for k, v in (tags or {}).items()],
    }


def _trace(*spans: dict[str, Any]) -> dict[str, Any]:
    processes = {"p1": {"serviceName": "ingest"}, "p2": {"serviceName": "sender"}}
    return {"traceID": "t", "spans": list(spans), "processes": processes}


def test_rows_come_in_tree_order_with_depth_and_children_by_start() -> None:
    trace = _trace(
        _span("c2", "late child", 600_000, 100_000, parent="root"),
        _span("gc", "grandchild", 150_000, 50_000, parent="c1", process="p2"),
        _span("root", "POST /v1/messages", 0, 1_000_000),
        _span("c1", "early child", 100_000, 200_000, parent="root"),
    )

    rows = waterfall(trace)

    assert [(r.span_id, r.depth, r.service) for r in rows] == [
        ("root", 0, "ingest"),
        ("c1", 1, "ingest"),
        ("gc", 2, "sender"),
        ("c2", 1, "ingest"),
    ]


def test_rows_sit_on_the_time_axis_of_the_whole_trace() -> None:
    trace = _trace(
        _span("root", "root", 0, 400_000),
        _span("tail", "tail", 500_000, 500_000, parent="root"),
        _span("blip", "blip", 250_000, 1, parent="root"),
    )

    rows = {r.span_id: r for r in waterfall(trace)}

    assert (rows["root"].start_ms, rows["root"].duration_ms) == (0, 400)
    assert (rows["root"].offset_pct, rows["root"].width_pct) == (0, 40)
    assert (rows["tail"].start_ms, rows["tail"].offset_pct, rows["tail"].width_pct) == (500, 50, 50)
    assert rows["blip"].offset_pct == 25
    assert rows["blip"].width_pct == 0.5  # 0.0001 % of the trace, drawn visibly all the same


def test_a_span_whose_parent_is_missing_is_shown_as_a_root() -> None:
    trace = _trace(
        _span("root", "root", 0, 10),
        _span("orphan", "retry release", 5, 10, parent="not-exported"),
    )

    assert [(r.span_id, r.depth) for r in waterfall(trace)] == [("root", 0), ("orphan", 0)]


def test_errors_are_read_from_either_tag_jaeger_uses() -> None:
    trace = _trace(
        _span("a", "ok", 0, 10),
        _span("b", "flagged", 1, 10, tags={"error": True}),
        _span("c", "otel status", 2, 10, tags={"otel.status_code": "ERROR"}),
        _span("d", "fine", 3, 10, tags={"otel.status_code": "OK"}),
    )

    assert [r.error for r in waterfall(trace)] == [False, True, True, False]


def test_notes_carry_the_smtp_reply_and_where_it_went_leaving_the_rest_out() -> None:
    tags = {
        "sendarix.attempt": 2,
        "sendarix.route": "simulator",
        "server.address": "127.0.0.1",
        "smtp.reply_code": 550,
        "smtp.reply": "5.1.1 no such user",
        "smtp.duration_ms": 3.2,
        "otel.scope.name": "sender",
    }

    [row] = waterfall(_trace(_span("s", "sender", 0, 10, process="p2", tags=tags)))

    assert row.notes == (
        ("smtp reply", "550 5.1.1 no such user"),
        ("remote host", "127.0.0.1"),
        ("route", "simulator"),
        ("attempt", "2"),
    )


def test_an_empty_trace_has_no_rows() -> None:
    assert waterfall({"traceID": "t", "spans": [], "processes": {}}) == []


def test_the_tracing_ui_url_is_zipkins_trace_page() -> None:
    settings = Settings.model_construct(tracing_ui_url="http://127.0.0.1:9411/")

    assert trace_ui_url(settings, "abc") == "http://127.0.0.1:9411/zipkin/traces/abc"


async def test_no_trace_when_jaeger_does_not_answer() -> None:
    settings = Settings.model_construct(jaeger_ui_url="http://127.0.0.1:9")
    async with httpx.AsyncClient() as http:
        assert await fetch_trace(http, settings, "0" * 32) is None
