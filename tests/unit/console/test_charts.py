"""The server-drawn SVG charts: points where the values are, gaps left open, every number also
in words and in a table, nothing from the data written unescaped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from xml.etree import ElementTree

import pytest

from services.console.charts import (
    HEIGHT,
    LEFT,
    TOP,
    WIDTH,
    Chart,
    Series,
    draw,
    milliseconds,
    nice_ceiling,
    percent,
    summary,
    table_rows,
)

SINCE = datetime(2026, 11, 30, 0, 0, tzinfo=UTC)
UNTIL = SINCE + timedelta(hours=4)


def _at(hours: int) -> datetime:
    return SINCE + timedelta(hours=hours)


def _chart(*series: Series) -> Chart:
    return Chart("Rates", "Rate", SINCE, UNTIL, series, percent)


def _parsed(chart: Chart) -> ElementTree.Element:
    return ElementTree.fromstring(str(draw(chart, "chart-0")))


@pytest.mark.parametrize(
    ("value", "ceiling"),
    [
        (0, 1.0),
        (-3, 1.0),
        (0.8, 1.0),
        (0.25, 0.5),
        (0.012, 0.02),
        (1.0, 1.0),
        (340, 500),
        (2001, 5000),
    ],
)
def test_the_axis_ends_at_a_round_number_at_or_above_the_largest_value(
    value: float, ceiling: float
) -> None:
    assert nice_ceiling(value) == pytest.approx(ceiling)


def test_each_value_is_a_point_at_its_time_and_height() -> None:
    delivered = Series("Delivered", "#1b7f3b", ((_at(0), 1.0), (_at(2), 0.5), (_at(4), 0.0)))
    svg = _parsed(_chart(delivered))

    [group] = svg.findall("g[@data-series='Delivered']")
    dots = group.findall("circle")
    assert [dot.get("data-value") for dot in dots] == ["1", "0.5", "0"]
    assert [float(dot.get("cx", "")) for dot in dots] == [LEFT, (LEFT + WIDTH - 16) / 2, WIDTH - 16]
    bottom = HEIGHT - 48
    assert [float(dot.get("cy", "")) for dot in dots] == [TOP, (TOP + bottom) / 2, bottom]
    assert [dot.findtext("title") for dot in dots][1] == "Delivered at 2026-11-30T02:00Z: 50.0%"
    [line] = group.findall("polyline")
    assert len(line.get("points", "").split()) == 3


def test_a_bucket_without_a_value_breaks_the_line() -> None:
    bounced = Series(
        "Bounced", "#b3261e", ((_at(0), 0.1), (_at(1), 0.2), (_at(2), None), (_at(3), 0.1))
    )
    group = _parsed(_chart(bounced)).find("g[@data-series='Bounced']")
    assert group is not None
    assert len(group.findall("circle")) == 3
    assert [len(p.get("points", "").split()) for p in group.findall("polyline")] == [2]


def test_the_chart_says_its_numbers_in_words_and_in_a_table() -> None:
    chart = Chart(
        "Latency",
        "ms",
        SINCE,
        UNTIL,
        (
            Series("p50", "#000", ((_at(0), 120.0), (_at(1), 80.0))),
            Series("p99", "#111", ((_at(1), 2500.0),)),
        ),
        milliseconds,
    )
    svg = _parsed(chart)
    assert svg.get("role") == "img"
    assert svg.findtext("title") == "Latency"
    label = svg.get("aria-label", "")
    assert label == summary(chart)
    assert "p50 latest 80 ms, min 80 ms, max 120 ms over 2 buckets" in label
    assert "p99 latest 2.50 s" in label
    assert table_rows(chart) == [
        ("2026-11-30T00:00Z", ["120 ms", ""]),
        ("2026-11-30T01:00Z", ["80 ms", "2.50 s"]),
    ]


def test_an_empty_chart_still_has_axes_and_says_it_has_no_data() -> None:
    svg = _parsed(_chart(Series("Delivered", "#1b7f3b", ())))
    assert svg.findall(".//circle") == []
    assert svg.findall("g[@class='axes']/text")
    assert "Delivered: no data" in svg.get("aria-label", "")


def test_names_are_escaped() -> None:
    hostile = Series('<script>alert("x")</script>', "#000", ((_at(1), 0.5),))
    markup = str(draw(_chart(hostile), "chart-0"))
    assert "<script>" not in markup
    assert _parsed(_chart(hostile)).find("g[@class='series']") is not None
