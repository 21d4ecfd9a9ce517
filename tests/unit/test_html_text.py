"""html → text: what a reader of the text part should see."""

from __future__ import annotations

from libs.html_text import html_to_text


def test_blocks_become_lines_and_entities_are_decoded() -> None:
    html = "<div>Hello&nbsp;Zoë</div><p>Tom &amp; Jerry &lt;3</p>line<br>break<br/>end"
    assert html_to_text(html) == "Hello\xa0Zoë\n\nTom & Jerry <3\nline\nbreak\nend"


def test_hidden_content_is_dropped() -> None:
    html = "<html><head><title>T</title><style>p{}</style></head><body>"
    html += "<script>alert(1)</script><p>Visible</p></body></html>"
    assert html_to_text(html) == "Visible"


def test_links_keep_their_url_once() -> None:
    html = '<p><a href="https://x.test/reset?t=1">Reset password</a></p>'
    html += '<p><a href="https://x.test/a">https://x.test/a</a></p>'
    html += '<p><a href="javascript:alert(1)">click</a></p>'
    assert html_to_text(html) == (
        "Reset password (https://x.test/reset?t=1)\n\nhttps://x.test/a\n\nclick"
    )


def test_lists_and_source_whitespace() -> None:
    html = "<ul>\n  <li>one\n   item</li>\n  <li>two</li>\n</ul>"
    assert html_to_text(html) == "- one item\n\n- two"


def test_broken_markup_still_gives_text() -> None:
    assert html_to_text("<p>open <b>bold <i>x") == "open bold x"
