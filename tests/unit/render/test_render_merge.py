"""Template merge: escaping per part, strict variables, subject shape, inline content as given."""

from __future__ import annotations

from typing import Any

import pytest

from libs.sendable import MAX_MESSAGE_BYTES, MAX_SUBJECT_CHARS
from libs.template_engine import one_line_subject
from libs.template_engine import render_inline as content
from libs.templates import LocaleContent, TemplateVersion
from schemas.common import Problem
from schemas.pipeline import RenderedContent
from services.render.render import render
from tests.records import message_spec as spec


def template(
    subject: str = "Hi", html: str | None = None, text: str | None = None, version: int = 3
) -> TemplateVersion:
    content = LocaleContent(subject=subject, html=html, text=text if html or text else "")
    return TemplateVersion(
        tenant_id="t-1", alias="welcome", version=version, contents={"en": content}
    )


def merged(tpl: TemplateVersion, **data: Any) -> RenderedContent:
    result = render(spec(template=tpl.alias, data=data), tpl)
    assert isinstance(result, RenderedContent), result
    return result


def failure(tpl: TemplateVersion | None, **data: Any) -> Problem:
    result = render(spec(template="welcome", data=data), tpl)
    assert isinstance(result, Problem), result
    assert result.code == "render_failed"
    return result


def test_data_is_escaped_in_html_only() -> None:
    tpl = template(
        subject="Hello {{ name }}", html="<p>Hello {{ name }}</p>", text="Hello {{ name }}"
    )
    content = merged(tpl, name="<b>Tom & Jerry</b>")
    assert content.html == "<p>Hello &lt;b&gt;Tom &amp; Jerry&lt;/b&gt;</p>"
    assert content.text == "Hello <b>Tom & Jerry</b>"
    assert content.subject == "Hello <b>Tom & Jerry</b>"
    assert content.template_version == 3


def test_unicode_data_and_sources_survive() -> None:
    tpl = template(subject="Ваш код {{ code }} ✉", text="こんにちは {{ name }} 👋")
    content = merged(tpl, code="١٢٣", name="Zoë")
    assert content.subject == "Ваш код ١٢٣ ✉"
    assert content.text == "こんにちは Zoë 👋"


def test_missing_optional_data_uses_its_default() -> None:
    tpl = template(subject="Hi {{ name | default('there') }}", text="{{ greeting | default('') }}!")
    content = merged(tpl)
    assert content.subject == "Hi there"
    assert content.text == "!"


def test_missing_variable_is_a_render_failure_naming_it() -> None:
    problem = failure(template(subject="Hi", text="Your code is {{ code }}"))
    assert "'code' is undefined" in problem.detail
    assert "text" in problem.detail and "welcome" in problem.detail


def test_attribute_of_missing_variable_fails_too() -> None:
    problem = failure(template(subject="{{ user.name }}"), other=1)
    assert "undefined" in problem.detail


def test_syntax_error_is_a_render_failure() -> None:
    assert "subject" in failure(template(subject="Hi {{ name ")).detail


def test_runtime_error_in_template_is_a_render_failure() -> None:
    assert "ZeroDivisionError" in failure(template(text="{{ 1 / n }}"), n=0).detail


def test_sandbox_refuses_unsafe_attributes() -> None:
    problem = failure(template(text="{{ ''.__class__.__mro__ }}"))
    assert "unsafe" in problem.detail or "__class__" in problem.detail


def test_missing_template_is_a_render_failure() -> None:
    assert "not found" in failure(None).detail


def test_long_values_go_through_but_the_subject_stays_one_bounded_line() -> None:
    name = "Bartholomew-" * 200
    tpl = template(subject="Welcome,\r\n  {{ name }}\nBcc: evil@example.test", text="{{ name }}")
    content = merged(tpl, name=name)
    assert content.text == name
    assert "\n" not in content.subject and "\r" not in content.subject
    assert len(content.subject) == MAX_SUBJECT_CHARS
    assert content.subject.startswith("Welcome, Bartholomew-")


