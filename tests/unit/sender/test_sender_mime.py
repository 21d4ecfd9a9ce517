"""The message on the wire: headers, bodies, attachments, refused headers, VERP envelope.

Every message is read back with the standard library's parser, as a receiving client would.
"""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta, timezone
from email import message_from_bytes, policy
from email.header import decode_header
from email.message import EmailMessage
from email.utils import format_datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libs.sendable import BODY, HEADER_VALUE, MAX_LINE_CHARS, ONE_LINE
from schemas.common import Mailbox, Problem
from schemas.pipeline import DeliveryJob, RenderedContent
from schemas.send import Attachment
from services.sender.mime import (
    attachment_type,
    build_message,
    message_id_header,
)
from tests.unit.sender.jobs import delivery_job


def wire(built: bytes | Problem) -> EmailMessage:
    """The message as a server receives it, parsed back; its lines checked on the way."""
    assert isinstance(built, bytes), built
    assert built.isascii()
    assert re.search(rb"\r(?!\n)|(?<!\r)\n", built) is None, "CRLF line ends only"
    assert max(map(len, built.split(b"\r\n"))) <= MAX_LINE_CHARS
    parsed = message_from_bytes(built, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    assert not parsed.defects
    return parsed


def canonical(text: str) -> str:
    """A text body as it travels: CRLF line breaks, ending with one."""
    text = re.sub(r"\r\n|\r|\n", "\r\n", text)
    return text if text.endswith("\r\n") else text + "\r\n"


def display_name(message: EmailMessage, header: str) -> str:
    """The display name in ``header`` as RFC 2047 reads it.

    The standard parser keeps the white space between two encoded words of a display name
    (RFC 2047 section 6.2 says to drop it, as mail clients do); ``decode_header`` drops it.
    """
    [address] = message[header].addresses
    raw = "".join(v for k, v in message.raw_items() if k == header).replace("\r\n", "")
    phrase = raw.rpartition(" <")[0]
    if "=?" not in phrase:
        return str(address.display_name)
    return "".join(
        part.decode(charset or "ascii") if isinstance(part, bytes) else part
        for part, charset in decode_header(phrase)
    )


def filename_of(attachment: EmailMessage) -> str:
    """The filename as sent (``get_filename()`` strips white space, quotes and ``<>``)."""
    filename = attachment["Content-Disposition"].params["filename"]
    assert isinstance(filename, str)
    return filename


def header_lines(built: bytes) -> list[bytes]:
    return built.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


def test_headers() -> None:
    job = delivery_job("user@example.test", reply_to=Mailbox(address="help@example.test"))
    message = wire(build_message(job))
    spec = job.message
    assert message["From"] == "Example App <app@example.test>"
    assert message["To"] == "user@example.test"
    assert message["Reply-To"] == "help@example.test"
    assert message["Subject"] == "Your code"
    assert message["Message-ID"] == f"<{spec.message_id}@example.test>"
    assert message["X-Sendarix-Message-ID"] == spec.message_id
    assert message["MIME-Version"] == "1.0"
    assert message["Date"].datetime == spec.accepted_at.replace(microsecond=0)


def test_feedback_id_names_template_or_category_tenant_and_stream() -> None:
    templated = delivery_job(template="welcome", category="onboarding", attempt=1)
    message = wire(build_message(templated))
    spec = templated.message
    assert message["Feedback-ID"] == f"welcome:{spec.tenant_id}:transactional:sendarix"
    retried = templated.model_copy(update={"attempt": 2})
    assert build_message(retried) == build_message(templated)
    untemplated = wire(build_message(delivery_job()))
    assert untemplated["Feedback-ID"].startswith("otp:")


def test_a_requests_own_feedback_id_replaces_ours() -> None:
    message = wire(build_message(delivery_job(headers={"feedback-id": "c1:acme:fbl"})))
    assert message.get_all("Feedback-ID") == ["c1:acme:fbl"]


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2030, 1, 2, 3, 4, 5, 678, tzinfo=UTC),
        datetime(2026, 12, 31, 23, 30, tzinfo=timezone(timedelta(hours=-5))),
        datetime(2028, 2, 29, 0, 0, 0, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    ],
)
def test_the_date_is_the_acceptance_time_in_utc(moment: datetime) -> None:
    built = build_message(delivery_job(accepted_at=moment))
    assert isinstance(built, bytes)
    date = format_datetime(moment.astimezone(UTC).replace(microsecond=0))
    assert f"\r\nDate: {date}\r\n".encode() in built


