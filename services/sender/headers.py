"""Header fields as Sendarix writes them: folded, 7-bit, readable back exactly.

Plain ASCII stays as it is; anything else becomes RFC 2047 encoded words (UTF-8, base64) in
headers and RFC 2231 parameters in ``Content-Disposition``. Display names that could be read as
another address — ``=?``, quotes, ``<``, ``@`` — never go out as they are.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from urllib.parse import quote

from libs.sendable import MAX_LINE_CHARS
from schemas.common import Mailbox

FOLD_AT = 76
"""Longest header line written where a fold allows it: RFC 2047's limit, under RFC 5322's 78."""
QUOTED_MAX_CHARS = 60
"""Longest name or filename written as a quoted string, which cannot fold; longer is encoded."""
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_ATOMS = re.compile(rf"{_ATEXT}(?: {_ATEXT})*")
"""A display name that needs no quoting: atoms, one space apart."""
_PLAIN_TEXT = re.compile(r"[!-~]+(?: [!-~]+)*")
"""Header text written as it is: printable ASCII words, one space apart, folded between them."""
_QUOTABLE_FILENAME = re.compile(r"[!#-\[\]-~]+(?: [!#-\[\]-~]+)*")
"""A filename readers take back exactly from a quoted string: no quote, backslash or odd space."""
_PERCENT_RUN = re.compile(r"(?:%[0-9A-F]{2}|[^%]){1,16}")
"""An RFC 2231 section: at most 48 characters, so ``filename*0*=utf-8''`` and it fit a line."""
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_ENCODED_WORD_OVERHEAD = len("=?utf-8?b??=")


def rfc5322_date(moment: datetime) -> str:
    """RFC 5322 date-time in UTC (naive means UTC), a fifth of ``format_datetime``'s cost."""
    utc = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return (
        f"{_DAYS[utc.weekday()]}, {utc.day:02d} {_MONTHS[utc.month - 1]} {utc.year:04d} "
        f"{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d} +0000"
    )


def header_field(name: str, tokens: Sequence[str]) -> str:
    """``name: tokens`` one space apart, folded before a token that would pass ``FOLD_AT``."""
    lines: list[str] = []
    line = name + ":"
    for token in tokens:
        if len(line) + 1 + len(token) > FOLD_AT and line != name + ":":
            lines.append(line)
            line = ""
        line += " " + token
    lines.append(line)
    return "\r\n".join(lines) + "\r\n"


def mailbox_words(mailbox: Mailbox, header: str) -> list[str]:
    """``Name <addr>``: atoms as they are, ASCII with specials quoted, anything else encoded.

    A name with ``=?`` is always encoded, so no reader can decode it into another address.
    """
    name = mailbox.name
    if not name:
        return [mailbox.address]
    if _ATOMS.fullmatch(name) and "=?" not in name:
        words = name.split(" ")
    elif _PLAIN_TEXT.fullmatch(name) and "=?" not in name and len(name) <= QUOTED_MAX_CHARS:
        words = ['"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"']
    else:
        words = _encoded_words(name, header)
    return [*words, f"<{mailbox.address}>"]


def text_words(text: str, header: str) -> list[str]:
    """Unstructured header text: plain words when they are safe and fit, else encoded words."""
    longest = MAX_LINE_CHARS - len(header) - len(": ")
    if (
        _PLAIN_TEXT.fullmatch(text)
        and "=?" not in text
        and max(map(len, text.split(" "))) <= longest
    ):
        return text.split(" ")
    return _encoded_words(text, header)


def _encoded_words(text: str, header: str) -> list[str]:
    """``text`` as RFC 2047 base64 encoded words, each whole characters and fitting a line.

    RFC 2047 readers drop the white space between adjacent encoded words, so any text — spaces,
    quotes, ``=?`` — comes back exactly (the standard library's parser keeps that space inside
    a display name, so a name long enough to need two words reads with one space more there).
    """
    data = text.encode()
    words: list[str] = []
    room = max(FOLD_AT - len(header) - len(": "), 20)
    start = 0
    while start < len(data):
        end = min(start + (room - _ENCODED_WORD_OVERHEAD) // 4 * 3, len(data))
        while end < len(data) and data[end] & 0xC0 == 0x80:  # inside a UTF-8 sequence
            end -= 1
        encoded = binascii.b2a_base64(data[start:end], newline=False).decode()
        words.append(f"=?utf-8?b?{encoded}?=")
        start, room = end, FOLD_AT - 1
    return words


def disposition_words(filename: str, disposition: str = "attachment") -> list[str]:
    """``attachment; filename=...`` (or ``inline``): quoted when short plain ASCII, else RFC 2231.

    RFC 2231 values are percent-encoded UTF-8, split into numbered sections that fold.
    """
    if (
        _QUOTABLE_FILENAME.fullmatch(filename)
        and "=?" not in filename
        and len(filename) <= QUOTED_MAX_CHARS
    ):
        return [f"{disposition};", f'filename="{filename}"']
    sections = _PERCENT_RUN.findall(quote(filename, safe=""))
    if len(sections) == 1:
        return [f"{disposition};", f"filename*=utf-8''{sections[0]}"]
    last = len(sections) - 1
    return [
        f"{disposition};",
        f"filename*0*=utf-8''{sections[0]};",
        *(f"filename*{index}*={section};" for index, section in enumerate(sections[1:-1], 1)),
        f"filename*{last}*={sections[last]}",
    ]
