"""Issue 9's edge cases: each renders, or fails with a clear reason, and every rendered message
parses back with the standard library's ``email`` parser with the parts it should have."""

from __future__ import annotations

import time
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from typing import Any

import pytest

from libs.sendable import MAX_SUBJECT_CHARS, parse_mailbox
from libs.template_engine import render_version
from libs.templates import LayoutVersion, LocaleContent, TemplateVariable, TemplateVersion
from schemas.common import Problem
from schemas.pipeline import RenderedContent
from services.sender.mime import build_message
from tests.unit.sender.jobs import delivery_job

LAYOUT = LayoutVersion(
    tenant_id="t-1",
    alias="brand",
    version=1,
    html="<html><head><title>{{ brand }}</title></head><body>{{ content }}"
    "<footer>{{ brand }} · {{ locale }}</footer></body></html>",
    text="{{ content }}\n\n-- {{ brand }}",
)


def version(contents: dict[str, LocaleContent], **fields: Any) -> TemplateVersion:
    return TemplateVersion(tenant_id="t-1", alias="welcome", version=7, contents=contents, **fields)


WELCOME = version(
    {
        "en": LocaleContent(
            subject="Welcome, {{ name }}{% if plan %} ({{ plan }}){% endif %}",
            html="<h1>Hi {{ name }}</h1><p>Visit <a href='{{ link }}'>your page</a></p>",
        ),
        "ar": LocaleContent(subject="مرحبا {{ name }}", html="<p>مرحبا {{ name }}</p>"),
        "he": LocaleContent(
            subject="שלום {{ name }}",
            html='<html lang="he"><body><p>שלום {{ name }}</p></body></html>',
            text="שלום {{ name }}",
        ),
    },
    variables=[
        TemplateVariable(name="name"),
        TemplateVariable(name="link", required=False, default="https://example.test/me"),
        TemplateVariable(name="plan", required=False),
        TemplateVariable(name="brand", required=False, default="ACME"),
    ],
)


def rendered(data: dict[str, Any], locale: str | None = None) -> RenderedContent:
    result = render_version(WELCOME, LAYOUT, data, locale)
    assert isinstance(result, RenderedContent), result
    return result


def parsed(
    content: RenderedContent, recipient: str = "success@simulator.sendarix.test"
) -> EmailMessage:
    """The message the sender would write for ``content``, read back by the standard parser."""
    raw = build_message(delivery_job(parse_mailbox(recipient), content=content))
    assert isinstance(raw, bytes), raw
    message = BytesParser(policy=default_policy).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    assert message.defects == []
    return message


def assert_parses_back(
    content: RenderedContent, recipient: str = "success@simulator.sendarix.test"
) -> EmailMessage:
    message = parsed(content, recipient)
    assert message["Subject"] == content.subject
    assert message.get_content_type() == "multipart/alternative"
    parts = {part.get_content_type(): part for part in message.iter_parts()}
    assert list(parts) == ["text/plain", "text/html"]
    for kind, body in (("text/plain", content.text), ("text/html", content.html)):
        assert body is not None
        read = parts[kind].get_content()
        assert read.replace("\r\n", "\n").rstrip("\n") == body.replace("\r\n", "\n").rstrip("\n")
    return message


def test_very_long_names_keep_the_subject_one_bounded_line_and_the_body_whole() -> None:
    name = "Maximiliana-Wolfeschlegelsteinhausenbergerdorff " * 40
    content = rendered({"name": name})
    assert len(content.subject) == MAX_SUBJECT_CHARS and "\n" not in content.subject
    assert content.html is not None and name.strip() in content.html
    assert_parses_back(content)


def test_missing_optional_data_renders_with_defaults() -> None:
    content = rendered({"name": "Ana"})
    assert content.subject == "Welcome, Ana"  # plan: optional without default, so empty
    assert content.html is not None
    assert "href='https://example.test/me'" in content.html and "ACME" in content.html
    assert_parses_back(content)


def test_emoji_survive_subject_bodies_and_mime() -> None:
    content = rendered({"name": "Zoë 👩🏽‍💻", "plan": "🚀 Pro", "brand": "ACME ✉️"})
    assert content.subject == "Welcome, Zoë 👩🏽‍💻 (🚀 Pro)"
    assert content.text is not None and "-- ACME ✉️" in content.text
    assert_parses_back(content)


def test_right_to_left_locales_mark_the_html_direction() -> None:
    arabic = rendered({"name": "ليلى"}, "ar-EG")
    assert arabic.locale == "ar"
    assert arabic.html is not None and arabic.html.startswith('<html dir="rtl"><head>')
    hebrew = render_version(WELCOME, None, {"name": "נועה"}, "he")
    assert isinstance(hebrew, RenderedContent)
    assert hebrew.html == '<html dir="rtl" lang="he"><body><p>שלום נועה</p></body></html>'
    bare = render_version(WELCOME, None, {"name": "ليلى"}, "ar")
    assert isinstance(bare, RenderedContent)
    assert bare.html == '<div dir="rtl"><p>مرحبا ليلى</p></div>'
    own = version({"fa": LocaleContent(subject="s", html='<html dir="ltr">x</html>')})
    kept = render_version(own.model_copy(update={"default_locale": "fa"}), None, {}, "fa")
    assert isinstance(kept, RenderedContent) and kept.html == '<html dir="ltr">x</html>'
    for content in (arabic, hebrew):
        assert_parses_back(content)


