"""HTML read as a person would: the plain-text part of a message that only has HTML, and what a
preview warns about in it (images without alt text, links that are not https)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

BLOCK_TAGS = frozenset(
    {
        "address", "article", "aside", "blockquote", "dd", "div", "dl", "dt", "footer",
        "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "li", "main", "nav", "ol",
        "p", "pre", "section", "table", "tbody", "tfoot", "thead", "tr", "ul",
    }
)  # fmt: skip
"""Elements whose content stands on lines of its own."""

CELL_TAGS = frozenset({"td", "th"})
CELL_SEPARATOR = " | "
"""Between the cells of a table row, which stands on one line."""

LINE_BREAK_TAGS = frozenset({"br", "hr"})
"""Empty elements that end the current line (``<br>`` and ``<br/>`` alike)."""

HIDDEN_TAGS = frozenset({"head", "script", "style", "template", "title"})
"""Elements whose content a reader never sees."""

HEADING_RULES = {"h1": "=", "h2": "-"}
"""Headings underlined in the text, as Setext writes them; lower ones stand on their own line."""

LINK_SCHEMES = ("http://", "https://", "mailto:")
HTML_SPACE = re.compile(r"[ \t\n\r\f]+")
"""HTML's white space (a no-break space is content, not layout)."""


class _TextCollector(HTMLParser):
    """Collects visible text: blocks break lines, table rows are lines of cells, list items are
    bulleted (numbered in ordered lists), links append their URL, headings are underlined."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0
        self._links: list[tuple[str | None, int]] = []
        self._lists: list[int | None] = []  # per open list: next number, None when bulleted
        self._cells: list[int] = []  # per open table row: cells seen
        self._headings: list[int] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in HIDDEN_TAGS:
            self._hidden += 1
        elif tag in CELL_TAGS:
            if self._cells:
                self._cells[-1] += 1
                self.parts.append(CELL_SEPARATOR if self._cells[-1] > 1 else "")
        elif tag in BLOCK_TAGS or tag in LINE_BREAK_TAGS:
            self.parts.append("\n")
            self._open_block(tag)
        elif tag == "a":
            href = dict(attrs).get("href")
            safe = href if href and href.strip().lower().startswith(LINK_SCHEMES) else None
            self._links.append((safe, len(self.parts)))
        elif tag == "img" and (alt := dict(attrs).get("alt")):
            self.parts.append(alt)

    def _open_block(self, tag: str) -> None:
        if tag in ("ol", "ul"):
            self._lists.append(1 if tag == "ol" else None)
        elif tag == "li":
            number = self._lists[-1] if self._lists else None
            if number is None:
                self.parts.append("- ")
            else:
                self.parts.append(f"{number}. ")
                self._lists[-1] = number + 1
        elif tag == "tr":
            self._cells.append(0)
        elif tag in HEADING_RULES:
            self._headings.append(len(self.parts))

    def handle_endtag(self, tag: str) -> None:
        if tag in HIDDEN_TAGS:
            self._hidden = max(0, self._hidden - 1)
        elif tag in BLOCK_TAGS:
            self._close_block(tag)
            if tag != "tr":  # a row ends where the next one starts its line
                self.parts.append("\n")
        elif tag == "a" and self._links:
            href, start = self._links.pop()
            label = "".join(self.parts[start:])
            if href and href.strip().removeprefix("mailto:") not in label:
                self.parts.append(f" ({href.strip()})")

    def _close_block(self, tag: str) -> None:
        if tag in ("ol", "ul") and self._lists:
            self._lists.pop()
        elif tag == "tr" and self._cells:
            self._cells.pop()
        elif tag in HEADING_RULES and self._headings:
            title = " ".join("".join(self.parts[self._headings.pop() :]).split())
            if title:
                self.parts.append("\n" + HEADING_RULES[tag] * len(title))

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(HTML_SPACE.sub(" ", data))


def _tidy(line: str) -> str:
    """A line without its edge spaces, nor the cell separators of empty edge cells."""
    line = line.strip()
    while line.startswith("|") or line.endswith("|"):
        line = line.strip("|").strip()
    return line


def html_to_text(html: str) -> str:
    """Plain text for ``html``: tags dropped, entities decoded, one blank line at most."""
    collector = _TextCollector()
    collector.feed(html)
    collector.close()
    text = "\n".join(_tidy(line) for line in "".join(collector.parts).split("\n"))
    return re.sub(r"\n{3,}", "\n\n", text).strip()


@dataclass
class HtmlAudit:
    """What a reader's mail client may show badly in an html body."""

    images_without_alt: list[str] = field(default_factory=list)
    insecure_urls: list[str] = field(default_factory=list)


class _Auditor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.audit = HtmlAudit()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        url = values.get("href") if tag == "a" else values.get("src") if tag == "img" else None
        if url and url.strip().lower().startswith("http://"):
            self.audit.insecure_urls.append(url.strip())
        if tag == "img" and values.get("alt") is None:  # alt="" marks a decorative image: fine
            self.audit.images_without_alt.append(values.get("src") or "")


def audit_html(html: str) -> HtmlAudit:
    """Images without an ``alt`` attribute and ``http://`` links or image sources in ``html``."""
    auditor = _Auditor()
    auditor.feed(html)
    auditor.close()
    return auditor.audit