def test_the_same_job_gives_the_same_bytes() -> None:
    attachments = [Attachment(filename="a.txt", content=base64.b64encode(b"hello").decode())]
    job = delivery_job(attachments=attachments)
    first, second = build_message(job), build_message(job)
    assert isinstance(first, bytes) and first == second


def test_text_and_html_are_alternatives() -> None:
    message = wire(build_message(delivery_job()))
    assert message.get_content_type() == "multipart/alternative"
    parts = [(p.get_content_type(), p.get_content()) for p in message.iter_parts()]
    assert parts == [("text/plain", "123456\r\n"), ("text/html", "<b>123456</b>\r\n")]


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (RenderedContent(subject="s", text="only text"), "text/plain"),
        (RenderedContent(subject="s", html="<p>only html</p>"), "text/html"),
        (RenderedContent(subject="s"), "text/plain"),
    ],
)
def test_a_single_body_is_not_multipart(content: RenderedContent, content_type: str) -> None:
    message = wire(build_message(delivery_job(content=content)))
    assert message.get_content_type() == content_type
    assert message.get_content_charset() == "utf-8"


def test_plain_short_ascii_goes_as_it_is_and_anything_else_quoted_printable() -> None:
    plain = build_message(delivery_job(content=RenderedContent(subject="s", text="Code: 1")))
    assert isinstance(plain, bytes)
    assert plain.endswith(b"Content-Transfer-Encoding: 7bit\r\n\r\nCode: 1\r\n")
    for text in ("Grüße", "x" * 79, "trailing ", "From here", "a\x0cb", "--=_boundary"):
        built = build_message(delivery_job(content=RenderedContent(subject="s", text=text)))
        assert isinstance(built, bytes)
        assert b"Content-Transfer-Encoding: quoted-printable" in built
        assert wire(built).get_content() == canonical(text)


@pytest.mark.parametrize(
    "text",
    [
        "line one\nline two\r\nline three\rline four",
        ".\n.leading dot\n..\n",
        "From the start\nFrom here on\n>From quoted",
        "trailing spaces   \ntrailing tab\t\n \n",
        "x" * 5000 + "\n" + "é" * 3000,
        "tab\there, form feed \x0c, NEL \x85, separator \u2028, emoji 👋",
        "=3D is not decoded twice, nor is =?utf-8?q?this?=",
        "",
        "\n\n\n",
    ],
)
def test_bodies_come_back_exactly_in_canonical_form(text: str) -> None:
    content = RenderedContent(subject="s", text=text, html=f"<p>{text}</p>")
    message = wire(build_message(delivery_job(content=content)))
    plain, html = (part.get_content() for part in message.iter_parts())
    assert (plain, html) == (canonical(text), canonical(f"<p>{text}</p>"))


def test_attachments_are_decoded_and_attached() -> None:
    pdf = b"%PDF-1.4 \x00\xff binary" * 100
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
    assert body is not None and body.get_content() == "<b>123456</b>\r\n"
    found = [
        (a.get_filename(), a.get_content_type(), a.get_content())
        for a in message.iter_attachments()
    ]
    assert found == [
        ("invoice.pdf", "application/pdf", pdf),
        ("notes.txt", "application/octet-stream", b"hello"),
    ]


def test_inline_parts_go_beside_the_bodies_in_multipart_related() -> None:
    logo = Attachment(
        filename="logo.png",
        content=base64.b64encode(b"PNG").decode(),
        content_type="image/png",
        content_id="logo@acme",
    )
    notes = Attachment(filename="notes.txt", content=base64.b64encode(b"hello").decode())
    message = wire(build_message(delivery_job(attachments=[logo, notes])))
    assert message.get_content_type() == "multipart/mixed"
    related, attached = message.iter_parts()
    assert related.get_content_type() == "multipart/related"
    body, image = related.iter_parts()
    assert body.get_content_type() == "multipart/alternative"
    assert (image["Content-ID"], image.get_content_disposition()) == ("<logo@acme>", "inline")
    assert image.get_content() == b"PNG"
    assert (attached.get_filename(), attached.get_content_disposition()) == (
        "notes.txt",
        "attachment",
    )


