"""The message on the wire: headers, bodies, attachments, refused headers, VERP envelope."""

from __future__ import annotations

import base64
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest

from schemas.common import Problem
from schemas.pipeline import RenderedContent
from schemas.send import Attachment
from services.sender.mime import attachment_type, build_message, envelope_sender
from tests.unit.sender.jobs import delivery_job


def wire(job_message: EmailMessage | Problem) -> EmailMessage:
    """The message as a server receives it: built, serialised, parsed back."""
    assert isinstance(job_message, EmailMessage)
    parsed = message_from_bytes(job_message.as_bytes(), policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def test_headers() -> None:
    job = delivery_job("user@example.test", reply_to="help@example.test")
    message = wire(build_message(job))
    spec = job.message
    assert message["From"] == "Example App <app@example.test>"
    assert message["To"] == "user@example.test"
    assert message["Reply-To"] == "help@example.test"
    assert message["Subject"] == "Your code"
    assert message["Message-ID"] == f"<{spec.message_id}@example.test>"
    assert message["X-Sendarix-Message-ID"] == spec.message_id
    assert message["Date"].datetime == spec.accepted_at.replace(microsecond=0)


def test_the_same_job_gives_the_same_bytes() -> None:
    job = delivery_job()
    first, second = build_message(job), build_message(job)
    assert isinstance(first, EmailMessage) and isinstance(second, EmailMessage)
    assert first.as_bytes() == second.as_bytes()


def test_text_and_html_are_alternatives() -> None:
    message = wire(build_message(delivery_job()))
    assert message.get_content_type() == "multipart/alternative"
    parts = [(p.get_content_type(), p.get_content().strip()) for p in message.iter_parts()]
    assert parts == [("text/plain", "123456"), ("text/html", "<b>123456</b>")]


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (RenderedContent(subject="s", text="only text"), "text/plain"),
        (RenderedContent(subject="s", html="<p>only html</p>"), "text/html"),
    ],
)
def test_a_single_body_is_not_multipart(content: RenderedContent, content_type: str) -> None:
    message = wire(build_message(delivery_job(content=content)))
    assert message.get_content_type() == content_type


def test_attachments_are_decoded_and_attached() -> None:
    pdf = b"%PDF-1.4 \x00\xff binary"
    attachments = [
        Attachment(
            filename="invoice.pdf",
            content=base64.b64encode(pdf).decode(),
            content_type="application/pdf",
        ),
        Attachment(filename="notes.txt", content=base64.b64encode(b"hello").decode()),
    ]
    message = wire(build_message(delivery_job(attachments=attachments)))
    assert message.get_content_type() == "multipart/mixed"
    body = message.get_body(preferencelist=("html", "plain"))
    assert body is not None and body.get_content().strip() == "<b>123456</b>"
    found = [
        (a.get_filename(), a.get_content_type(), a.get_content())
        for a in message.iter_attachments()
    ]
    assert found == [
        ("invoice.pdf", "application/pdf", pdf),
        ("notes.txt", "application/octet-stream", b"hello"),
    ]


@pytest.mark.parametrize(
    ("content_type", "sent_as"),
    [
        ("image/PNG", ("image", "png")),
        ("text/csv", ("text", "csv")),
        ("multipart/mixed", ("application", "octet-stream")),
        ("message/rfc822", ("application", "octet-stream")),
        ("text/plain; charset=utf-8", ("application", "octet-stream")),
        ("nonsense", ("application", "octet-stream")),
    ],
)
def test_attachment_types(content_type: str, sent_as: tuple[str, str]) -> None:
    assert attachment_type(content_type) == sent_as


def test_broken_base64_is_a_problem() -> None:
    attachment = Attachment(filename="a.bin", content="not base64!")
    problem = build_message(delivery_job(attachments=[attachment]))
    assert isinstance(problem, Problem)
    assert (problem.code, problem.pointers) == ("invalid_attachment", ("/attachments/0/content",))


def test_custom_headers_are_sent() -> None:
    headers = {"List-Unsubscribe": "<https://example.test/u/1>", "X-Campaign": "spring"}
    message = wire(build_message(delivery_job(headers=headers)))
    assert message["List-Unsubscribe"] == "<https://example.test/u/1>"
    assert message["X-Campaign"] == "spring"


@pytest.mark.parametrize(
    "headers",
    [
        {"To": "other@example.test"},
        {"bcc": "spy@example.test"},
        {"Content-Type": "text/plain"},
        {"X-Sendarix-Message-ID": "forged"},
        {"X-Evil": "a\r\nBcc: spy@example.test"},
        {"Bad Name": "x"},
    ],
)
def test_structural_and_malformed_headers_are_refused(headers: dict[str, str]) -> None:
    problem = build_message(delivery_job(headers={"X-Fine": "ok"} | headers))
    assert isinstance(problem, Problem)
    assert problem.code == "header_not_allowed"
    assert problem.pointers == tuple(f"/headers/{name}" for name in headers)


def test_unicode_subject_is_encoded_for_7bit_transport() -> None:
    subject = "Ваш код: 123 ✓ — Zoë"
    built = build_message(delivery_job(content=RenderedContent(subject=subject, text="Grüße")))
    assert isinstance(built, EmailMessage)
    raw = built.as_bytes()
    assert raw.isascii()
    assert b"=?utf-8?" in raw
    parsed = wire(built)
    assert parsed["Subject"] == subject
    assert parsed.get_content().strip() == "Grüße"


def test_non_ascii_recipient_is_a_problem() -> None:
    problem = build_message(delivery_job("zoë@example.test"))
    assert isinstance(problem, Problem) and problem.code == "smtputf8_unsupported"


def test_envelope_sender_is_verp() -> None:
    assert envelope_sender("abc", "bounces@sendarix.test") == "bounces+abc@sendarix.test"
