"""A sent ``.eml`` as the message page shows it: its headers, and the body a person would read.

Parsed with the standard library's ``email`` package (the modern policy decodes encoded words
and transfer encodings); the HTML is only ever served into a sandboxed frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default


@dataclass(frozen=True)
class SentMail:
    """What the message page shows of the bytes handed to SMTP."""

    headers: tuple[tuple[str, str], ...]
    html: str | None
    text: str | None


def read_eml(raw: bytes) -> SentMail:
    """The headers in their order, and the HTML and plain-text bodies when there are any."""
    parsed = message_from_bytes(raw, _class=EmailMessage, policy=default)
    return SentMail(
        headers=tuple((name, str(value)) for name, value in parsed.items()),
        html=_body(parsed, "html"),
        text=_body(parsed, "plain"),
    )


def _body(mail: EmailMessage, subtype: str) -> str | None:
    part = mail.get_body(preferencelist=(subtype,))
    if part is None or part.get_content_subtype() != subtype:
        return None
    try:
        content = part.get_content()
    except (LookupError, ValueError):  # an unknown charset, a broken encoding: show none
        return None
    return content if isinstance(content, str) else None
