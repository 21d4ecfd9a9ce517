"""The CSV of ``/v1/suppressions``: an export written as it is read, an import streamed into COPY.

An import starts with a header line naming its columns: ``address`` and any of ``stream``
(empty: every stream), ``expires_at`` (RFC 3339; empty: for good) and ``note``; the other
columns of an export (``reason``, ``created_at``…) are accepted and ignored, so an export
imports back. The bytes after the header go to PostgreSQL's COPY as they arrive, checked only
for what COPY would take too far: a line longer than ``MAX_LINE_BYTES`` or a body larger than
``MAX_IMPORT_BYTES``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Iterable, Sequence

from libs.suppressions import FORMULA_START, IMPORT_COLUMNS, Suppression

EXPORT_COLUMNS = (
    "address",
    "stream",
    "reason",
    "created_at",
    "expires_at",
    "source_message_id",
    "note",
    "created_by",
)
KNOWN_COLUMNS = frozenset((*EXPORT_COLUMNS, *IMPORT_COLUMNS))
MAX_LINE_BYTES = 4096
"""Longer than any row can be (an address ≤ 254 characters, a note ≤ 1000 of up to 4 bytes)."""
MAX_IMPORT_BYTES = 512 * 1024 * 1024
"""About eight million rows of an export's size."""


class CsvRefused(Exception):
    """Why an import's bytes are refused before COPY sees them: a problem code and a sentence."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def _row(values: Iterable[object]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(values)
    return buffer.getvalue()


def header_line() -> str:
    """The first line of an export."""
    return _row(EXPORT_COLUMNS)


def guarded(cell: str) -> str:
    """A cell a spreadsheet will not run: one that begins like a formula gets a ``'`` first
    (an address such as ``=cmd|' /c calc'!a0@x.co`` is valid mail syntax, stored by a complaint,
    and opened by the tenant's staff in a spreadsheet); an import takes the ``'`` off again."""
    return f"'{cell}" if cell and cell[0] in FORMULA_START else cell


def export_lines(suppressions: Sequence[Suppression]) -> str:
    """Rows of an export (times in RFC 3339, absent values empty, formulas guarded)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for s in suppressions:
        writer.writerow(
            (
                guarded(s.address),
                s.stream.value,
                s.reason.value,
                s.created_at.isoformat() if s.created_at else "",
                s.expires_at.isoformat() if s.expires_at else "",
                guarded(s.source_message_id or ""),
                guarded(s.note or ""),
                guarded(s.created_by or ""),
            )
        )
    return buffer.getvalue()


def parse_header(line: bytes) -> list[str]:
    """The column names of an import's header line (``address`` among them)."""
    try:
        [names] = list(csv.reader([line.decode("utf-8-sig").rstrip("\r\n")]))
    except (UnicodeDecodeError, ValueError, csv.Error):
        raise CsvRefused("invalid_csv", "the first line must be a CSV header") from None
    columns = [name.strip().lower() for name in names]
    unknown = [name for name in columns if name not in KNOWN_COLUMNS]
    if unknown:
        known = ", ".join(sorted(KNOWN_COLUMNS))
        raise CsvRefused("invalid_csv", f"unknown columns {unknown!r} (known: {known})")
    if "address" not in columns or len(set(columns)) != len(columns):
        raise CsvRefused("invalid_csv", "the header must name each column once, address among them")
    return columns


class GuardedBody:
    """An import's body: its header line first, then its remaining bytes, checked as they go."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = b""
        self._line = 0
        self._total = 0

    def _check(self, chunk: bytes) -> bytes:
        self._total += len(chunk)
        if self._total > MAX_IMPORT_BYTES:
            raise CsvRefused("payload_too_large", f"an import has at most {MAX_IMPORT_BYTES} bytes")
        *ended, last = chunk.split(b"\n")
        if ended:
            longest = max(self._line + len(ended[0]), *(len(part) for part in ended))
            self._line = len(last)
        else:
            longest = self._line = self._line + len(last)
        if max(longest, self._line) > MAX_LINE_BYTES:
            raise CsvRefused("line_too_long", f"a line has at most {MAX_LINE_BYTES} bytes")
        return chunk

    async def header(self) -> list[str]:
        """Read up to the end of the header line and parse it."""
        async for chunk in self._chunks:
            self._pending += self._check(chunk)
            if b"\n" in self._pending:
                line, _, self._pending = self._pending.partition(b"\n")
                return parse_header(line)
        if self._pending:
            return parse_header(self._pending)
        raise CsvRefused("invalid_csv", "the body is empty: send a header line and rows")

    async def rows(self) -> AsyncIterator[bytes]:
        """The bytes after the header, for COPY."""
        if self._pending:
            yield self._pending
        async for chunk in self._chunks:
            yield self._check(chunk)