def test_idn_domains_in_addresses_and_links() -> None:
    content = rendered({"name": "José", "link": "https://bücher.example/josé?q=ü"})
    assert content.html is not None and "https://bücher.example/josé?q=ü" in content.html
    message = assert_parses_back(content, "José <jose@bücher.example>")
    assert message["To"].addresses[0].domain == "xn--bcher-kva.example"


def test_html_in_data_is_escaped_in_html_only_also_inside_the_layout() -> None:
    content = rendered({"name": "<script>alert(1)</script>", "brand": "Tom & Jerry"})
    assert content.html is not None and "<script>" not in content.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in content.html
    assert "Tom &amp; Jerry" in content.html
    assert content.subject == "Welcome, <script>alert(1)</script>"
    assert content.text is not None and content.text.endswith("-- Tom & Jerry")
    assert_parses_back(content)


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "access to attribute '__class__'"),
        ("{{ cycler.__init__.__globals__ }}", "access to attribute '__init__'"),
        ("{{ self._TemplateReference__context }}", "access to attribute '_TemplateReference"),
        ("{{ namespace.__init__.__globals__['os'] }}", "access to attribute '__init__'"),
        ("{% set l = [] %}{{ l.append(1) }}", "access to attribute 'append'"),
        ("{{ name.format.__globals__ }}", "access to attribute '__globals__'"),
        ("{{ config }}{{ request }}", "UndefinedError: 'config' is undefined"),
    ],
)
def test_sandbox_escapes_fail_safely_with_the_reason(source: str, reason: str) -> None:
    tpl = version({"en": LocaleContent(subject="s", text=source)})
    result = render_version(tpl, None, {"name": "x"}, None)
    assert isinstance(result, Problem) and result.code == "render_failed"
    assert result.detail.startswith("template 'welcome' v7, locale en, text: ")
    assert reason in result.detail


@pytest.mark.parametrize(
    "source",
    [
        "{{ 'x' * 10**9 }}",
        "{{ [0] * 10**9 }}",
        "{{ 2 ** 1000000000 }}",
        "{{ range(10**9) | list }}",
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(60) }}",
        "{% for i in range(100000) %}{{ 'x' * 10000 }}{% endfor %}",
        "{{ 'x' | center(1000000000) }}",
        "{{ 'x'.center(1000000000) }}",
        "{{ ('a\n' * 100000) | indent(100000) }}",
        "{{ 'a b' | wordwrap(1000000000) }}",
        "{{ 'a b' | truncate(1000000000) }}",
        "{{ '%1000000000s' | format('x') }}",
        "{{ '{:>1000000000}'.format('x') }}",
        "{{ '%1000000000s' % 'x' }}",
        "{{ (range(100000) | list) | join('y' * 100000) }}",
        "{{ ('x' * 100000) | replace('', 'y' * 1000) }}",
        "{{ [1] | batch(1000000000, 'x') | list }}",
        "{% set ns = namespace(s='xx') %}{% for i in range(100) %}"
        "{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
        "{% set ns = namespace(l=[]) %}{% for i in range(100000) %}"
        "{% set ns.l = ns.l + ['y' * 10000000] %}{% endfor %}",
    ],
)
def test_time_and_size_limits_stop_runaway_templates_fast(source: str) -> None:
    tpl = version({"en": LocaleContent(subject="s", text=source)})
    started = time.perf_counter()
    result = render_version(tpl, None, {}, None)
    assert time.perf_counter() - started < 2  # the budget is 250 ms; slack for a busy machine
    assert isinstance(result, Problem) and result.code == "render_limit_exceeded", result
    assert "welcome" in result.detail and "text" in result.detail


def test_limits_leave_ordinary_templates_alone() -> None:
    source = (
        "{% set ns = namespace(total=0) %}{% for item in items %}{% set ns.total = ns.total"
        " + item.price %}{{ loop.index }}. {{ item.name | title | center(20) }}"
        " {{ '%8.2f' | format(item.price) }}\n{% endfor %}{{ ns.total }}"
        " {{ range(3) | join(',') }} {{ 'a-b' | replace('-', '+') }}"
    )
    tpl = version({"en": LocaleContent(subject="s", text=source)})
    items = [{"name": f"item {n}", "price": n} for n in range(1000)]
    result = render_version(tpl, None, {"items": items}, None)
    assert isinstance(result, RenderedContent), result
    assert result.text is not None and result.text.endswith("499500 0,1,2 a+b")
