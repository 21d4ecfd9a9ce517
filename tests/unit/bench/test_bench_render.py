"""The render scenario runs in-process and reports its split: a small run stays runnable."""

from __future__ import annotations

from tests.bench.render import render_bench, render_goals, render_report


def test_a_small_render_run_reports_rate_and_split() -> None:
    figures = render_bench(20)
    assert figures["messages"] == 20
    assert figures["render_us_per_message"] > 0 and figures["mime_us_per_message"] > 0
    assert figures["mean_message_bytes"] > 1000  # both parts, the layout, the headers
    [(_, goal)] = render_goals(figures)
    assert goal.startswith("render + MIME of an OTP in a layout >= 2000/s: ")
    assert "render" in render_report(figures)
