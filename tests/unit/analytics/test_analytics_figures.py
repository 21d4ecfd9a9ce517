"""The shared analytics vocabulary: buckets, latency bins and percentiles, rates."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone

import pytest

from libs.analytics import (
    LATENCY_BINS,
    LATENCY_EDGES_MS,
    Granularity,
    bucket_start,
    latency_bin,
    percentile,
    rates,
)

MOMENT = datetime(2026, 3, 14, 15, 9, 26, 535_000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("granularity", "start"),
    [
        (Granularity.MINUTE, datetime(2026, 3, 14, 15, 9, tzinfo=UTC)),
        (Granularity.HOUR, datetime(2026, 3, 14, 15, tzinfo=UTC)),
        (Granularity.DAY, datetime(2026, 3, 14, tzinfo=UTC)),
    ],
)
def test_a_moment_falls_in_the_bucket_that_starts_before_it(
    granularity: Granularity, start: datetime
) -> None:
    assert bucket_start(MOMENT, granularity) == start
    assert bucket_start(start, granularity) == start


def test_buckets_are_utc_whatever_the_offset_of_the_moment() -> None:
    local = MOMENT.astimezone(timezone(timedelta(hours=-5)))

    assert bucket_start(local, Granularity.DAY) == datetime(2026, 3, 14, tzinfo=UTC)


def test_latency_bins_span_ten_ms_to_a_day_log_spaced() -> None:
    assert len(LATENCY_EDGES_MS) == LATENCY_BINS
    assert LATENCY_EDGES_MS[0] == pytest.approx(10)
    assert LATENCY_EDGES_MS[-1] == pytest.approx(86_400_000)
    ratios = {round(b / a, 6) for a, b in itertools.pairwise(LATENCY_EDGES_MS)}
    assert len(ratios) == 1


def test_a_latency_falls_in_the_first_bin_whose_upper_edge_holds_it() -> None:
    assert latency_bin(0) == 0
    assert latency_bin(10) == 0
    assert latency_bin(10.01) == 1
    assert latency_bin(LATENCY_EDGES_MS[20]) == 20
    assert latency_bin(LATENCY_EDGES_MS[20] + 0.001) == 21
    assert latency_bin(10**12) == LATENCY_BINS - 1


def test_percentiles_of_a_histogram_are_close_to_the_latencies_it_holds() -> None:
    latencies = [100.0 + i for i in range(900)] + [5000.0 + 10 * i for i in range(100)]
    histogram: dict[int, int] = {}
    for latency in latencies:
        histogram[latency_bin(latency)] = histogram.get(latency_bin(latency), 0) + 1

    p50, p99 = percentile(histogram, 0.5), percentile(histogram, 0.99)

    assert p50 is not None and p99 is not None
    assert 550 * 0.75 < p50 < 550 * 1.25
    assert 5900 * 0.75 < p99 < 5900 * 1.25
    assert percentile(histogram, 1.0) == pytest.approx(LATENCY_EDGES_MS[latency_bin(5990)])


def test_an_empty_histogram_has_no_percentile() -> None:
    assert percentile({}, 0.99) is None
    assert percentile({3: 0}, 0.5) is None


def test_rates_say_what_they_divide_and_none_without_a_denominator() -> None:
    counts = {"delivered": 90, "bounced": 10, "failed": 0, "complained": 1, "deferred": 25}

    assert rates(counts) == {
        "delivery": 0.9,
        "bounce": 0.1,
        "complaint": pytest.approx(1 / 90),
        "deferral": 0.2,
    }
    assert rates({"accepted": 5}) == {
        "delivery": None,
        "bounce": None,
        "complaint": None,
        "deferral": None,
    }
