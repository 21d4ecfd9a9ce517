"""Reading one inbound feedback message: DSNs, text bounces, complaints, auto-replies, junk."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libs.cli import main
from libs.feedback_report import (
    MAX_RECIPIENTS,
    FeedbackKind,
    FeedbackReport,
    RecipientReport,
    parse_feedback,
    report_json,
)
from schemas.events import BounceCategory

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "feedback"


def parsed(name: str) -> FeedbackReport:
    return parse_feedback((FIXTURES / name).read_bytes())


def test_a_dsn_reports_each_recipient() -> None:
    report = parsed("dsn-postfix-two-recipients.eml")
    assert report.kind is FeedbackKind.BOUNCE
    dead, full = report.recipients
    assert dead == RecipientReport(
        address="nobody@example.org",
        action="failed",
        status="5.1.1",
        reply_code=550,
        diagnostic="550 5.1.1 <nobody@example.org>: Recipient address rejected: User unknown"
        " in virtual mailbox table",
        category=BounceCategory.INVALID_RECIPIENT,
        hard_bounce=True,
    )
    assert (full.status, full.reply_code, full.category, full.hard_bounce) == (
        "5.2.2",
        552,
        BounceCategory.MAILBOX_FULL,
        False,
    )
    assert report.original_message_id == "m1.5f2c@sender.example"
    assert report.original_headers["x-sendarix-message-id"] == (
        "0195a7c2-3d4e-7f00-8a1b-2c3d4e5f6a7b"
    )


def test_a_delayed_dsn_is_a_delay_never_hard() -> None:
    report = parsed("dsn-delayed.eml")
    assert report.kind is FeedbackKind.DELAY
    [slow] = report.recipients
    assert (slow.address, slow.action, slow.status, slow.hard_bounce) == (
        "slow@example.com",
        "delayed",
        "4.4.1",
        False,
    )
    assert report.original_headers["x-sendarix-message-id"].endswith("000000000002")


def test_a_complaint_names_its_recipient_and_feedback_type() -> None:
    report = parsed("arf-abuse.eml")
    assert (report.kind, report.feedback_type) == (FeedbackKind.COMPLAINT, "abuse")
    assert [r.address for r in report.recipients] == ["reader@mailbox.example"]
    assert report.recipients[0].category is None
    assert report.original_headers["x-sendarix-message-id"].endswith("000000000003")
    assert report.original_message_id == "m3.77aa@sender.example"


def test_a_complaint_without_original_rcpt_to_names_the_originals_recipient() -> None:
    report = parsed("arf-opt-out-no-rcpt.eml")
    assert (report.kind, report.feedback_type) == (FeedbackKind.COMPLAINT, "opt-out")
    assert [r.address for r in report.recipients] == ["someone@isp.example"]
    assert report.original_headers["x-sendarix-message-id"].endswith("000000000004")


def test_a_complaint_with_its_fields_in_plain_text_is_a_complaint() -> None:
    raw = (
        b"From: fbl@isp.example\nTo: fbl@bounce.sender.example\nSubject: Abuse report\n\n"
        b"This is an email abuse report.\n\nFeedback-Type: abuse\n"
        b"Original-Rcpt-To: <user@isp.example>\n"
    )
    report = parse_feedback(raw)
    assert (report.kind, report.feedback_type) == (FeedbackKind.COMPLAINT, "abuse")
    assert [r.address for r in report.recipients] == ["user@isp.example"]


def test_auto_replies_are_recognised_by_header_or_subject() -> None:
    office = parsed("autoreply-out-of-office.eml")
    assert office.kind is FeedbackKind.AUTO_REPLY
    assert [r.address for r in office.recipients] == ["dana@company.example"]
    assert parsed("autoreply-abwesenheit.eml").kind is FeedbackKind.AUTO_REPLY


def test_text_bounces_without_a_dsn() -> None:
    exim = parsed("exim-text.eml")
    assert exim.kind is FeedbackKind.BOUNCE
    [gone] = exim.recipients
    assert (gone.address, gone.status, gone.reply_code, gone.hard_bounce) == (
        "gone@host.example",
        "5.1.1",
        550,
        True,
    )
    assert exim.original_message_id is None  # pasted as text, not attached
    qmail = parsed("qmail-text.eml")
    assert [(r.address, r.category, r.hard_bounce) for r in qmail.recipients] == [
        ("nouser@qmail.example", BounceCategory.INVALID_RECIPIENT, True),
        ("over@qmail.example", BounceCategory.MAILBOX_FULL, False),
    ]


def test_ordinary_mail_is_other() -> None:
    report = parsed("not-feedback.eml")
    assert (report.kind, report.recipients) == (FeedbackKind.OTHER, ())
    reply = (
        b"From: Sam <sam@client.example>\nTo: billing@sender.example\n"
        b"Subject: Re: your payment was rejected\n\n"
        b"Why was it rejected? Ask ops@client.example, they got a 550 too.\n"
    )
    assert parse_feedback(reply).kind is FeedbackKind.OTHER


def test_report_json_has_the_contract_fields() -> None:
    described = report_json(parsed("dsn-postfix-two-recipients.eml"))
    assert described["kind"] == "bounce"
    recipients = described["recipients"]
    assert isinstance(recipients, list)
    assert set(recipients[0]) == {
        "address",
        "action",
        "status",
        "reply_code",
        "diagnostic",
        "category",
        "hard_bounce",
    }
    assert recipients[0]["category"] == "invalid_recipient"
    json.dumps(described)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4000))
def test_random_bytes_never_raise(raw: bytes) -> None:
    assert isinstance(parse_feedback(raw), FeedbackReport)


def test_mangled_fixtures_never_raise() -> None:
    """Real bounces with bytes flipped, cut short or glued together: never an exception."""
    rng = random.Random(10)
    fixtures = [path.read_bytes() for path in sorted(FIXTURES.glob("*.eml"))]
    for _ in range(400):
        raw = bytearray(rng.choice(fixtures))
        for _ in range(rng.randint(1, 30)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        cut = raw[: rng.randrange(len(raw) + 1)] + rng.choice(fixtures)[rng.randrange(200) :]
        assert isinstance(parse_feedback(bytes(cut)), FeedbackReport)
    nested = b"Content-Type: multipart/mixed; boundary=x\n\n" + b"--x\n" * 5000
    assert isinstance(parse_feedback(nested), FeedbackReport)


def test_a_report_naming_thousands_of_recipients_is_read_quickly() -> None:
    lines = "\n".join(f"<user{i}@host{i}.test>: said: 550 5.1.1 user unknown" for i in range(5000))
    raw = f"From: MAILER-DAEMON@mx.test\nSubject: Undelivered Mail\n\n{lines}\n".encode()
    started = time.monotonic()
    report = parse_feedback(raw)
    assert time.monotonic() - started < 2
    assert len(report.recipients) == MAX_RECIPIENTS
    assert report.recipients[0].address == "user0@host0.test"


@pytest.mark.parametrize(
    "body", ["\n" * 200_000, " \n" * 100_000, "a" * 200_000, "-" * 200_000, "550 " * 50_000]
)
def test_pathological_text_is_read_in_linear_time(body: str) -> None:
    raw = f"From: MAILER-DAEMON@mx.test\nSubject: Undelivered Mail\n\n{body}".encode()
    started = time.monotonic()
    assert isinstance(parse_feedback(raw), FeedbackReport)
    assert time.monotonic() - started < 2


def test_the_cli_prints_the_report() -> None:
    runner = CliRunner()
    done = runner.invoke(main, ["feedback", "parse", str(FIXTURES / "qmail-text.eml")])
    assert done.exit_code == 0, done.output
    printed = json.loads(done.output)
    assert printed["kind"] == "bounce"
    assert [r["hard_bounce"] for r in printed["recipients"]] == [True, False]
    other = runner.invoke(main, ["feedback", "parse", str(FIXTURES / "not-feedback.eml")])
    assert (other.exit_code, json.loads(other.output)["kind"]) == (0, "other")
    missing = runner.invoke(main, ["feedback", "parse", str(FIXTURES / "missing.eml")])
    assert missing.exit_code == 2
    assert "does not exist" in missing.output
