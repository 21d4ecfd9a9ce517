"""A message submitted over SMTP, read as the send request the other doors take.

Pure: the SMTP door hands over the DATA bytes and the envelope recipients, and gets back a
``SendRequest`` (and idempotency key) or the violations that refuse it — never an exception,
whatever the bytes are. The JSON pointers of the violations name the request fields the message
was read into (``/from``, ``/subject``, ``/headers/X-Foo``, ``/attachments/0``), so an SMTP
refusal and an HTTP 422 for the same fault read alike.

How a message becomes a request:
- recipients are the envelope's ``RCPT TO`` (so ``Bcc`` works), each once, whatever the
  ``To``/``Cc`` headers say: every recipient gets a message of its own addressed to it;
- ``from`` is the ``From:`` header (one mailbox), which the accept use case checks against the
  tenant's domains; the envelope ``MAIL FROM`` is not used (the pipeline sets its own bounce
  address); ``reply_to`` is the ``Reply-To:`` header (one mailbox);
- ``subject``, and the first ``text/plain`` and ``text/html`` bodies (decoded from their
  charset and transfer encoding); every other leaf part — attached files, inline images of a
  ``multipart/related`` (kept inline with their ``Content-ID``, so ``cid:`` links work),
  embedded messages — becomes an attachment;
- ``X-Sendarix-*`` headers carry what the HTTP body has as fields (see ``CONTROL_HEADERS``,
  ``X-Sendarix-Tags: a, b`` and ``X-Sendarix-Metadata-<key>: value``, keys lower-cased since
  header names are case-insensitive); ``X-Sendarix-Idempotency-Key`` is the idempotency key (a
  client's own ``Message-ID`` is not one: many mailers make a new one per attempt);
- other headers are passed on as custom ``headers``, except those the pipeline writes itself
  (``STRUCTURAL_HEADERS``) and trace headers a relay adds (``TRACE_HEADERS``).
"""

from __future__ import annotations

import base64
import mimetypes
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from email import errors, policy
from email.headerregistry import Address
from email.message import EmailMessage, MIMEPart
from email.parser import BytesParser
from typing import Any

from schemas.send import STRUCTURAL_HEADERS, SendRequest
from services.ingest.validate import Violation, check_idempotency_key, parse_body, pointer

CONTROL_PREFIX = "x-sendarix-"
METADATA_PREFIX = "x-sendarix-metadata-"
IDEMPOTENCY_HEADER = "x-sendarix-idempotency-key"
CONTROL_HEADERS = {
    "x-sendarix-stream": "stream",
    "x-sendarix-category": "category",
    "x-sendarix-priority": "priority",
    "x-sendarix-send-at": "send_at",
}
"""``X-Sendarix-*`` headers read as the request field of the same meaning."""
TAGS_HEADER = "x-sendarix-tags"
DAMAGE = (
    errors.InvalidBase64CharactersDefect,
    errors.InvalidBase64LengthDefect,
    errors.InvalidBase64PaddingDefect,
    errors.StartBoundaryNotFoundDefect,
)
"""Defects that change what a part says: its content would be guessed, so it is refused (a
missing closing boundary, common and harmless, is not one)."""
TRACE_HEADERS = frozenset(
    {
        "arc-authentication-results",
        "arc-message-signature",
        "arc-seal",
        "authentication-results",
        "bcc",
        "delivered-to",
        "received-spf",
        "x-original-to",
    }
)
"""Headers a relay or a mailbox adds on the way; they describe another hop, not this message."""


@dataclass(frozen=True)
class Submission:
    """A submitted message as a send request, and the idempotency key it asked for."""

    request: SendRequest
    idempotency_key: str | None


