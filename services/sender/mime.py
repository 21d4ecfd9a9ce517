"""The message as it goes over the wire: RFC 5322 headers, MIME bodies, the VERP envelope."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

from schemas.common import Problem
from schemas.pipeline import DeliveryJob, RenderedContent
from schemas.send import STRUCTURAL_HEADERS

WIRE_POLICY = policy.SMTP.clone(cte_type="7bit")
"""CRLF line ends and 7-bit bodies: every SMTP server accepts them, 8BITMIME or not."""


_TOKEN = r"[a-z0-9!#$&^_.+-]+"
_LEAF_TYPE = re.compile(rf"^(?!multipart/|message/)(?P<maintype>{_TOKEN})/(?P<subtype>{_TOKEN})$")
_HEADER_NAME = re.compile(r"^[!-9;-~]{1,76}$")  # RFC 5322 ftext: printable ASCII but ':'


def envelope_sender(message_id: str, bounce_address: str) -> str:
    """The VERP ``MAIL FROM``: a bounce comes back addressed to the message it is about."""
    local, _, domain = bounce_address.rpartition("@")
    return f"{local}+{message_id}@{domain}"


def message_id_header(message_id: str, sender: str) -> str:
    """The ``Message-ID`` header: the Sendarix id at the sender's own domain."""
    domain = parseaddr(sender)[1].rpartition("@")[2]
    return f"<{message_id}@{domain or 'sendarix.invalid'}>"


def refused_headers(headers: dict[str, str]) -> list[str]:
    """The custom headers that may not be sent: structural, malformed, or with line breaks."""
    return [
        name
        for name, value in headers.items()
        if name.lower() in STRUCTURAL_HEADERS
        or not _HEADER_NAME.match(name)
        or "\r" in value
        or "\n" in value
    ]


def attachment_type(content_type: str) -> tuple[str, str]:
    """The MIME type an attachment is sent as: its own when it is a plain leaf type.

    Container types (``multipart/*``, ``message/*``) and malformed ones become
    ``application/octet-stream``: the bytes are attached as they are, never parsed.
    """
    if match := _LEAF_TYPE.match(content_type.strip().lower()):
        return match["maintype"], match["subtype"]
    return "application", "octet-stream"


def _set_bodies(message: EmailMessage, content: RenderedContent) -> None:
    if content.text is not None:
        message.set_content(content.text)
        if content.html is not None:
            message.add_alternative(content.html, subtype="html")
    elif content.html is not None:
        message.set_content(content.html, subtype="html")
    else:
        message.set_content("")


def build_message(job: DeliveryJob) -> EmailMessage | Problem:
    """The RFC 5322 message of a job, or the problem that makes it unsendable.

    Built only from the job (the Date is the acceptance time), so a repeated attempt sends the
    same bytes.
    """
    spec, content = job.message, job.content
    if not spec.recipient.isascii():
        return Problem(
            code="smtputf8_unsupported",
            detail="the recipient address is not ASCII and SMTPUTF8 is not supported yet",
            pointers=("/to",),
        )
    if refused := refused_headers(spec.headers):
        return Problem(
            code="header_not_allowed",
            detail=f"these headers may not be set by a request: {', '.join(refused)}",
            pointers=tuple(f"/headers/{name}" for name in refused),
        )
    message = EmailMessage(policy=WIRE_POLICY)
    message["From"] = spec.sender
    message["To"] = spec.recipient
    if spec.reply_to:
        message["Reply-To"] = spec.reply_to
    message["Subject"] = content.subject
    message["Date"] = format_datetime(spec.accepted_at)
    message["Message-ID"] = message_id_header(spec.message_id, spec.sender)
    message["X-Sendarix-Message-ID"] = spec.message_id
    for name, value in spec.headers.items():
        message[name] = value
    _set_bodies(message, content)
    for index, attachment in enumerate(spec.attachments):
        try:
            data = base64.b64decode(attachment.content, validate=True)
        except binascii.Error:
            return Problem(
                code="invalid_attachment",
                detail=f"attachment {attachment.filename!r} is not valid base64",
                pointers=(f"/attachments/{index}/content",),
            )
        maintype, subtype = attachment_type(attachment.content_type)
        message.add_attachment(
            data, maintype=maintype, subtype=subtype, filename=attachment.filename
        )
    _fix_boundaries(message, spec.message_id)
    return message


def _fix_boundaries(message: EmailMessage, message_id: str) -> None:
    """Boundaries derived from the message id instead of random ones: same job, same bytes."""
    multiparts = (part for part in message.walk() if part.is_multipart())
    for index, part in enumerate(multiparts):
        digest = hashlib.sha256(f"{message_id}/{index}".encode()).hexdigest()[:32]
        part.set_boundary(f"=_{digest}")  # "=_" never occurs in quoted-printable or base64
