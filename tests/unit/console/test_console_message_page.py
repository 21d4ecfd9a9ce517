"""What the message page makes of the gateway's message and the trace: timeline details, the
related suppression and rules, the sent mail's headers and bodies."""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

from libs.trace_waterfall import WaterfallRow
from services.console.mail_view import read_eml
from services.console.timeline import rule_ids, suppressed_address, timeline
from services.console.times import form_moment, utc

ROUTE = {
    "name": "simulator",
    "kind": "relay",
    "host": "127.0.0.1",
    "port": 2525,
    "pool": "shared",
    "source": {"address": "192.0.2.7", "ehlo": "mta1.example.test"},
}


def sender_span(attempt: int, duration_ms: float) -> WaterfallRow:
    notes = (("handover", "answered"), ("remote host", "mx.example.org"), ("attempt", str(attempt)))
    return WaterfallRow("s1", 1, "sender", "deliver", 10.0, duration_ms, 10.0, 5.0, False, notes)


def event(type_: str, **fields: Any) -> dict[str, Any]:
    return {"type": type_, "time": "2026-01-31T12:00:00.123456+01:00", "service": "x"} | fields


def test_an_smtp_attempt_shows_route_pool_ip_host_reply_class_and_duration() -> None:
    bounced = event(
        "bounced",
        attempt=1,
        route=ROUTE,
        smtp={"code": 550, "enhanced_status": "5.1.1", "text": "no such user"},
        bounce={"category": "invalid_recipient", "hard": True, "async": False},
    )
    [row] = timeline([bounced], [sender_span(1, 42.5)])
    assert row.time == "2026-01-31 11:00:00.123Z"
    assert dict(row.details) == {
        "attempt": "1",
        "route": "simulator",
        "pool": "shared",
        "source IP": "192.0.2.7",
        "remote host": "mx.example.org",
        "reply": "550 5.1.1",
        "reply text": "no such user",
        "classification": "invalid_recipient (hard)",
        "duration": "42.5 ms",
    }


def test_without_its_span_an_attempt_names_the_routes_host() -> None:
    deferred = event(
        "deferred",
        attempt=2,
        route=ROUTE,
        smtp={"code": 421, "text": "slow down"},
        bounce={"category": "throttling", "hard": False, "async": False},
        next_attempt_at="2026-01-31T11:05:00Z",
    )
    [row] = timeline([deferred], [sender_span(1, 1500.0)])
    details = dict(row.details)
    assert details["remote host"] == "127.0.0.1:2525" and details["reply"] == "421"
    assert "duration" not in details
    assert details["next attempt"] == "2026-01-31 11:05:00Z"


def test_the_suppression_and_the_rules_a_message_met_are_named() -> None:
    rule = {"id": "r-1", "action": "hold", "description": "night"}
    message = {
        "to": "a@b.test",
        "events": [event("held", rule=rule), event("bounced", bounce={"hard": True})],
    }
    assert suppressed_address(message) == "a@b.test"
    assert rule_ids(message) == ["r-1"]
    soft = {"to": "a@b.test", "events": [event("bounced", bounce={"hard": False})]}
    assert suppressed_address(soft) is None
    assert suppressed_address({"to": "a@b.test", "events": [event("suppressed")]}) == "a@b.test"


def test_a_sent_mail_gives_its_headers_and_bodies() -> None:
    mail = EmailMessage()
    mail["Subject"] = "=?utf-8?q?Caf=C3=A9?="
    mail["To"] = "a@b.test"
    mail.set_content("plain words")
    mail.add_alternative("<p>rich words</p>", subtype="html")
    shown = read_eml(mail.as_bytes())
    assert ("Subject", "Café") in shown.headers and ("To", "a@b.test") in shown.headers
    assert shown.html is not None and "<p>rich words</p>" in shown.html
    assert shown.text is not None and "plain words" in shown.text

    text_only = EmailMessage()
    text_only.set_content("just text")
    assert read_eml(text_only.as_bytes()).html is None


def test_times_are_read_and_shown_in_utc() -> None:
    assert form_moment("2026-01-31T12:30") == "2026-01-31T12:30:00+00:00"
    assert form_moment("2026-01-31T12:30+02:00") == "2026-01-31T12:30:00+02:00"
    assert utc(None) == ""


def test_a_body_in_an_unknown_charset_is_left_out_not_a_crash() -> None:
    raw = (
        b"Subject: hi\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/html; charset=x-no-such-charset\r\n\r\n<p>hi</p>\r\n"
    )
    shown = read_eml(raw)
    assert ("Subject", "hi") in shown.headers
    assert shown.html is None