def read_submission(data: bytes, recipients: Sequence[str]) -> Submission | list[Violation]:
    """The send request in the message ``data`` for the envelope ``recipients``, or why not."""
    try:
        message = BytesParser(policy=policy.default).parsebytes(data)
        assert isinstance(message, EmailMessage)
        body, key = _request_body(message, recipients)
    except Exception as error:  # the email package raises assorted errors on broken input
        return [Violation("invalid_message", "", f"the message cannot be read: {error!r}")]
    if isinstance(body, list):
        return body
    if key is not None and (reason := check_idempotency_key(key)):
        where = pointer("headers", "X-Sendarix-Idempotency-Key")
        return [Violation("invalid_idempotency_key", where, reason)]
    parsed = parse_body(body, SendRequest)
    if isinstance(parsed, list):
        return parsed
    return Submission(parsed, key)


def _request_body(
    message: EmailMessage, recipients: Sequence[str]
) -> tuple[dict[str, Any] | list[Violation], str | None]:
    """The message as the JSON body of a send request (not validated yet), and its key."""
    sender = _one_mailbox(message, "From", "from")
    reply_to = _one_mailbox(message, "Reply-To", "reply_to") if "Reply-To" in message else None
    faults = [found for found in (sender, reply_to) if isinstance(found, Violation)]
    headers, control, header_faults = _headers(message)
    if faults or header_faults:
        return [*faults, *header_faults], None
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    files = list(_files(message, {id(text), id(html)}))
    body: dict[str, Any] = {
        "from": sender,
        "to": _unique(recipients),
        "reply_to": reply_to,
        "subject": _unescaped(str(message["Subject"])) if "Subject" in message else None,
        "text": _text_of(text),
        "html": _text_of(html),
        "headers": headers,
        "attachments": [_attachment(part, index) for index, part in enumerate(files)],
        **control,
    }
    if damaged := _damage(message, text, html, [part for part, _ in files]):
        return damaged, None
    key = body.pop("idempotency_key", None)
    return {name: value for name, value in body.items() if value is not None}, key


def _one_mailbox(message: EmailMessage, header: str, field: str) -> str | Violation:
    """The one mailbox of an address header, written ``Name <addr>``."""
    found = message.get_all(header) or []
    addresses = [address for value in found for address in value.addresses]
    if len(found) != 1 or len(addresses) != 1:
        return Violation(
            "invalid_address", pointer(field), f"{header}: must hold exactly one mailbox"
        )
    address: Address = addresses[0]
    if not address.addr_spec or "@" not in address.addr_spec:
        return Violation("invalid_address", pointer(field), f"{header}: no address in it")
    return _unescaped(str(address))


def _unescaped(value: str) -> str:
    """Header text as UTF-8: raw 8-bit bytes in a header (sent by 8BITMIME clients) reach us
    surrogate-escaped in address headers; they are read as UTF-8, anything else as U+FFFD."""
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _unique(recipients: Sequence[str]) -> list[str]:
    """Envelope recipients, each once (an address given twice in RCPT TO gets one message)."""
    seen: dict[str, str] = {}
    for address in recipients:
        seen.setdefault(address.lower(), address)
    return list(seen.values())


def _headers(message: EmailMessage) -> tuple[dict[str, str], dict[str, Any], list[Violation]]:
    """Custom headers to pass on, request fields set by ``X-Sendarix-*``, and faults."""
    custom: dict[str, str] = {}
    control: dict[str, Any] = {}
    faults: list[Violation] = []
    seen: set[str] = set()
    for name in message:  # header names, in order
        lowered = name.lower()
        if lowered in seen:  # get_all below has every value of the name, whatever its case
            continue
        seen.add(lowered)
        values = [_unescaped(str(value)) for value in message.get_all(name) or []]
        if lowered in STRUCTURAL_HEADERS or lowered in TRACE_HEADERS:
            continue
        if len(values) > 1:
            faults.append(
                Violation("invalid_header", pointer("headers", name), f"{name} appears twice")
            )
        elif lowered.startswith(CONTROL_PREFIX):
            faults.extend(_read_control(lowered, name, values[0], control))
        else:
            custom[name] = values[0]
    return custom, control, faults


