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


def test_tables_read_as_rows_of_cells() -> None:
    html = (
        "<table><tr><th>Item</th><th>Qty</th><th>Price</th></tr>"
        "<tr><td>Tea</td><td>2</td><td>R$ 10,00</td></tr>"
        "<tr><td></td><td>Total</td><td><b>R$ 20,00</b></td></tr></table>"
    )
    assert html_to_text(html) == "Item | Qty | Price\nTea | 2 | R$ 10,00\nTotal | R$ 20,00"


def test_layout_tables_do_not_scatter_separators() -> None:
    html = "<table><tr><td><p>Hello</p><p>World</p></td><td></td></tr></table>"
    assert html_to_text(html) == "Hello\n\nWorld"


def test_ordered_lists_are_numbered_and_nested_lists_keep_their_own_count() -> None:
    html = "<ol><li>first</li><li>second<ul><li>detail</li></ul></li><li>third</li></ol>"
    assert html_to_text(html) == "1. first\n\n2. second\n\n- detail\n\n3. third"


def test_headings_are_underlined_and_images_speak_their_alt_text() -> None:
    html = '<h1>Your order</h1><h2>Items</h2><h3>Tea</h3><p><img src="x.png" alt="ACME logo"></p>'
    assert html_to_text(html) == "Your order\n==========\n\nItems\n-----\n\nTea\n\nACME logo"
