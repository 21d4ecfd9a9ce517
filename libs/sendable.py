"""What a sendable message is: the limits and text rules the edge, render and MIME share.

One definition, so that whatever ingest accepts, render produces and the sender can write,
and no record that passed the edge is refused — or worse, written wrongly — at the sender.
Pure functions and constants: no I/O.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from email_validator import EmailNotValidError, validate_email

from schemas.common import Mailbox
from schemas.send import STRUCTURAL_HEADERS

MAX_MESSAGE_BYTES = 10 * 1024 * 1024
"""One send request (HTTP body or topic record), and the rendered content of one message."""
MAX_ATTACHMENT_BYTES = 7 * 1024 * 1024
"""Decoded attachment bytes per message: fits a 10 MiB body once base64-encoded."""
MAX_NESTING = 32
"""JSON nesting depth of a request: deeper is never a real payload, and costs recursion."""
MAX_LINE_CHARS = 998
"""RFC 5321/5322: the longest line a server must accept, CRLF not counted."""
MAX_SUBJECT_CHARS = MAX_LINE_CHARS
HEADER_NAME = re.compile(r"^[!-9;-~]{1,76}$")
"""RFC 5322 ftext (printable ASCII but ``:``), short enough to leave room for a value."""


@dataclass(frozen=True)
class TextRule:
    """Characters one kind of text may never contain, and where that kind of text goes."""

    refused: re.Pattern[str]
    where: str

    def fault(self, value: str) -> str | None:
        """Why ``value`` breaks the rule (its first refused character), or None."""
        if match := self.refused.search(value):
            return f"U+{ord(match[0]):04X} may not appear {self.where}"
        return None

    def remove(self, value: str) -> str:
        """``value`` without the characters the rule refuses."""
        return self.refused.sub("", value)


ONE_LINE = TextRule(
    re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]"),
    "in a name, address, filename or label",
)
"""Display names, addresses, filenames, tags, metadata: no control, no line break of any kind
(C0, DEL, C1 with NEL, U+2028/U+2029), no lone surrogate (it cannot be encoded)."""
HEADER_VALUE = TextRule(
    re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]"),
    "in a header value",
)
"""The subject and custom header values: one line, as ``ONE_LINE`` but TAB allowed."""
BODY = TextRule(re.compile(r"[\x00\ud800-\udfff]"), "in a body or template data")
"""Bodies and template data: PostgreSQL cannot store NUL, a lone surrogate cannot be encoded."""

_UNQUOTED_NAME_SPECIALS = re.compile(r'[",;:\\]')
"""What makes an unquoted display name ambiguous: a list, a group, or a broken quote."""
_QUOTED_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')
_ADDRESS_LIKE = re.compile(r"[<>@]|=\?")
"""What could make a mail client show a display name as an address (or decode one from it)."""


@dataclass(frozen=True)
class HeaderFault:
    """Why a custom header cannot be sent: ``forbidden_header`` or ``invalid_header``."""

    code: str
    reason: str


class UnsendableAddress(ValueError):
    """An address Sendarix cannot send to or from; ``code`` says which kind of problem."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code


def max_header_value_chars(name: str) -> int:
    """The longest value of header ``name`` that fits one line unfolded."""
    return MAX_LINE_CHARS - len(name) - len(": ")


def header_fault(name: str, value: str) -> HeaderFault | None:
    """Why a request's custom header ``name: value`` cannot be sent, or None when it can."""
    if not HEADER_NAME.match(name):
        return HeaderFault("invalid_header", "a header name is 1 to 76 printable ASCII, no ':'")
    if name.lower() in STRUCTURAL_HEADERS:
        return HeaderFault("forbidden_header", f"{name} is set by Sendarix")
    if fault := HEADER_VALUE.fault(value):
        return HeaderFault("invalid_header", f"header values are one line of text: {fault}")
    if len(value) > max_header_value_chars(name):
        limit = max_header_value_chars(name)
        return HeaderFault("invalid_header", f"the value of {name} has more than {limit} chars")
    return None


def domain_of(address: str) -> str:
    """The domain of an addr-spec, lower-case."""
    return address.rpartition("@")[2].lower()


@lru_cache(maxsize=4096)
def parse_mailbox(value: str) -> Mailbox:
    """One mailbox, ``addr`` or ``Name <addr>``, as Sendarix sends it.

    Raises ``UnsendableAddress`` (a ValueError) saying what is wrong. The address must be
    sendable without SMTPUTF8 (an IDN domain becomes its ``xn--`` form); the display name may be
    any Unicode text but nothing a mail client could show as another address.
    """
    if fault := ONE_LINE.fault(value):
        raise UnsendableAddress("invalid_address", fault)
    text = value.strip()
    if text.endswith(">") and "<" in text:
        written, _, address = text[:-1].rpartition("<")
        name = _display_name(written.strip())
    else:
        name, address = "", text
    return Mailbox(address=_sendable_address(address), name=name)


def _display_name(written: str) -> str:
    """The display name as written before ``<addr>``: a quoted string or plain words."""
    if quoted := _QUOTED_STRING.fullmatch(written):
        name = re.sub(r"\\(.)", r"\1", quoted[1])
    elif _UNQUOTED_NAME_SPECIALS.search(written):
        raise UnsendableAddress(
            "invalid_address", "expected one address, as addr@domain or Name <addr@domain>"
        )
    else:
        name = written
    if _ADDRESS_LIKE.search(unicodedata.normalize("NFKC", name)):
        raise UnsendableAddress(
            "invalid_address", "a display name may not contain '@', '<', '>' or '=?'"
        )
    return name.strip()


def _sendable_address(address: str) -> str:
    """The addr-spec as sent: ASCII, the domain in its ``xn--`` form and lower-case."""
    if not address.rpartition("@")[0].isascii():
        raise UnsendableAddress(
            "smtputf8_unsupported",
            "SMTPUTF8 is not supported yet: the part before the @ must be ASCII",
        )
    try:
        valid = validate_email(
            address,
            check_deliverability=False,
            test_environment=True,
            allow_smtputf8=False,
            strict=True,
        )
    except EmailNotValidError as error:
        raise UnsendableAddress("invalid_address", str(error)) from error
    return f"{valid.local_part}@{valid.ascii_domain.lower()}"