@pytest.mark.parametrize(
    "filename",
    [
        "Übersicht 2030 — Rechnung.pdf",
        "名前.txt",
        'say "hi" \\ there.txt',
        "=?utf-8?q?not=20decoded?=.txt",
        "a;b=c, (d).txt",
        "x" * 255,
        "é" * 255,
    ],
)
def test_filenames_come_back_exactly(filename: str) -> None:
    attachment = Attachment(filename=filename, content=base64.b64encode(b"data").decode())
    built = build_message(delivery_job(attachments=[attachment]))
    [found] = wire(built).iter_attachments()
    assert filename_of(found) == filename
    assert isinstance(built, bytes)
    assert max(map(len, header_lines(built.split(b"--=_")[-2]))) <= 78


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


@pytest.mark.parametrize("content", ["not base64!", "QUJD€=", "QQ"])
def test_broken_base64_is_a_problem(content: str) -> None:
    attachment = Attachment(filename="a.bin", content=content)
    problem = build_message(delivery_job(attachments=[attachment]))
    assert isinstance(problem, Problem)
    assert (problem.code, problem.pointers) == ("invalid_attachment", ("/attachments/0/content",))


def test_custom_headers_are_sent() -> None:
    headers = {
        "List-Unsubscribe": "<https://example.test/u/1>",
        "X-Campaign": "spring",
        "X-Greeting": "Grüße aus Köln ✓",
        "X-Tabbed": "a\tb",
        "X-Long": "word " * 150 + "end",
        "X-Url": "https://example.test/" + "p" * 900,
    }
    message = wire(build_message(delivery_job(headers=headers)))
    assert {name: message[name] for name in headers} == headers


@pytest.mark.parametrize(
    "headers",
    [
        {"To": "other@example.test"},
        {"bcc": "spy@example.test"},
        {"Content-Type": "text/plain"},
        {"X-Sendarix-Message-ID": "forged"},
        {"X-Evil": "a\r\nBcc: spy@example.test"},
        {"X-Evil": "a\u2028b"},
        {"X-Evil": "a\x85b"},
        {"Bad Name": "x"},
        {"X-" + "a" * 98: "x"},
    ],
)
def test_structural_and_malformed_headers_are_refused(headers: dict[str, str]) -> None:
    problem = build_message(delivery_job(headers={"X-Fine": "ok"} | headers))
    assert isinstance(problem, Problem)
    assert problem.code == "header_not_allowed"
    assert problem.pointers == tuple(f"/headers/{name}" for name in headers)


@pytest.mark.parametrize(
    "subject",
    [
        "Ваш код: 123 ✓ — Zoë",
        "Your code " * 99,
        "x" * 998,
        "é" * 998,
        "  spaced  out\tand tabbed  ",
        "=?utf-8?q?ceo=40bank.example?=",
        "",
    ],
)
def test_subjects_are_encoded_and_folded_and_come_back_exactly(subject: str) -> None:
    built = build_message(delivery_job(content=RenderedContent(subject=subject, text="Grüße")))
    assert isinstance(built, bytes)
    assert wire(built)["Subject"] == subject
    assert wire(built).get_content() == "Grüße\r\n"
    field = b"Subject:" + built.split(b"\r\nSubject:")[1].split(b"\r\nDate:")[0]
    assert max(len(line) for line in field.split(b"\r\n")) <= 76


def test_unicode_subject_is_encoded_for_7bit_transport() -> None:
    subject = "Ваш код: 123 ✓ — Zoë"
    built = build_message(delivery_job(content=RenderedContent(subject=subject, text="Grüße")))
    assert isinstance(built, bytes) and b"=?utf-8?" in built


@pytest.mark.parametrize(
    "name",
    [
        "Ana María",
        "Doe, Jane",
        'Say "hi" \\ now',
        "J. O'Brien (Sales)",
        "名前 " * 40,
        "Long Name " * 40 + "End",
    ],
)
def test_display_names_come_back_exactly(name: str) -> None:
    sender = Mailbox(address="login@example.test", name=name)
    recipient = Mailbox(address="ana.maria@example.com", name=name)
    built = build_message(delivery_job(recipient, sender=sender, reply_to=sender))
    message = wire(built)
    assert isinstance(built, bytes) and max(map(len, header_lines(built))) <= 76
    for header, mailbox in (("From", sender), ("To", recipient), ("Reply-To", sender)):
        [address] = message[header].addresses
        assert (display_name(message, header), address.addr_spec) == (name, mailbox.address)


