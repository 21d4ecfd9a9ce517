"""The suppression CSV: export lines, the import's header, and the guard on its bytes."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from libs.suppression_csv import (
    MAX_LINE_BYTES,
    CsvRefused,
    GuardedBody,
    export_lines,
    guarded,
    header_line,
    parse_header,
)
from libs.suppressions import Suppression, SuppressionReason
from schemas.common import Stream


def test_an_export_reads_back_with_its_header() -> None:
    rows = [
        Suppression(
            "t", "a@example.org", Stream.BROADCAST, SuppressionReason.MANUAL, note='say "hi", ok'
        ),
        Suppression(
            "t",
            "b@example.org",
            Stream.TRANSACTIONAL,
            SuppressionReason.REPEATED_SOFT_BOUNCE,
            expires_at=datetime(2030, 1, 1, tzinfo=UTC),
        ),
    ]
    read = list(csv.DictReader(io.StringIO(header_line() + export_lines(rows))))
    assert [(r["address"], r["stream"], r["note"]) for r in read] == [
        ("a@example.org", "broadcast", 'say "hi", ok'),
        ("b@example.org", "transactional", ""),
    ]
    assert read[1]["expires_at"] == "2030-01-01T00:00:00+00:00"
    assert parse_header(header_line().encode())[0] == "address"


def test_a_cell_a_spreadsheet_would_run_is_guarded() -> None:
    formula = Suppression(
        "t", "=cmd|'/c calc'!a0@x.co", Stream.BROADCAST, SuppressionReason.COMPLAINT, note="+1 2"
    )
    [row] = list(csv.reader(io.StringIO(export_lines([formula]))))
    assert row[0] == "'=cmd|'/c calc'!a0@x.co" and row[6] == "'+1 2"
    assert guarded("a@example.org") == "a@example.org"


@pytest.mark.parametrize(
    "line", [b"stream,note", b"address,address", b"address,colour", b"\xff\xfe"]
)
def test_a_header_without_address_or_with_unknown_columns_is_refused(line: bytes) -> None:
    with pytest.raises(CsvRefused) as refused:
        parse_header(line)
    assert refused.value.code == "invalid_csv"


def test_a_header_may_have_a_byte_order_mark_and_any_case() -> None:
    assert parse_header("\ufeffAddress, Stream\r".encode()) == ["address", "stream"]


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def drained(body: GuardedBody) -> bytes:
    return b"".join([chunk async for chunk in body.rows()])


async def test_the_header_is_split_off_and_the_rest_streams_as_it_came() -> None:
    body = GuardedBody(chunks(b"addr", b"ess,stre", b"am\na@example.org,", b"broadcast\n"))
    assert await body.header() == ["address", "stream"]
    assert await drained(body) == b"a@example.org,broadcast\n"


async def test_a_line_too_long_is_refused_even_across_chunks() -> None:
    half = b"x" * (MAX_LINE_BYTES // 2 + 1)
    body = GuardedBody(chunks(b"address\n", half, half, b"\n"))
    await body.header()
    with pytest.raises(CsvRefused) as refused:
        await drained(body)
    assert refused.value.code == "line_too_long"
    fine = GuardedBody(chunks(b"address\n", half + b"\n" + half, b"\n"))
    await fine.header()
    assert len(await drained(fine)) == 2 * len(half) + 2


async def test_an_empty_body_is_refused() -> None:
    with pytest.raises(CsvRefused):
        await GuardedBody(chunks()).header()
