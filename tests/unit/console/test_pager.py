"""The pager of the console's listings: a link only where there is a page to go to."""

from __future__ import annotations

from services.console.rendering import environment

LISTING = (
    '{% from "fields.html" import pager %}{% set listing = "/suppressions?" ~ (wanted|urlencode) %}'
    '{{ pager(listing if paged, listing ~ "&cursor=" ~ (cursor|urlencode) if cursor) }}'
)


def render(**context: object) -> str:
    return environment.from_string(LISTING).render(**context)


def test_a_first_page_with_more_links_only_to_the_next() -> None:
    html = render(wanted={"q": "a b"}, paged=False, cursor="c/1&x")

    assert "First page" not in html
    assert '<a href="/suppressions?q=a+b&amp;cursor=c/1%26x">Next page</a>' in html


def test_a_last_page_links_back_to_the_first_only() -> None:
    html = render(wanted={"q": "x"}, paged=True, cursor=None)

    assert '<a href="/suppressions?q=x">First page</a>' in html
    assert "Next page" not in html


def test_a_single_page_has_no_pager() -> None:
    assert "pager" not in render(wanted={}, paged=False, cursor=None)
