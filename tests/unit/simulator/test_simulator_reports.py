"""What the simulator sends back: an RFC 5965 complaint and an RFC 3834 auto-reply."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage, Message

from deploy.simulator.reports import auto_reply, complaint_report

DOMAIN = "simulator.sendarix.test"
ORIGINAL = (
    b"From: Example App <app@example.test>\r\n"
    b"To: complaint@simulator.sendarix.test\r\n"
    b"Subject: =?utf-8?q?Ihr_Code_f=C3=BCr_heute?=\r\n"
    b"Message-ID: <m-1@example.test>\r\n"
    b"X-Sendarix-Message-ID: m-1\r\n"
    b"\r\n"
    b"secret body 123456\r\n"
)
MAIL_FROM = "bounces+m-1@sendarix.test"
NOW = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


def parsed(message: Message) -> EmailMessage:
    result = message_from_bytes(message.as_bytes(), policy=policy.default)
    assert isinstance(result, EmailMessage)
    return result


def test_complaint_is_a_feedback_report_to_the_envelope_sender() -> None:
    report = parsed(
        complaint_report(ORIGINAL, MAIL_FROM, "complaint@simulator.sendarix.test", DOMAIN, NOW)
    )
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "feedback-report"
    assert report["To"] == MAIL_FROM
    human, feedback, headers = report.iter_parts()
    assert human.get_content_type() == "text/plain"
    assert feedback.get_content_type() == "message/feedback-report"
    fields = feedback.get_payload(0)  # RFC 5965 fields parse as one header block
    assert isinstance(fields, Message)
    assert dict(fields.items()) == {
        "Feedback-Type": "abuse",
        "User-Agent": "SendarixSimulator/1.0",
        "Version": "1",
        "Original-Mail-From": f"<{MAIL_FROM}>",
        "Original-Rcpt-To": "<complaint@simulator.sendarix.test>",
        "Arrival-Date": "Sun, 01 Mar 2026 09:30:00 +0000",
    }
    assert headers.get_content_type() == "text/rfc822-headers"
    original_headers = headers.get_content()
    assert "Message-ID: <m-1@example.test>" in original_headers
    assert "X-Sendarix-Message-ID: m-1" in original_headers
    assert "Subject: =?utf-8?q?Ihr_Code_f=C3=BCr_heute?=" in original_headers
    assert "secret body" not in original_headers


def test_auto_reply_answers_the_original() -> None:
    reply = parsed(auto_reply(ORIGINAL, MAIL_FROM, "ooto@simulator.sendarix.test", DOMAIN, NOW))
    assert reply["Auto-Submitted"] == "auto-replied"
    assert reply["In-Reply-To"] == "<m-1@example.test>"
    assert reply["References"] == "<m-1@example.test>"
    assert reply["To"] == MAIL_FROM
    assert reply["From"] == "ooto@simulator.sendarix.test"
    assert reply["Subject"] == "Automatic reply: Ihr Code für heute"


def test_follow_up_ids_are_derived_from_the_original() -> None:
    first = auto_reply(ORIGINAL, MAIL_FROM, "ooto@simulator.sendarix.test", DOMAIN, NOW)
    again = auto_reply(ORIGINAL, MAIL_FROM, "ooto@simulator.sendarix.test", DOMAIN, NOW)
    other = auto_reply(ORIGINAL.replace(b"<m-1@", b"<m-2@"), MAIL_FROM, "ooto@sim", DOMAIN, NOW)
    assert first["Message-ID"] == again["Message-ID"] != other["Message-ID"]
    assert first["Message-ID"].endswith(f"@{DOMAIN}>")