@pytest.mark.parametrize(
    "name",
    [
        "=?utf-8?q?ceo=40bank.example?=",
        "=?utf-8?b?Y2VvQGJhbmsuZXhhbXBsZQ==?=",
        "ceo@bank.example",
        "CEO <ceo@bank.example>",
        "x=?utf-8?q?ceo=40bank.example?=y <ceo@bank.example>",
    ],
)
def test_a_display_name_is_never_read_as_another_address(name: str) -> None:
    """Defence in depth: the edge refuses such names, the writer still cannot be fooled."""
    sender = Mailbox(address="login@example.test", name=name)
    message = wire(build_message(delivery_job(sender=sender)))
    [address] = message["From"].addresses
    assert (display_name(message, "From"), address.addr_spec) == (name, "login@example.test")


def test_non_ascii_addresses_are_a_problem() -> None:
    problem = build_message(delivery_job("zoë@example.test"))
    assert isinstance(problem, Problem) and problem.code == "smtputf8_unsupported"
    assert problem.pointers == ("/to",)
    sender = Mailbox(address="zoë@example.test")
    problem = build_message(delivery_job(sender=sender))
    assert isinstance(problem, Problem) and problem.pointers == ("/from",)


@pytest.mark.parametrize("address", ["a b@example.test", "a@example.test>\r\nBcc: x@y.z", "nope"])
def test_an_address_that_is_no_addr_spec_is_a_problem(address: str) -> None:
    problem = build_message(delivery_job(address))
    assert isinstance(problem, Problem) and problem.code == "invalid_address"


def test_message_id_is_at_the_senders_ascii_domain() -> None:
    sender = Mailbox(address="login@xn--bcher-kva.de", name="Bücher")
    assert message_id_header("abc", sender) == "<abc@xn--bcher-kva.de>"


TRICKY = ["\r", "\n", "\r\n", " ", "  ", "\t", ".", "From ", "=", "=?", "?=", '"', "\\", "é", "😀"]
TRICKY += ["<", ">", "@", ",", ";", "--=_", "x" * 90]
WRITTEN = st.lists(st.characters() | st.sampled_from(TRICKY), max_size=40).map("".join)
"""Text of every kind, weighted towards what breaks naive writers."""


@settings(max_examples=300, deadline=None)
@given(
    subject=WRITTEN.filter(lambda s: HEADER_VALUE.fault(s) is None),
    name=WRITTEN.filter(lambda s: ONE_LINE.fault(s) is None),
    text=WRITTEN.filter(lambda s: BODY.fault(s) is None),
    html=WRITTEN.filter(lambda s: BODY.fault(s) is None),
    filename=WRITTEN.filter(lambda s: 0 < len(s) <= 255 and ONE_LINE.fault(s) is None),
    header=WRITTEN.filter(lambda s: len(s) <= 900 and HEADER_VALUE.fault(s) is None),
    data=st.binary(max_size=300),
)
def test_every_message_comes_back_as_it_was_written(
    subject: str, name: str, text: str, html: str, filename: str, header: str, data: bytes
) -> None:
    attachment = Attachment(filename=filename, content=base64.b64encode(data).decode() or "AA==")
    job: DeliveryJob = delivery_job(
        Mailbox(address="user@example.test", name=name),
        content=RenderedContent(subject=subject, text=text, html=html),
        sender=Mailbox(address="login@example.test", name=name),
        headers={"X-Custom": header},
        attachments=[attachment],
    )
    message = wire(build_message(job))
    assert message["Subject"] == subject
    assert message["X-Custom"] == header
    for header_name, address in (("From", "login@example.test"), ("To", "user@example.test")):
        assert message[header_name].addresses[0].addr_spec == address
        assert display_name(message, header_name) == name
    body = message.get_body(preferencelist=("plain",))
    html_body = message.get_body(preferencelist=("html",))
    assert body is not None and body.get_content() == canonical(text)
    assert html_body is not None and html_body.get_content() == canonical(html)
    [found] = message.iter_attachments()
    assert filename_of(found) == filename
    assert found.get_content() == (data or b"\x00")
