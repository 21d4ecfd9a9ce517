"""Locale-aware filters: the render's locale decides how dates, times, numbers and money read."""

from __future__ import annotations

from typing import Any

import pytest

from libs.template_engine import render_version
from libs.templates import LocaleContent, TemplateVersion
from schemas.common import Problem
from schemas.pipeline import RenderedContent

NBSP = "\xa0"


def render(source: str, locale: str, **data: Any) -> RenderedContent | Problem:
    tpl = TemplateVersion(
        tenant_id="t-1",
        alias="bill",
        version=1,
        default_locale=locale,
        contents={locale: LocaleContent(subject="s", text=source)},
    )
    return render_version(tpl, None, data, locale)


def text(source: str, locale: str, **data: Any) -> str:
    result = render(source, locale, **data)
    assert isinstance(result, RenderedContent), result
    assert result.text is not None
    return result.text


@pytest.mark.parametrize(
    ("locale", "money"),
    [("pt-BR", f"R${NBSP}1.234,50"), ("en", "R$1,234.50"), ("de", f"1.234,50{NBSP}R$")],
)
def test_money_reads_as_the_locale_writes_it(locale: str, money: str) -> None:
    assert text("{{ total | money('BRL') }}", locale, total=1234.5) == money
    assert text("{{ total | currency('brl') }}", locale, total="1234.50") == money


def test_numbers_and_percentages() -> None:
    assert (
        text("{{ n | number }} {{ n | decimal }} {{ r | percent }}", "pt-BR", n=1234.5, r=0.25)
        == "1.234,5 1.234,5 25%"
    )
    assert text("{{ n | number }} {{ r | percent }}", "en", n=1234567, r=0.075) == "1,234,567 8%"


def test_dates_and_times_from_iso_strings_in_a_time_zone() -> None:
    at = "2026-03-01T15:30:00Z"
    assert text("{{ at | date('long') }}", "en", at=at) == "March 1, 2026"
    assert text("{{ at | date('long') }}", "pt-BR", at=at) == "1 de março de 2026"
    assert text("{{ at | time(tz='America/Sao_Paulo') }}", "pt-BR", at=at) == "12:30"
    assert text("{{ at | datetime('short', tz='Asia/Tokyo') }}", "en", at=at) == (
        "3/2/26, 12:30\u202fAM"  # CLDR's narrow no-break space
    )
    assert text("{{ day | date('full') }}", "fr", day="2026-03-01") == "dimanche 1 mars 2026"


def test_an_unknown_region_falls_back_to_its_language() -> None:
    assert text("{{ n | number }}", "pt-XX", n=1234.5) == "1.234,5"


@pytest.mark.parametrize(
    ("source", "data", "reason"),
    [
        ("{{ at | date }}", {"at": "yesterday"}, "date: 'yesterday' is not an ISO 8601 date"),
        ("{{ at | time }}", {"at": "2026-03-01"}, "time: '2026-03-01' has no time of day"),
        (
            "{{ at | datetime(tz='Mars/Olympus') }}",
            {"at": "2026-03-01T10:00:00"},
            "not a time zone",
        ),
        ("{{ n | number }}", {"n": "12abc"}, "number: '12abc' is not a number"),
        ("{{ n | money('BRL') }}", {"n": True}, "money: True is not a number"),
        ("{{ n | money('reais') }}", {"n": 1}, "'reais' is not an ISO 4217 currency code"),
        ("{{ n | percent }}", {"n": "NaN"}, "percent: 'NaN' is not a number"),
    ],
)
def test_bad_input_is_a_render_failure_with_the_reason(
    source: str, data: dict[str, Any], reason: str
) -> None:
    result = render(source, "en", **data)
    assert isinstance(result, Problem) and result.code == "render_failed"
    assert "FilterInputError: " in result.detail and reason in result.detail