def test_subject_collapses_every_kind_of_line_break() -> None:
    assert one_line_subject("  a\tb\u2028c\u0085d\n\ne\u2029f\x0bg\x1ch  ") == "a b c d e f g h"


@pytest.mark.parametrize(
    ("subject", "one_line"),
    [
        ("a\x00b", "ab"),
        ("a\x1b[31mred", "a[31mred"),
        ("del\x7f and c1\x80\x9b", "del and c1"),
        ("lone \ud800 surrogate", "lone surrogate"),
        ("\x00 \x01 x \x00", "x"),
        ("Zoë ✓ 名前 \u00a0kept", "Zoë ✓ 名前 kept"),
    ],
)
def test_subject_loses_controls_and_lone_surrogates(subject: str, one_line: str) -> None:
    assert one_line_subject(subject) == one_line


def test_merged_data_cannot_break_the_subject_or_put_nul_in_a_body() -> None:
    tpl = template(subject="Hi {{ name }}", html="<p>{{ name }}</p>", text="{{ name }}!")
    merged_content = merged(tpl, name="Zoë\x00\u2028Bcc: x@example.test\x85")
    assert merged_content.subject == "Hi Zoë Bcc: x@example.test"
    assert merged_content.html == "<p>Zoë\u2028Bcc: x@example.test\x85</p>"
    assert merged_content.text == "Zoë\u2028Bcc: x@example.test\x85!"


def test_bodies_lose_nul_and_lone_surrogates_and_keep_everything_else() -> None:
    result = content("s", "<p>a\x00b\udc00</p>", "line\r\n\tnext\x00")
    assert isinstance(result, RenderedContent)
    assert (result.html, result.text) == ("<p>ab</p>", "line\r\n\tnext")


def test_content_larger_than_a_message_is_a_problem_not_a_record() -> None:
    half = "x" * (MAX_MESSAGE_BYTES // 2)
    assert isinstance(content("s", half, half[: -len("s")]), RenderedContent)
    problem = content("s", half, half)
    assert isinstance(problem, Problem) and problem.code == "content_too_large"
    multibyte = "é" * (MAX_MESSAGE_BYTES // 4 + 1)  # two bytes each in UTF-8
    problem = content("s", multibyte, multibyte)
    assert isinstance(problem, Problem) and problem.code == "content_too_large"


def test_a_template_that_renders_too_much_is_a_problem() -> None:
    tpl = template(html="{{ word * times }}")
    html_and_its_text = {"word": "ab", "times": MAX_MESSAGE_BYTES // 4 + 1}  # within the budget
    result = render(spec(template=tpl.alias, data=html_and_its_text), tpl)
    assert isinstance(result, Problem) and result.code == "content_too_large"
    beyond_the_budget = {"word": "ab", "times": MAX_MESSAGE_BYTES}
    result = render(spec(template=tpl.alias, data=beyond_the_budget), tpl)
    assert isinstance(result, Problem) and result.code == "render_limit_exceeded"


def test_text_part_is_derived_when_template_has_html_only() -> None:
    tpl = template(html="<p>Code: <b>{{ code }}</b></p><p>Thanks</p>")
    content = merged(tpl, code="123456")
    assert content.text == "Code: 123456\n\nThanks"


def test_inline_content_is_used_literally_never_evaluated() -> None:
    result = render(
        spec(subject="Price {{ 1 + 1 }}\n", html="<p>{{ x }}</p>", text="{% raw %}"), None
    )
    assert result == RenderedContent(
        subject="Price {{ 1 + 1 }}", html="<p>{{ x }}</p>", text="{% raw %}"
    )


def test_inline_html_only_gets_a_text_part() -> None:
    result = render(spec(subject="s", html="<h1>Hello</h1><p>world &amp; co</p>"), None)
    assert isinstance(result, RenderedContent)
    assert result.text == "Hello\n=====\n\nworld & co"