def _read_control(
    lowered: str, name: str, value: str, control: dict[str, Any]
) -> Iterator[Violation]:
    """Set the request field an ``X-Sendarix-*`` header stands for; refuse unknown ones."""
    if lowered in CONTROL_HEADERS:
        control[CONTROL_HEADERS[lowered]] = value.strip()
    elif lowered == TAGS_HEADER:
        control["tags"] = [tag.strip() for tag in value.split(",") if tag.strip()]
    elif lowered == IDEMPOTENCY_HEADER:
        control["idempotency_key"] = value.strip()
    elif lowered.startswith(METADATA_PREFIX) and len(lowered) > len(METADATA_PREFIX):
        control.setdefault("metadata", {})[lowered.removeprefix(METADATA_PREFIX)] = value
    else:
        yield Violation(
            "invalid_header", pointer("headers", name), f"{name} is not a Sendarix header"
        )


def _text_of(part: MIMEPart | None) -> str | None:
    """A body part's text, decoded, with the line ends the other doors use (None if blank)."""
    if part is None:
        return None
    content = part.get_content()
    if not isinstance(content, str) or not content.strip():
        return None
    return content.replace("\r\n", "\n")


def _damage(
    message: MIMEPart, text: MIMEPart | None, html: MIMEPart | None, files: list[MIMEPart]
) -> list[Violation]:
    """A violation for each part whose content had to be guessed (read after decoding it)."""
    named = [("", message), (pointer("text"), text), (pointer("html"), html)]
    named += [(pointer("attachments", index), part) for index, part in enumerate(files)]
    return [
        Violation("invalid_message", where, f"damaged MIME: {type(defect).__name__}")
        for where, part in named
        if part is not None
        for defect in part.defects
        if isinstance(defect, DAMAGE)
    ]


File = tuple[MIMEPart, bool]
"""A leaf part to attach, and whether it is a part of a ``multipart/related``."""


def _files(message: MIMEPart, bodies: set[int], related: bool = False) -> Iterator[File]:
    """Every leaf part that is not one of the chosen bodies, depth first, in order.

    ``multipart/*`` is walked into; an embedded ``message/rfc822`` is one file.
    """
    if message.get_content_maintype() == "multipart":
        inside = related or message.get_content_subtype() == "related"
        for part in message.iter_parts():
            yield from _files(part, bodies, inside)
    elif id(message) not in bodies:
        yield message, related


def _inline_id(part: MIMEPart, related: bool) -> str | None:
    """The Content-ID of an inline part of a ``multipart/related`` (an image the html shows)."""
    content_id = part.get("Content-ID")
    if not related or content_id is None or part.get_content_disposition() == "attachment":
        return None
    return str(content_id).strip().removeprefix("<").removesuffix(">").strip() or None


def _attachment(file: File, index: int) -> dict[str, str]:
    """One file as a request attachment: its name (or a made-up one), base64 bytes, type, and
    Content-ID when it is inline."""
    part, related = file
    content_type = part.get_content_type()
    if part.get_content_maintype() == "message":
        inner = part.get_payload(0)
        data = inner.as_bytes(policy=policy.SMTP) if isinstance(inner, MIMEPart) else b""
    else:
        decoded = part.get_payload(decode=True)
        data = decoded if isinstance(decoded, bytes) else b""
    filename = _unescaped(part.get_filename() or f"part-{index + 1}{_extension(content_type)}")
    attachment = {
        "filename": filename,
        "content": base64.b64encode(data).decode("ascii"),
        "content_type": content_type,
    }
    if content_id := _inline_id(part, related):
        attachment["content_id"] = content_id
    return attachment


def _extension(content_type: str) -> str:
    if content_type == "message/rfc822":
        return ".eml"
    return mimetypes.guess_extension(content_type) or ".bin"
