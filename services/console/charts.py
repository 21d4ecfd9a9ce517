"""Line charts over time as inline SVG, drawn on the server.

The console's CSP forbids inline styles and scripts, so a chart is plain SVG elements with
presentation attributes. Every point is a circle that carries its value (``data-value``) and a
``<title>`` tooltip; the chart's accessible name says each series' latest figure, and
``table_rows`` gives the same numbers as a table for screen readers. ElementTree writes the
markup, so every text and attribute is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from xml.etree import ElementTree

from markupsafe import Markup

WIDTH, HEIGHT = 960, 280
LEFT, RIGHT, TOP, BOTTOM = 72, 16, 36, 48
X_TICKS, Y_TICKS = 5, 4


def percent(value: float) -> str:
    """A rate (0-1) as a percentage."""
    return f"{value * 100:.1f}%"


def milliseconds(value: float) -> str:
    """A duration in ms, or in s from a second on."""
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.0f} ms"


def moment(at: datetime) -> str:
    """A time as UTC ISO, to the minute."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")


def tick(at: datetime) -> str:
    """A time on the axis: short enough for six side by side (the year is in the table)."""
    return at.astimezone(UTC).strftime("%m-%d %H:%M")


@dataclass(frozen=True)
class Series:
    """One line: a name, its colour and its values over time (None: nothing to measure)."""

    name: str
    colour: str
    points: tuple[tuple[datetime, float | None], ...]


@dataclass(frozen=True)
class Chart:
    """What to draw: series over ``[since, until)``, values shown with ``unit``."""

    title: str
    y_label: str
    since: datetime
    until: datetime
    series: tuple[Series, ...]
    unit: Callable[[float], str]


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten at or above ``value`` (1 for nothing)."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 5, 10) if step * power >= value * (1 - 1e-9))


def _values(chart: Chart) -> list[float]:
    return [value for series in chart.series for _, value in series.points if value is not None]


def summary(chart: Chart) -> str:
    """The chart in words: each series' latest value, range and number of buckets."""
    parts = []
    for series in chart.series:
        values = [value for _, value in series.points if value is not None]
        if not values:
            parts.append(f"{series.name}: no data")
            continue
        parts.append(
            f"{series.name} latest {chart.unit(values[-1])}, min {chart.unit(min(values))},"
            f" max {chart.unit(max(values))} over {len(values)} buckets"
        )
    return f"{chart.title}. " + "; ".join(parts)


def table_rows(chart: Chart) -> list[tuple[str, list[str]]]:
    """The numbers of the chart by time: a row per bucket, a cell per series ('' for none)."""
    times = sorted({at for series in chart.series for at, _ in series.points})
    by_series = [dict(series.points) for series in chart.series]
    return [
        (
            moment(at),
            [
                chart.unit(value) if (value := values.get(at)) is not None else ""
                for values in by_series
            ],
        )
        for at in times
    ]


def _element(
    parent: ElementTree.Element, tag: str, text: str = "", **attributes: object
) -> ElementTree.Element:
    child = ElementTree.SubElement(
        parent,
        tag,
        {name.rstrip("_").replace("_", "-"): str(value) for name, value in attributes.items()},
    )
    if text:
        child.text = text
    return child


def _runs(points: Sequence[tuple[datetime, float | None]]) -> list[list[tuple[datetime, float]]]:
    """The series split where it has no value, so a gap is not drawn as a line."""
    runs: list[list[tuple[datetime, float]]] = [[]]
    for at, value in sorted(points, key=lambda point: point[0]):
        if value is None:
            runs.append([])
        else:
            runs[-1].append((at, value))
    return [run for run in runs if run]


def draw(chart: Chart, chart_id: str) -> Markup:
    """The chart as an ``<svg>`` element: axes with ticks and labels, a legend, a line per
    series (broken where a bucket has no value) and a circle per point."""
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top_value = nice_ceiling(max(_values(chart), default=0.0))
    span = max((chart.until - chart.since).total_seconds(), 1.0)

    def x(at: datetime) -> float:
        share = (at - chart.since).total_seconds() / span
        return round(LEFT + min(max(share, 0.0), 1.0) * plot_width, 1)

    def y(value: float) -> float:
        return round(TOP + plot_height * (1 - value / top_value), 1)

    svg = ElementTree.Element(
        "svg",
        {
            "class": "chart",
            "viewBox": f"0 0 {WIDTH} {HEIGHT}",
            "role": "img",
            "aria-label": summary(chart),
            "id": chart_id,
        },
    )
    _element(svg, "title", chart.title)
    axes = _element(svg, "g", class_="axes", font_size=12, fill="#5b6475")
    for step in range(Y_TICKS + 1):
        value = top_value * step / Y_TICKS
        _element(
            axes, "line", x1=LEFT, x2=WIDTH - RIGHT, y1=y(value), y2=y(value), stroke="#d9dde5"
        )
        _element(axes, "text", chart.unit(value), x=LEFT - 6, y=y(value) + 4, text_anchor="end")
    for step in range(X_TICKS + 1):
        at = chart.since + (chart.until - chart.since) * step / X_TICKS
        anchor = "start" if step == 0 else "end" if step == X_TICKS else "middle"
        _element(axes, "text", tick(at), x=x(at), y=TOP + plot_height + 18, text_anchor=anchor)
    _element(axes, "line", x1=LEFT, x2=LEFT, y1=TOP, y2=TOP + plot_height, stroke="#5b6475")
    _element(
        axes,
        "text",
        "Time (UTC, start of bucket)",
        x=LEFT + plot_width / 2,
        y=HEIGHT - 6,
        text_anchor="middle",
    )
    middle = TOP + plot_height / 2
    _element(
        axes,
        "text",
        chart.y_label,
        x=14,
        y=middle,
        text_anchor="middle",
        transform=f"rotate(-90 14 {middle})",
    )
    legend_x = float(LEFT)
    for series in chart.series:
        _element(svg, "rect", x=legend_x, y=8, width=12, height=12, fill=series.colour)
        _element(svg, "text", series.name, x=legend_x + 16, y=19, font_size=13, fill="#1d2330")
        legend_x += 28 + 8 * len(series.name)
    for series in chart.series:
        group = _element(
            svg,
            "g",
            class_="series",
            data_series=series.name,
            stroke=series.colour,
            fill=series.colour,
        )
        for run in _runs(series.points):
            if len(run) > 1:
                points = " ".join(f"{x(at)},{y(value)}" for at, value in run)
                _element(group, "polyline", points=points, fill="none", stroke_width=2)
            for at, value in run:
                dot = _element(
                    group,
                    "circle",
                    cx=x(at),
                    cy=y(value),
                    r=3.5,
                    data_value=f"{value:g}",
                    data_time=at.isoformat(),
                )
                _element(dot, "title", f"{series.name} at {moment(at)}: {chart.unit(value)}")
    return Markup(ElementTree.tostring(svg, encoding="unicode"))
