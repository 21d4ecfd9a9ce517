"""The message as it goes over the wire: RFC 5322 headers, MIME bodies, the list headers.

Written straight to bytes rather than through ``email.message``, which costs a millisecond and
a half per message (this costs tens of microseconds): CRLF line ends, 7-bit only (every SMTP
server takes it, 8BITMIME or not), UTF-8 text as quoted-printable, files as base64, header
fields as ``services.sender.headers`` writes them. Every header is written from parsed parts (a
``Mailbox``, never a raw address string), and everything is derived from the job alone —
boundaries from the message id, the Date from the acceptance time — so a repeated attempt sends
the same bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence

from libs.sendable import domain_of, header_fault
from schemas.common import Mailbox, Problem
from schemas.pipeline import DeliveryJob, MessageSpec, RenderedContent
from schemas.send import Attachment
from services.sender.headers import (
    disposition_words,
    header_field,
    mailbox_words,
    rfc5322_date,
    text_words,
)
from services.sender.list_unsubscribe import OneClick

SEVEN_BIT_LINE_CHARS = 78
"""Longest body line sent as it is; longer lines go quoted-printable (76 per line)."""

_TOKEN = r"[a-z0-9!#$&^_.+-]+"
_LEAF_TYPE = re.compile(rf"^(?!multipart/|message/)(?P<maintype>{_TOKEN})/(?P<subtype>{_TOKEN})$")
_ADDR_SPEC = re.compile(r"[^\s<>()\[\],;:\"\\@]+@[^\s<>()\[\],;:\"\\@]+")
_LINE_BREAK = re.compile(r"\r\n?")
_NOT_SEVEN_BIT = re.compile(
    rf"[^\t\n -~]|[ \t]\n|^From |^[^\n]{{{SEVEN_BIT_LINE_CHARS + 1}}}|--=_", re.MULTILINE
)
"""What a body may not contain to go as it is: 8-bit or control characters, trailing white
space (servers strip it), mbox ``From `` lines, over-long lines, or a boundary's prefix."""
_FROM_LINE = re.compile(rb"^From ", re.MULTILINE)


def message_id_header(message_id: str, sender: Mailbox) -> str:
    """The ``Message-ID`` header: the Sendarix id at the sender's own domain."""
    return f"<{message_id}@{domain_of(sender.address) or 'sendarix.invalid'}>"


def feedback_id(spec: MessageSpec) -> str:
    """The ``Feedback-ID`` value (Gmail's feedback loop, ``a:b:c:SenderId``): complaints are
    counted per template (or category), tenant and stream. Every field is header-safe as it
    is — aliases and categories are ``[a-z0-9_.-]``, a tenant a UUID — and none has a colon."""
    campaign = spec.template or spec.category or "none"
    return f"{campaign}:{spec.tenant_id}:{spec.stream.value}:sendarix"


def refused_headers(headers: dict[str, str]) -> list[str]:
    """The custom headers that may not be sent: structural, malformed, or not one line."""
    return [name for name, value in headers.items() if header_fault(name, value)]


def attachment_type(content_type: str) -> tuple[str, str]:
    """The MIME type an attachment is sent as: its own when it is a plain leaf type.

    Container types (``multipart/*``, ``message/*``) and malformed ones become
    ``application/octet-stream``: the bytes are attached as they are, never parsed.
    """
    if match := _LEAF_TYPE.match(content_type.strip().lower()):
        return match["maintype"], match["subtype"]
    return "application", "octet-stream"


def build_message(job: DeliveryJob, unsubscribe: OneClick | None = None) -> bytes | Problem:
    """The RFC 5322 message of a job (with its one-click unsubscribe headers, when it offers
    one), or the problem that makes it unsendable."""
    spec = job.message
    if problem := _unsendable_addresses(spec):
        return problem
    if refused := refused_headers(spec.headers):
        return Problem(
            code="header_not_allowed",
            detail=f"these headers may not be set by a request: {', '.join(refused)}",
            pointers=tuple(f"/headers/{name}" for name in refused),
        )
    files = _attachment_parts(spec.attachments)
    if isinstance(files, Problem):
        return files
    body = _body(job.content, spec.message_id)
    inline = [part for a, part in zip(spec.attachments, files, strict=True) if a.content_id]
    attached = [part for a, part in zip(spec.attachments, files, strict=True) if not a.content_id]
    if inline:
        body = _multipart("related", _boundary(spec.message_id, 2), [body, *inline])
    if attached:
        body = _multipart("mixed", _boundary(spec.message_id, 0), [body, *attached])
    list_headers = unsubscribe.header_lines() if unsubscribe is not None else ""
    return (_headers(spec, job.content.subject) + list_headers).encode("ascii") + body


