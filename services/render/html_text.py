"""The plain-text part of a message that only has HTML: readable text, links kept as URLs."""

from __future__ import annotations

import re
from html.parser import HTMLParser

BLOCK_TAGS = frozenset(
    {
        "address", "article", "aside", "blockquote", "dd", "div", "dl", "dt", "footer",
        "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "li", "main", "nav", "ol",
        "p", "pre", "section", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "ul",
    }
)  # fmt: skip
"""Elements whose content stands on lines of its own."""

LINE_BREAK_TAGS = frozenset({"br", "hr"})
"""Empty elements that end the current line (``<br>`` and ``<br/>`` alike)."""

HIDDEN_TAGS = frozenset({"head", "script", "style", "template", "title"})
"""Elements whose content a reader never sees."""

LINK_SCHEMES = ("http://", "https://", "mailto:")
HTML_SPACE = re.compile(r"[ \t\n\r\f]+")
"""HTML's white space (a no-break space is content, not layout)."""


class _TextCollector(HTMLParser):
    """Collects visible text; block elements break lines, links append their URL."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0
        self._links: list[tuple[str | None, int]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in HIDDEN_TAGS:
            self._hidden += 1
        elif tag in BLOCK_TAGS or tag in LINE_BREAK_TAGS:
            self.parts.append("\n")
            if tag == "li":
                self.parts.append("- ")
        elif tag == "a":
            href = dict(attrs).get("href")
            safe = href if href and href.strip().lower().startswith(LINK_SCHEMES) else None
            self._links.append((safe, len(self.parts)))

    def handle_endtag(self, tag: str) -> None:
        if tag in HIDDEN_TAGS:
            self._hidden = max(0, self._hidden - 1)
        elif tag in BLOCK_TAGS:
            self.parts.append("\n")
        elif tag == "a" and self._links:
            href, start = self._links.pop()
            label = "".join(self.parts[start:])
            if href and href.strip().removeprefix("mailto:") not in label:
                self.parts.append(f" ({href.strip()})")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(HTML_SPACE.sub(" ", data))


def html_to_text(html: str) -> str:
    """Plain text for ``html``: tags dropped, entities decoded, one blank line at most."""
    collector = _TextCollector()
    collector.feed(html)
    collector.close()
    lines = [line.strip() for line in "".join(collector.parts).split("\n")]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()
