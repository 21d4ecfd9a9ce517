"""Search parameters and cursors: parsed and checked before any SQL, each bad one named."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from schemas.common import Stream
from schemas.events import MessageState
from services.ingest.search import (
    DEFAULT_LIMIT,
    INVALID_PARAMETER,
    Cursor,
    MessageQuery,
    parse_query,
    search_sql,
)
from services.ingest.validate import Violation

MOMENT = datetime(2026, 11, 29, 12, 0, 0, 123456, tzinfo=UTC)


def test_a_cursor_survives_its_round_trip_to_the_microsecond() -> None:
    cursor = Cursor(MOMENT, uuid.uuid4())
    text = cursor.encode()
    assert Cursor.decode(text) == cursor
    assert text.isascii() and "=" not in text and "/" not in text and "+" not in text


def test_a_cursor_keeps_the_offset_of_its_moment() -> None:
    moment = MOMENT.astimezone(timezone(timedelta(hours=-5)))
    decoded = Cursor.decode(Cursor(moment, uuid.uuid4()).encode())
    assert decoded.accepted_at == MOMENT


@pytest.mark.parametrize("text", ["", "???", "bm90IGEgY3Vyc29y", "MjAyNi0xMS0yOXx4"])
def test_anything_else_is_not_a_cursor(text: str) -> None:
    with pytest.raises(ValueError):
        Cursor.decode(text)


def test_no_parameters_ask_for_the_newest_page() -> None:
    assert parse_query([]) == MessageQuery()
    assert MessageQuery().limit == DEFAULT_LIMIT


def test_every_filter_is_parsed() -> None:
    after = Cursor(MOMENT, uuid.uuid4())
    query = parse_query(
        [
            ("recipient", " Jane@Example.ORG "),
            ("status", "delivered"),
            ("stream", "broadcast"),
            ("category", "otp"),
            ("template", "welcome"),
            ("tag", "login"),
            ("tag", "web"),
            ("metadata", "order_id:123"),
            ("metadata", "url:https://x.test/a"),
            ("since", "2026-11-01T00:00:00Z"),
            ("until", "2026-11-29T12:00:00+01:00"),
            ("cursor", after.encode()),
            ("limit", "100"),
        ]
    )
    assert query == MessageQuery(
        recipient="jane@example.org",
        status=MessageState.DELIVERED,
        stream=Stream.BROADCAST,
        category="otp",
        template="welcome",
        tags=("login", "web"),
        metadata=(("order_id", "123"), ("url", "https://x.test/a")),
        since=datetime(2026, 11, 1, tzinfo=UTC),
        until=datetime(2026, 11, 29, 11, tzinfo=UTC),
        after=after,
        limit=100,
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("limit", "0"),
        ("limit", "101"),
        ("limit", "-1"),
        ("limit", "ten"),
        ("limit", "²"),  # a digit to str.isdigit, not to int()
        ("status", "lost"),
        ("stream", "marketing"),
        ("since", "yesterday"),
        ("since", "2026-11-01T00:00:00"),  # no offset: which day is it?
        ("until", "2026-13-01T00:00:00Z"),
        ("cursor", "not-ours"),
        ("metadata", "no_separator"),
        ("metadata", ":value_without_key"),
        ("recipient", "x" * 999),
        ("colour", "blue"),
        ("category", "\x00"),  # the database refuses a NUL: it was a 500 (found by the fuzzer)
        ("template", "otp\n"),
        ("tag", "a\x00b"),
        ("metadata", "plan:\x00"),
    ],
)
def test_a_bad_parameter_is_named(name: str, value: str) -> None:
    violations = parse_query([(name, value)])
    assert isinstance(violations, list)
    [violation] = violations
    assert violation.code == INVALID_PARAMETER
    assert violation.pointer == name
    assert repr(name) in violation.detail


def test_a_single_valued_parameter_given_twice_is_refused() -> None:
    violations = parse_query([("status", "delivered"), ("status", "bounced")])
    once = Violation(INVALID_PARAMETER, "status", "parameter 'status': give it once")
    assert violations == [once]


def test_every_bad_parameter_is_reported() -> None:
    violations = parse_query([("limit", "0"), ("status", "lost"), ("since", "x")])
    assert isinstance(violations, list)
    assert sorted(v.pointer for v in violations) == ["limit", "since", "status"]


def test_the_sql_numbers_each_value_after_the_tenant() -> None:
    after = Cursor(MOMENT, uuid.uuid4())
    query = MessageQuery(
        recipient="a@b.test", status=MessageState.DEFERRED, tags=("x",), after=after, limit=10
    )
    tenant = uuid.uuid4()
    sql, arguments = search_sql(query, tenant)
    assert "tenant_id = $1" in sql
    assert "lower(recipient) = $2" in sql and "status = $3" in sql
    assert "tenant_tags(tenant_id, tags) @> tenant_tags($1, $4::text[])" in sql
    assert "(accepted_at, id) < ($5, $6)" in sql
    assert sql.endswith("ORDER BY accepted_at DESC, id DESC LIMIT $7")
    assert arguments == [tenant, "a@b.test", "deferred", ["x"], MOMENT, after.message_id, 11]


def test_every_tenants_search_has_no_tenant_condition() -> None:
    sql, arguments = search_sql(MessageQuery(recipient="a@b.test", tags=("x",), limit=5), None)
    assert "tenant_id" not in sql
    assert "lower(recipient) = $1" in sql and "tags @> $2::text[]" in sql
    assert arguments == ["a@b.test", ["x"], 6]
    assert search_sql(MessageQuery(limit=5), None) == (
        "SELECT * FROM messages ORDER BY accepted_at DESC, id DESC LIMIT $1",
        [6],
    )


def test_a_tenant_id_parameter_is_a_uuid() -> None:
    tenant = str(uuid.uuid4())
    assert parse_query([("tenant_id", tenant.upper())]) == MessageQuery(tenant_id=tenant)
    violations = parse_query([("tenant_id", "acme")])
    assert isinstance(violations, list)
    assert [violation.pointer for violation in violations] == ["tenant_id"]
