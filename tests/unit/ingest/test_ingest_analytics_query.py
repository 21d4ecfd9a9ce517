"""``GET /v1/analytics`` parameters: defaults, filters, groups, and the ranges refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from libs.analytics import Granularity
from libs.analytics_report import AnalyticsQuery, refusal
from services.ingest.routes_analytics import parse_analytics
from services.ingest.validate import Violation

NOW = datetime(2026, 5, 1, 12, tzinfo=UTC)
MINUTES_KEPT = timedelta(hours=48)


def test_the_default_is_the_last_24_hours_by_hour() -> None:
    assert parse_analytics([], NOW) == AnalyticsQuery(
        since=NOW - timedelta(hours=24), until=NOW, granularity=Granularity.HOUR
    )


def test_filters_and_groups_are_taken_as_given() -> None:
    query = parse_analytics(
        [
            ("since", "2026-04-01T00:00:00Z"),
            ("granularity", "day"),
            ("lane", "critical"),
            ("recipient_domain", "gmail.com"),
            ("group_by", "category,recipient_domain,category"),
        ],
        NOW,
    )

    assert isinstance(query, AnalyticsQuery)
    assert query.since == datetime(2026, 4, 1, tzinfo=UTC)
    assert query.filters == {"lane": "critical", "recipient_domain": "gmail.com"}
    assert query.group_by == ("category", "recipient_domain")


def test_each_bad_parameter_is_named() -> None:
    unknown = parse_analytics([("tenant", "someone-else")], NOW)
    problems = parse_analytics(
        [
            ("granularity", "week"),
            ("group_by", "tenant"),
            ("since", "yesterday"),
            ("template", "otp\x00"),
        ],
        NOW,
    )

    assert isinstance(unknown, list) and [p.pointer for p in unknown] == ["tenant"]
    assert isinstance(problems, list)
    assert all(isinstance(p, Violation) for p in problems)
    assert sorted(p.pointer for p in problems) == ["granularity", "group_by", "since", "template"]


def query(since: datetime, granularity: Granularity, until: datetime = NOW) -> AnalyticsQuery:
    return AnalyticsQuery(since=since, until=until, granularity=granularity)


def test_ranges_of_absurdly_many_buckets_are_refused() -> None:
    assert refusal(query(NOW - timedelta(days=90), Granularity.DAY), NOW, MINUTES_KEPT) is None
    assert refusal(query(NOW - timedelta(days=80), Granularity.HOUR), NOW, MINUTES_KEPT) is None
    too_many = refusal(query(NOW - timedelta(days=90), Granularity.HOUR), NOW, MINUTES_KEPT)
    assert too_many is not None and "at most 2000" in too_many


def test_minutes_are_refused_beyond_their_retention_and_empty_ranges_always() -> None:
    assert refusal(query(NOW - timedelta(hours=30), Granularity.MINUTE), NOW, MINUTES_KEPT) is None
    since = NOW - timedelta(hours=49)
    old = refusal(query(since, Granularity.MINUTE, since + timedelta(hours=1)), NOW, MINUTES_KEPT)
    assert old is not None and "48 hours" in old
    assert refusal(query(NOW, Granularity.DAY), NOW, MINUTES_KEPT) == "until must be after since"