def _unsendable_addresses(spec: MessageSpec) -> Problem | None:
    """Why an address of ``spec`` cannot be written into a header, if one cannot."""
    mailboxes = [("/to", spec.recipient), ("/from", spec.sender), ("/reply_to", spec.reply_to)]
    for where, mailbox in mailboxes:
        if mailbox is None:
            continue
        if not mailbox.address.isascii():
            return Problem(
                code="smtputf8_unsupported",
                detail="a non-ASCII address needs SMTPUTF8, which is not supported yet",
                pointers=(where,),
            )
        if not _ADDR_SPEC.fullmatch(mailbox.address):
            return Problem(code="invalid_address", detail="not an addr-spec", pointers=(where,))
    return None


def _headers(spec: MessageSpec, subject: str) -> str:
    """The message's own headers, then the request's; the body's MIME headers follow."""
    lines = [
        header_field("From", mailbox_words(spec.sender, "From")),
        header_field("To", mailbox_words(spec.recipient, "To")),
    ]
    if spec.reply_to is not None:
        lines.append(header_field("Reply-To", mailbox_words(spec.reply_to, "Reply-To")))
    lines += [
        header_field("Subject", text_words(subject, "Subject")),
        f"Date: {rfc5322_date(spec.accepted_at)}\r\n",
        f"Message-ID: {message_id_header(spec.message_id, spec.sender)}\r\n",
        f"X-Sendarix-Message-ID: {spec.message_id}\r\n",
        "MIME-Version: 1.0\r\n",
    ]
    if not any(name.lower() == "feedback-id" for name in spec.headers):
        lines.append(f"Feedback-ID: {feedback_id(spec)}\r\n")
    lines += [header_field(name, text_words(value, name)) for name, value in spec.headers.items()]
    return "".join(lines)


def _body(content: RenderedContent, message_id: str) -> bytes:
    """The text and html parts: one alone, both as alternatives (text first), or empty text."""
    parts = [
        _text_part(body, subtype)
        for body, subtype in ((content.text, "plain"), (content.html, "html"))
        if body is not None
    ]
    if len(parts) == 2:
        return _multipart("alternative", _boundary(message_id, 1), parts)
    return parts[0] if parts else _text_part("", "plain")


def _text_part(text: str, subtype: str) -> bytes:
    """A text part in canonical form: CRLF line breaks, ending with one."""
    text = _LINE_BREAK.sub("\n", text)
    if not text.endswith("\n"):
        text += "\n"
    if not _NOT_SEVEN_BIT.search(text):
        encoding, data = "7bit", text.replace("\n", "\r\n").encode("ascii")
    else:
        quoted = binascii.b2a_qp(text.encode(), istext=True).replace(b"\n", b"\r\n")
        encoding, data = "quoted-printable", _FROM_LINE.sub(b"=46rom ", quoted)
    head = f"Content-Type: text/{subtype}; charset=utf-8\r\nContent-Transfer-Encoding: {encoding}"
    return f"{head}\r\n\r\n".encode() + data


def _attachment_parts(attachments: Sequence[Attachment]) -> list[bytes] | Problem:
    """Each attachment as a base64 part (inline ones with their Content-ID), or the problem with
    the first one that is not base64."""
    parts: list[bytes] = []
    for index, attachment in enumerate(attachments):
        try:
            data = base64.b64decode(attachment.content, validate=True)
        except ValueError:  # binascii.Error, or a non-ASCII character in the text
            return Problem(
                code="invalid_attachment",
                detail=f"attachment {index} is not valid base64",
                pointers=(f"/attachments/{index}/content",),
            )
        maintype, subtype = attachment_type(attachment.content_type)
        kind, content_id = "attachment", ""
        if attachment.content_id is not None:
            kind, content_id = "inline", f"Content-ID: <{attachment.content_id}>\r\n"
        disposition = header_field(
            "Content-Disposition", disposition_words(attachment.filename, kind)
        )
        head = (
            f"Content-Type: {maintype}/{subtype}\r\n{disposition}{content_id}"
            "Content-Transfer-Encoding: base64\r\n\r\n"
        )
        parts.append(head.encode() + base64.encodebytes(data).replace(b"\n", b"\r\n"))
    return parts


def _multipart(subtype: str, boundary: str, parts: Sequence[bytes]) -> bytes:
    """A multipart body; each part keeps its final line break (the delimiter adds its own)."""
    delimiter = f"\r\n--{boundary}\r\n".encode()
    head = f'Content-Type: multipart/{subtype};\r\n boundary="{boundary}"\r\n\r\n'
    return (
        head.encode() + delimiter[2:] + delimiter.join(parts) + f"\r\n--{boundary}--\r\n".encode()
    )


def _boundary(message_id: str, index: int) -> str:
    """A boundary derived from the message id: same job, same bytes.

    ``=_`` never occurs in quoted-printable or base64, and a 7-bit part containing ``--=_``
    is sent quoted-printable, so no part can contain its boundary.
    """
    return "=_" + hashlib.sha256(f"{message_id}/{index}".encode()).hexdigest()[:32]
