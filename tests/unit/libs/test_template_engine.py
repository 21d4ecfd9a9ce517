"""The template engine's public interface: checks on save, the data check, render in a layout
and a locale, and the preview."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from libs.template_engine import (
    DataIssue,
    Preview,
    TemplateIssue,
    check_data,
    check_layout,
    check_version,
    preview,
    render_version,
)
from libs.templates import (
    LayoutVersion,
    LocaleContent,
    TemplateVariable,
    TemplateVersion,
    VariableType,
)
from schemas.common import Problem
from schemas.pipeline import RenderedContent
from schemas.send import SendRequest
from services.ingest.validate import check_request

LAYOUT = LayoutVersion(
    tenant_id="t-1",
    alias="base",
    version=4,
    html="<html><body><h1>ACME</h1>{{ content }}<p>{{ locale }}</p></body></html>",
    text="ACME\n\n{{ content }}\n\n-- ACME",
)
VARIABLES = [
    TemplateVariable(name="code", example="123456"),
    TemplateVariable(name="name", required=False, default="friend", example="Zoë"),
    TemplateVariable(name="total", type=VariableType.NUMBER, required=False, example=1234.5),
]


def version(**contents: LocaleContent) -> TemplateVersion:
    return TemplateVersion(
        tenant_id="t-1",
        alias="otp",
        version=2,
        contents=contents
        or {
            "en": LocaleContent(
                subject="Your code {{ code }}",
                html="<p>Hi {{ name }}, your code is <b>{{ code }}</b></p>",
            ),
            "pt-BR": LocaleContent(
                subject="Seu código {{ code }}",
                html="<p>Olá {{ name }}: {{ code }} ({{ total | money('BRL') }})</p>",
                text="Olá {{ name }}: {{ code }}",
            ),
        },
        variables=VARIABLES,
        layout_alias="base",
        layout_version=4,
    )


def rendered(
    data: dict[str, Any], locale: str | None, layout: LayoutVersion | None = LAYOUT
) -> RenderedContent:
    result = render_version(version(), layout, data, locale)
    assert isinstance(result, RenderedContent), result
    return result


def codes(issues: list[TemplateIssue]) -> list[tuple[str, str, str | None, str | None]]:
    return [(i.code, i.severity, i.locale, i.part) for i in issues]


def test_render_fills_the_layout_in_the_chosen_locale_and_names_what_it_rendered() -> None:
    content = rendered({"code": "42", "total": 1234.5}, "pt-BR")
    assert content.subject == "Seu código 42"
    assert content.html == (
        "<html><body><h1>ACME</h1><p>Olá friend: 42 (R$\xa01.234,50)</p><p>pt-BR</p></body></html>"
    )
    assert content.text == "ACME\n\nOlá friend: 42\n\n-- ACME"
    assert (content.template_version, content.layout_version, content.locale) == (2, 4, "pt-BR")


def test_the_text_of_an_html_only_locale_is_derived_then_framed_by_the_layout() -> None:
    content = rendered({"code": "42", "name": "Ana"}, "fr")
    assert content.locale == "en"
    assert content.text == "ACME\n\nHi Ana, your code is 42\n\n-- ACME"
    assert rendered({"code": "42"}, None, layout=None).layout_version is None


def test_render_failure_names_template_version_locale_part_and_reason() -> None:
    result = render_version(version(), LAYOUT, {"code": "1", "total": "lots"}, "pt-BR")
    assert isinstance(result, Problem) and result.code == "render_failed"
    assert result.detail == (
        "template 'otp' v2, locale pt-BR, html: FilterInputError: money: 'lots' is not a number"
    )


def test_check_version_accepts_a_sound_version() -> None:
    assert check_version(version().contents, VARIABLES, LAYOUT) == []


def test_check_version_reports_syntax_errors_with_line_and_column() -> None:
    contents = {
        "en": LocaleContent(subject="Hi {{ name ", text="line one\n{% for %}"),
        "de": LocaleContent(subject="Hallo", html="<p>{{ name | shout }}</p>"),
    }
    issues = check_version(contents, [], None)
    assert [(i.code, i.locale, i.part, i.line, i.column) for i in issues] == [
        ("syntax_error", "en", "subject", 1, 12),
        ("syntax_error", "en", "text", 2, 8),
        ("unknown_filter", "de", "html", 1, 14),
    ]


def test_check_version_compares_reads_with_declarations() -> None:
    contents = {
        "en": LocaleContent(subject="Hi {{ name }}", text="{{ coupon | default('') }}{{ code }}")
    }
    declared = [TemplateVariable(name="name"), TemplateVariable(name="unused", required=False)]
    assert codes(check_version(contents, declared, None)) == [
        ("undeclared_variable", "error", "en", "text"),  # code
        ("undeclared_variable", "warning", "en", "text"),  # coupon: it has a default
        ("unused_variable", "warning", None, None),
    ]
    assert check_version(contents, [], None) == []  # nothing declared: checked at send time


def test_layouts_need_a_content_slot_in_each_part() -> None:
    assert check_layout(LAYOUT.html, LAYOUT.text) == []
    issues = check_layout("<p>{{ contents }}</p>", "{{ content }}")
    assert codes(issues) == [("missing_layout_slot", "error", None, "layout.html")]
    broken = LAYOUT.model_copy(update={"text": "{% if %}{{ content }}"})
    assert codes(check_version(version().contents, VARIABLES, broken)) == [
        ("syntax_error", "error", None, "layout.text")
    ]


def test_check_data_refuses_missing_required_and_wrongly_typed_values() -> None:
    assert check_data(version(), {"code": "1", "total": 3}, "en") == []
    assert check_data(version(), {"total": True}, "en") == [
        DataIssue(code="missing_template_data", name="code", detail="template 'otp' needs 'code'"),
        DataIssue(
            code="invalid_template_data",
            name="total",
            detail="'total' must be number, not a boolean",
        ),
    ]


def test_check_data_requires_what_undeclared_sources_read_without_a_default() -> None:
    undeclared = version(en=LocaleContent(subject="{{ a }}", text="{{ b | default(1) }}{{ c }}"))
    undeclared = undeclared.model_copy(update={"variables": []})
    assert [issue.name for issue in check_data(undeclared, {"c": 1}, None)] == ["a"]


def test_preview_renders_the_examples_and_warns() -> None:
    tpl = version(
        en=LocaleContent(
            subject="{{ code }} " + "long subject " * 6,
            html='<img src="http://cdn.test/logo.png"><a href="https://ok.test">ok</a>{{ code }}'
            "{{ coupon }}",
        )
    )
    coupon = TemplateVariable(name="coupon", required=False, default="WELCOME")
    tpl = tpl.model_copy(update={"variables": [VARIABLES[0], coupon]})
    result = preview(tpl, None, {"code": "x" * 201}, "en-GB")
    assert isinstance(result, Preview)
    assert [w.code for w in result.warnings] == [
        "missing_optional_data",
        "long_value",
        "long_value",
        "image_without_alt",
        "insecure_link",
        "locale_fallback",
    ]
    examples = preview(version(), LAYOUT, None, "pt-BR")
    assert isinstance(examples, Preview) and examples.warnings == []
    assert examples.content.subject == "Seu código 123456"


@pytest.mark.parametrize(
    ("kind", "good", "bad"),
    [
        (VariableType.STRING, "x", 1),
        (VariableType.NUMBER, 1.5, "1.5"),
        (VariableType.INTEGER, 2, 2.5),
        (VariableType.BOOLEAN, False, 0),
        (VariableType.DATE, "2026-11-29", "29/11/2026"),
        (VariableType.DATETIME, "2026-11-29T20:00:00Z", "tomorrow"),
        (VariableType.LIST, [], {}),
        (VariableType.OBJECT, {}, []),
    ],
)
def test_check_data_checks_each_declared_type(kind: VariableType, good: Any, bad: Any) -> None:
    typed = version(en=LocaleContent(subject="{{ v }}", text="t")).model_copy(
        update={"variables": [TemplateVariable(name="v", type=kind)]}
    )
    assert check_data(typed, {"v": good}, None) == []
    assert [(i.code, i.name) for i in check_data(typed, {"v": bad}, None)] == [
        ("invalid_template_data", "v")
    ]


def test_ingest_refuses_data_that_does_not_fit_with_pointers() -> None:
    request = SendRequest.model_validate(
        {"from": "app@example.test", "to": ["a@example.org"], "template": "otp",
         "data": {"total": "many"}}
    )  # fmt: skip
    found = check_request(request, ["example.test"], version(), datetime.now(UTC))
    assert isinstance(found, list)
    assert [(v.code, v.pointer) for v in found] == [
        ("missing_template_data", "/data/code"),
        ("invalid_template_data", "/data/total"),
    ]
