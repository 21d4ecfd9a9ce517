"""Reading a submitted RFC 5322 message as a send request, and the SMTP door's replies."""

from __future__ import annotations

import base64
import uuid
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libs.sendable import parse_mailbox
from services.ingest.smtp_door import (
    MAX_REPLY_CHARS,
    AuthFailures,
    accepted_reply,
    auth_delay,
    refusal_reply,
)
from services.ingest.submission import Submission, read_submission
from services.ingest.validate import Violation

TO = ["jane@example.org"]


def mail(**headers: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Acme <hello@example.test>"
    message["To"] = "jane@example.org"
    message["Subject"] = "Hello"
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    return message


def read(message: EmailMessage | bytes, recipients: list[str] = TO) -> Submission:
    data = message if isinstance(message, bytes) else message.as_bytes(policy=SMTP_POLICY)
    read = read_submission(data, recipients)
    assert isinstance(read, Submission), read
    return read


def refused(message: EmailMessage | bytes, recipients: list[str] = TO) -> list[Violation]:
    data = message if isinstance(message, bytes) else message.as_bytes(policy=SMTP_POLICY)
    read = read_submission(data, recipients)
    assert isinstance(read, list), read
    return read


def test_a_plain_message_reads_as_from_subject_and_text() -> None:
    message = mail(Reply_To="Help <help@example.test>")
    message.set_content("Hi Jane,\nyour order shipped.")
    request = read(message).request
    assert (request.sender, request.reply_to) == (
        "Acme <hello@example.test>",
        "Help <help@example.test>",
    )
    assert (request.to, request.subject) == (TO, "Hello")
    assert (request.text, request.html) == ("Hi Jane,\nyour order shipped.\n", None)
    assert (request.attachments, request.headers) == ([], {})


def test_alternative_related_and_mixed_parts_become_bodies_and_attachments() -> None:
    message = mail()
    message.set_content("text body")
    message.add_alternative('<img src="cid:logo">', subtype="html")
    html = message.get_body(("html",))
    assert isinstance(html, EmailMessage)
    html.add_related(b"PNG", maintype="image", subtype="png", cid="<logo>")
    message.add_attachment(b"%PDF", maintype="application", subtype="pdf", filename="a.pdf")
    request = read(message).request
    assert (request.text, request.html) == ("text body\n", '<img src="cid:logo">\n')
    assert [(a.filename, a.content_type, a.content_id) for a in request.attachments] == [
        ("part-1.png", "image/png", "logo"),
        ("a.pdf", "application/pdf", None),
    ]
    assert [base64.b64decode(a.content) for a in request.attachments] == [b"PNG", b"%PDF"]


@pytest.mark.parametrize("cte", ["8bit", "quoted-printable", "base64"])
@pytest.mark.parametrize("charset", ["utf-8", "iso-8859-1", "windows-1252"])
def test_bodies_are_decoded_from_their_charset_and_encoding(cte: str, charset: str) -> None:
    text = "Grüße, café — à bientôt" if charset != "iso-8859-1" else "Grüße, café"
    message = mail()
    message.set_content(text, charset=charset, cte=cte)
    assert read(message).request.text == text + "\n"


def test_encoded_words_and_rfc2231_names_are_decoded() -> None:
    raw = (
        b"From: =?utf-8?q?Jos=C3=A9_M=C3=BCller?= <jose@example.test>\r\n"
        b"Subject: =?iso-8859-1?q?Gr=FC=DFe?= =?utf-8?b?4pyT?=\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="x"\r\n\r\n'
        b"--x\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhi\r\n"
        b"--x\r\nContent-Type: text/csv\r\n"
        b"Content-Disposition: attachment; filename*=utf-8''r%C3%A9sum%C3%A9.csv\r\n\r\n"
        b"a,b\r\n--x--\r\n"
    )
    request = read(raw).request
    assert request.sender == "José Müller <jose@example.test>"
    assert request.subject == "Grüße✓"
    [attachment] = request.attachments
    assert attachment.filename == "résumé.csv"
    assert base64.b64decode(attachment.content) == b"a,b"


def test_an_attached_message_is_one_eml_file() -> None:
    inner = mail()
    inner.replace_header("Subject", "forwarded")
    inner.set_content("inside")
    message = mail()
    message.set_content("see attached")
    message.add_attachment(inner)
    [attachment] = read(message).request.attachments
    assert (attachment.filename, attachment.content_type) == ("part-1.eml", "message/rfc822")
    assert b"inside" in base64.b64decode(attachment.content)


def test_recipients_are_the_envelope_each_once_and_relay_headers_are_dropped() -> None:
    message = mail(
        Cc="b@example.org",
        Bcc="secret@example.org",
        Received="from somewhere",
        Delivered_To="x@example.org",
        Message_ID="<own@example.test>",
        In_Reply_To="<earlier@example.test>",
        X_Mailer="Mailer 1.0",
    )
    message.set_content("hi")
    envelope = ["jane@example.org", "b@example.org", "secret@example.org", "JANE@example.org"]
    request = read(message, envelope).request
    assert request.to == envelope[:3]
    assert request.headers == {"In-Reply-To": "<earlier@example.test>", "X-Mailer": "Mailer 1.0"}


def test_sendarix_headers_set_the_request_fields() -> None:
    message = mail(
        X_Sendarix_Stream="broadcast",
        X_Sendarix_Category="password_reset",
        X_Sendarix_Priority="high",
        X_Sendarix_Tags="a, b ,,c",
        X_Sendarix_Metadata_User_Id="42",
        X_Sendarix_Idempotency_Key="order-17",
        X_Sendarix_Send_At="2030-01-01T00:00:00Z",
    )
    message.set_content("hi")
    submission = read(message)
    request = submission.request
    assert (request.stream, request.category, request.priority) == (
        "broadcast",
        "password_reset",
        "high",
    )
    assert (request.tags, request.metadata) == (["a", "b", "c"], {"user-id": "42"})
    assert request.send_at is not None and request.send_at.year == 2030
    assert submission.idempotency_key == "order-17"
    assert request.headers == {}


@pytest.mark.parametrize(
    ("headers", "code", "where"),
    [
        ({"X_Sendarix_Colour": "blue"}, "invalid_header", "/headers/X-Sendarix-Colour"),
        ({"X_Sendarix_Stream": "pigeon"}, "invalid_request", "/stream"),
        ({"X_Sendarix_Tags": ",".join(f"t{n}" for n in range(11))}, "invalid_request", "/tags"),
        (
            {"X_Sendarix_Idempotency_Key": "clé"},
            "invalid_idempotency_key",
            "/headers/X-Sendarix-Idempotency-Key",
        ),
        ({"Reply_To": "a@example.test, b@example.test"}, "invalid_address", "/reply_to"),
    ],
)
def test_bad_headers_are_refused_with_their_pointer(
    headers: dict[str, str], code: str, where: str
) -> None:
    message = mail(**headers)
    message.set_content("hi")
    assert (code, where) in [(v.code, v.pointer) for v in refused(message)]


def test_a_repeated_custom_header_is_refused() -> None:
    message = mail(X_Campaign="a")
    message["x-campaign"] = "b"
    message.set_content("hi")
    [violation] = refused(message)
    assert (violation.code, violation.pointer) == ("invalid_header", "/headers/X-Campaign")


@pytest.mark.parametrize(
    "raw",
    [
        b"Subject: no from\r\n\r\nhi\r\n",
        b"From: a@example.test, b@example.test\r\nSubject: two\r\n\r\nhi\r\n",
        b"From: a@example.test\r\nFrom: b@example.test\r\nSubject: two\r\n\r\nhi\r\n",
        b"From: not an address\r\nSubject: x\r\n\r\nhi\r\n",
    ],
)
def test_a_from_without_exactly_one_mailbox_is_refused(raw: bytes) -> None:
    assert [v.pointer for v in refused(raw)] == ["/from"]


def test_a_blank_body_is_no_text() -> None:
    message = mail()
    message.set_content("\n\n")
    assert read(message).request.text is None  # then accept refuses it: missing_content


def test_damaged_base64_is_refused_rather_than_guessed() -> None:
    raw = (
        b"From: a@example.test\r\nSubject: x\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"!!!bm90IGJhc2U2NA\r\n"
    )
    assert any(v.code == "invalid_message" for v in refused(raw))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_no_bytes_make_reading_raise(data: bytes) -> None:
    read = read_submission(b"From: a@example.test\r\nSubject: x\r\n" + data, TO)
    assert isinstance(read, Submission) or (isinstance(read, list) and read)


def test_refusal_replies_name_the_code_and_the_violations_on_one_ascii_line() -> None:
    forged = Violation("sender_not_allowed", "/from", "evil.example\r\n250 OK is not ours ✓")
    reply = refusal_reply([forged])
    assert reply.startswith("550 5.7.1 sender_not_allowed /from: evil.example250 OK")
    assert reply.isascii() and "\r" not in reply and "\n" not in reply
    assert refusal_reply([Violation("missing_content", "/html", "x")]).startswith("554 5.6.0 ")
    assert refusal_reply([Violation("idempotency_key_reused", "", "x")]).startswith("554 5.6.0 ")
    long = refusal_reply([Violation("invalid_request", f"/to/{n}", "bad " * 20) for n in range(50)])
    assert len(long) <= MAX_REPLY_CHARS + 10 and long.endswith("...")


def test_accepted_replies_list_every_id_on_short_lines() -> None:
    assert accepted_reply(["a"]) == "250 2.0.0 OK a"
    ids = [str(uuid.uuid4()) for _ in range(50)]
    lines = accepted_reply(ids).split("\r\n")
    assert all(len(line) < 512 for line in lines)
    assert [line[:4] for line in lines] == ["250-"] * (len(lines) - 1) + ["250 "]
    assert [word for line in lines for word in line[4:].split()[2:]] == ids


def test_failed_logins_are_answered_later_the_more_there_were() -> None:
    assert [auth_delay(n) for n in range(1, 11)] == [0, 0, 0, 1, 2, 3, 4, 5, 5, 5]
    failures = AuthFailures()
    assert [failures.add("10.0.0.1") for _ in range(3)] == [1, 2, 3]
    assert failures.add("10.0.0.2") == 1
    failures.forget("10.0.0.1")
    assert failures.add("10.0.0.1") == 1
    forgetful = AuthFailures(memory=0.0)
    assert [forgetful.add("10.0.0.1") for _ in range(3)] == [1, 1, 1]


def test_raw_utf8_headers_of_an_8bit_client_are_read() -> None:
    raw = "From: Zoë <zoe@example.test>\r\nSubject: café ☕\r\n\r\nhi\r\n".encode()
    request = read(raw).request
    assert (request.sender, request.subject) == ("Zoë <zoe@example.test>", "café ☕")


def test_an_unknown_charset_is_refused_with_the_reason() -> None:
    raw = (
        b"From: a@example.test\r\nSubject: x\r\n"
        b"Content-Type: text/plain; charset=x-martian\r\n\r\nhi\r\n"
    )
    [violation] = refused(raw)
    assert violation.code == "invalid_message" and "x-martian" in violation.detail


def test_raw_8bit_names_of_other_charsets_become_replacement_characters() -> None:
    raw = b"From: Zo\xeb <zoe@example.test>\r\nSubject: caf\xe9\r\nX-Note: \xe9t\xe9\r\n\r\nhi\r\n"
    request = read(raw).request
    assert request.sender == "Zo\ufffd <zoe@example.test>"
    assert request.subject is not None and "\udce9" not in request.subject
    assert request.headers == {"X-Note": "\ufffdt\ufffd"}


def test_a_quoted_display_name_keeps_its_comma() -> None:
    raw = b'From: "Doe, John" <john@example.test>\r\nSubject: x\r\n\r\nhi\r\n'
    sender = parse_mailbox(read(raw).request.sender)
    assert (sender.name, sender.address) == ("Doe, John", "john@example.test")
