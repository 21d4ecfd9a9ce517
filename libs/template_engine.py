"""The template engine: check a version when it is saved, check a send's data against it, render
it (inside its layout, in the reader's locale) and preview it.

Ingest (checks on save, the preview, the data check of a send) and render (every message) both
need the same engine, and a service never imports another, so it lives here. Templates are
tenant code: they run in ``libs.template_sandbox`` (Jinja2's sandbox, ``StrictUndefined``, a time
and size budget). Data is HTML-escaped in the html body only: escaping it in the subject or the
text part would show ``&amp;`` to the reader. Inline content (no template) is never evaluated.

Checks on save (``check_version``): a version that declares no variables at all is checked
against its sources at send time, as before variables existed (the names its chosen locale reads
without a default are required), so reading a name it does not declare is no issue; once it
declares some, the declarations are its contract: reading an undeclared name without a default is
an error (every send would fail to render), with a default a warning, and a declared name no
source reads a warning.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from datetime import date, datetime
from functools import lru_cache
from typing import Any, Literal

from jinja2 import TemplateAssertionError, TemplateSyntaxError, meta, nodes
from jinja2.parser import Parser
from markupsafe import Markup

from libs.html_text import audit_html, html_to_text
from libs.sendable import BODY, MAX_MESSAGE_BYTES, MAX_SUBJECT_CHARS, ONE_LINE
from libs.template_filters import text_direction
from libs.template_sandbox import SANDBOXES, RenderBudget, RenderLimitExceeded, render_source
from libs.templates import (
    LayoutVersion,
    LocaleContent,
    TemplateVariable,
    TemplateVersion,
    VariableType,
    best_locale,
)
from schemas.common import Problem, Record
from schemas.pipeline import RenderedContent

RENDER_FAILED = "render_failed"
RENDER_LIMIT_EXCEEDED = "render_limit_exceeded"
CONTENT_TOO_LARGE = "content_too_large"
MISSING_TEMPLATE_DATA = "missing_template_data"
INVALID_TEMPLATE_DATA = "invalid_template_data"
INVALID_TEMPLATE = "invalid_template"

CONTENT_SLOT = "content"
"""The variable a layout puts the template's body in: ``{{ content }}``."""
RESERVED_NAMES = frozenset({"locale", "dir"})
"""Variables the engine sets for every render: the locale rendered and its text direction."""
LONG_VALUE_CHARS = 200
LONG_SUBJECT_CHARS = 78
"""A subject longer than this is cut by most inboxes (and folded by RFC 5322's advice)."""

_DEFAULT_FILTERS = frozenset({"default", "d"})
_DEFINED_TESTS = frozenset({"defined", "undefined"})
_PARSER = SANDBOXES[False]
_HTML_TAG = re.compile(r"<html\b[^>]*>", re.IGNORECASE)
_DIR_ATTRIBUTE = re.compile(r"\sdir\s*=", re.IGNORECASE)
_EMPTY_BY_TYPE: dict[VariableType, Any] = {
    VariableType.STRING: "",
    VariableType.DATE: "",
    VariableType.DATETIME: "",
    VariableType.LIST: [],
    VariableType.OBJECT: {},
    VariableType.BOOLEAN: False,
}
"""What an optional variable with no default renders as when a send leaves it out."""


class TemplateIssue(Record):
    """Something wrong (``error``: the version is refused) or doubtful (``warning``) in a
    template version or layout, located as precisely as the sources allow."""

    code: str
    severity: Literal["error", "warning"]
    detail: str
    locale: str | None = None
    """Which locale's sources (None: the layout's, or the version's as a whole)."""
    part: str | None = None
    """``subject``, ``html``, ``text``, ``layout.html`` or ``layout.text``."""
    line: int | None = None
    column: int | None = None


class DataIssue(Record):
    """Why a send's ``data`` does not fit the template version it will render."""

    code: str
    name: str | None
    """The variable (None: the template itself, e.g. sources that do not parse)."""
    detail: str


class Preview(Record):
    """A version rendered for its author, with what a reader might trip over."""

    content: RenderedContent
    warnings: list[TemplateIssue]


class _SourceError(Exception):
    def __init__(self, code: str, detail: str, line: int | None, column: int | None) -> None:
        super().__init__(detail)
        self.code, self.detail, self.line, self.column = code, detail, line, column


# --- sources: parsing and the names they read ------------------------------------------------


def _column(source: str, line: int | None, token: object) -> int | None:
    """1-based column of ``token``'s text on ``line`` of ``source``, when it is there."""
    lines = source.splitlines()
    if line is None or not 0 < line <= len(lines) or token in (None, ""):
        return None
    found = lines[line - 1].find(str(token))
    return found + 1 if found >= 0 else None


def _parse(source: str) -> nodes.Template:
    """The syntax tree of ``source``, or a ``_SourceError`` with its line and column."""
    parser: Parser | None = None
    try:
        parser = Parser(_PARSER, source)
        tree = parser.parse()
        _PARSER.compile(tree)  # finds unknown filters and tests, which parsing lets through
        return tree
    except TemplateAssertionError as error:
        name = re.search(r"named '([^']+)'", error.message or "")
        code = "unknown_filter" if "filter" in str(error.message) else "unknown_test"
        token = name.group(1) if name else None
        raise _SourceError(
            code if name else "syntax_error",
            str(error.message),
            error.lineno,
            _column(source, error.lineno, token),
        ) from error
    except TemplateSyntaxError as error:
        current = parser.stream.current if parser else None
        if current is not None and current.type == "eof":
            lines = source.splitlines() or [""]
            column: int | None = len(lines[-1]) + 1
        else:
            token = current.value if current and current.lineno == error.lineno else None
            column = _column(source, error.lineno, token)
        raise _SourceError("syntax_error", str(error.message), error.lineno, column) from error


@lru_cache(maxsize=1024)
def _names(source: str) -> tuple[frozenset[str], frozenset[str]]:
    """The data names ``source`` reads, and those of them it reads without a default."""
    tree = _parse(source)
    read = meta.find_undeclared_variables(tree) - set(_PARSER.globals) - RESERVED_NAMES
    return frozenset(read), frozenset(read & set(_unguarded_names(tree)))


def required_variables(subject: str, html: str | None, text: str | None) -> frozenset[str]:
    """The variables a template reads without a default; raises ``TemplateSyntaxError``."""
    required: set[str] = set()
    for source in (subject, html, text):
        if source is not None:
            try:
                required |= _names(source)[1]
            except _SourceError as error:
                raise TemplateSyntaxError(error.detail, error.line or 1) from error
    return frozenset(required)


def _unguarded_names(node: nodes.Node, shielded: frozenset[str] = frozenset()) -> Iterator[str]:
    """Names read where a missing value fails the render.

    ``x | default(...)``, ``x is defined`` and the branch of ``{% if x is defined %}`` that runs
    only when ``x`` exists all tolerate a missing ``x``.
    """
    if isinstance(node, nodes.Name) and node.ctx == "load" and node.name not in shielded:
        yield node.name
    if isinstance(node, nodes.If):
        when_true, when_false = _defined_by(node.test)
        yield from _unguarded_names(node.test, shielded)
        for child in node.body:
            yield from _unguarded_names(child, shielded | when_true)
        for child in (*node.elif_, *node.else_):
            yield from _unguarded_names(child, shielded | when_false)
        return
    for child in node.iter_child_nodes():
        if not _tolerates_absence(node, child):
            yield from _unguarded_names(child, shielded)


def _tolerates_absence(parent: nodes.Node, child: nodes.Node) -> bool:
    return (
        isinstance(child, nodes.Name)
        and child is getattr(parent, "node", None)
        and (
            (isinstance(parent, nodes.Filter) and parent.name in _DEFAULT_FILTERS)
            or (isinstance(parent, nodes.Test) and parent.name in _DEFINED_TESTS)
        )
    )


def _defined_by(test: nodes.Node) -> tuple[frozenset[str], frozenset[str]]:
    """The names an ``if`` test proves defined when it is true, and when it is false."""
    if isinstance(test, nodes.Not):
        when_true, when_false = _defined_by(test.node)
        return when_false, when_true
    if isinstance(test, nodes.Test) and isinstance(test.node, nodes.Name):
        name = frozenset({test.node.name})
        if test.name == "defined":
            return name, frozenset()
        if test.name == "undefined":
            return frozenset(), name
    return frozenset(), frozenset()


# --- checks on save ----------------------------------------------------------------------------


def _parts(contents: LocaleContent) -> dict[str, str | None]:
    return {"subject": contents.subject, "html": contents.html, "text": contents.text}


def _layout_parts(layout: LayoutVersion | None) -> dict[str, str | None]:
    return {} if layout is None else {"layout.html": layout.html, "layout.text": layout.text}


def _source_issues(
    sources: Mapping[str, str | None], locale: str | None
) -> tuple[list[TemplateIssue], dict[str, tuple[frozenset[str], frozenset[str]]]]:
    """Syntax issues of each part, and the names each part that parses reads."""
    issues: list[TemplateIssue] = []
    names: dict[str, tuple[frozenset[str], frozenset[str]]] = {}
    for part, source in sources.items():
        if source is None:
            continue
        try:
            names[part] = _names(source)
        except _SourceError as error:
            issues.append(
                TemplateIssue(
                    code=error.code,
                    severity="error",
                    detail=error.detail,
                    locale=locale,
                    part=part,
                    line=error.line,
                    column=error.column,
                )
            )
    return issues, names


def check_layout(html: str | None, text: str | None) -> list[TemplateIssue]:
    """What is wrong with a layout's sources: syntax, or a part without ``{{ content }}``."""
    issues, names = _source_issues({"layout.html": html, "layout.text": text}, None)
    if html is None and text is None:
        issues.append(
            TemplateIssue(code="empty_layout", severity="error", detail="give html, text or both")
        )
    for part, (read, _) in names.items():
        if CONTENT_SLOT not in read:
            issues.append(
                TemplateIssue(
                    code="missing_layout_slot",
                    severity="error",
                    detail=f"the {part} has no {{{{ {CONTENT_SLOT} }}}} for the template's body",
                    part=part,
                )
            )
    return issues


def check_version(
    contents: dict[str, LocaleContent],
    variables: list[TemplateVariable],
    layout: LayoutVersion | None,
) -> list[TemplateIssue]:
    """Everything wrong or doubtful in a version about to be saved (see the module's doc)."""
    issues = check_layout(layout.html, layout.text) if layout else []
    reads: dict[tuple[str | None, str], tuple[frozenset[str], frozenset[str]]] = {}
    for locale, sources in contents.items():
        found, names = _source_issues(_parts(sources), locale)
        issues += found
        reads |= {(locale, part): read for part, read in names.items()}
    _, layout_names = _source_issues(_layout_parts(layout), None)
    reads |= {(None, part): (read - {CONTENT_SLOT}, unguarded - {CONTENT_SLOT})
              for part, (read, unguarded) in layout_names.items()}  # fmt: skip
    declared = {variable.name for variable in variables}
    if declared:
        issues += _undeclared(reads, declared)
    everything_read = set().union(*(read for read, _ in reads.values()))
    issues += [
        TemplateIssue(
            code="unused_variable",
            severity="warning",
            detail=f"{name!r} is declared but no source reads it",
        )
        for name in sorted(declared - everything_read)
    ]
    return issues


def _undeclared(
    reads: Mapping[tuple[str | None, str], tuple[frozenset[str], frozenset[str]]],
    declared: set[str],
) -> Iterator[TemplateIssue]:
    for (locale, part), (read, unguarded) in reads.items():
        for name in sorted(read - declared):
            guarded = name not in unguarded
            yield TemplateIssue(
                code="undeclared_variable",
                severity="warning" if guarded else "error",
                detail=f"{name!r} is read but not declared"
                + (" (it has a default)" if guarded else ": every send would fail to render"),
                locale=locale,
                part=part,
            )


# --- checks of a send's data -------------------------------------------------------------------


def check_data(
    version: TemplateVersion, data: dict[str, Any], locale: str | None
) -> list[DataIssue]:
    """Why ``data`` cannot render ``version`` in ``locale``: a declared required variable
    missing, a value of the wrong type, or a name the sources need that is neither declared
    nor given (what ingest refuses with 422). Empty: the data fits."""
    sources = version.contents[best_locale(version, locale)]
    try:
        needed = required_variables(sources.subject, sources.html, sources.text)
    except TemplateSyntaxError as error:
        detail = f"template {version.alias!r} v{version.version} does not parse: {error}"
        return [DataIssue(code=INVALID_TEMPLATE, name=None, detail=detail)]
    declared = {variable.name: variable for variable in version.variables}
    required = {name for name, variable in declared.items() if variable.required}
    issues = [
        DataIssue(
            code=MISSING_TEMPLATE_DATA,
            name=name,
            detail=f"template {version.alias!r} needs {name!r}",
        )
        for name in sorted((required | (needed - declared.keys())) - data.keys())
    ]
    for name, variable in declared.items():
        value = data.get(name)
        if value is not None and not _fits(variable.type, value):
            issues.append(
                DataIssue(
                    code=INVALID_TEMPLATE_DATA,
                    name=name,
                    detail=f"{name!r} must be {variable.type.value}, not {_json_type(value)}",
                )
            )
    return issues


def _fits(kind: VariableType, value: Any) -> bool:
    match kind:
        case VariableType.STRING:
            return isinstance(value, str)
        case VariableType.NUMBER:
            return isinstance(value, int | float) and not isinstance(value, bool)
        case VariableType.INTEGER:
            return isinstance(value, int) and not isinstance(value, bool)
        case VariableType.BOOLEAN:
            return isinstance(value, bool)
        case VariableType.DATE:
            return isinstance(value, str) and _parses(date.fromisoformat, value)
        case VariableType.DATETIME:
            return isinstance(value, str) and _parses(datetime.fromisoformat, value)
        case VariableType.LIST:
            return isinstance(value, list)
        case VariableType.OBJECT:
            return isinstance(value, dict)


def _parses(parse: Any, value: str) -> bool:
    try:
        parse(value)
    except ValueError:
        return False
    return True


def _json_type(value: Any) -> str:
    names = {bool: "a boolean", str: "a string", list: "a list", dict: "an object"}
    for kind, name in names.items():
        if isinstance(value, kind):
            return name
    return "a number" if isinstance(value, int | float) else type(value).__name__


# --- rendering ---------------------------------------------------------------------------------


def one_line_subject(subject: str) -> str:
    """``subject`` as one header line of at most ``MAX_SUBJECT_CHARS``.

    Every run of white space (line breaks of any kind too) becomes one space; the controls
    left (NUL, C1, ...) and lone surrogates are dropped.
    """
    words = (ONE_LINE.remove(word) for word in subject.split())
    return " ".join(word for word in words if word)[:MAX_SUBJECT_CHARS].rstrip()


def render_inline(
    subject: str | None, html: str | None, text: str | None
) -> RenderedContent | Problem:
    """Inline content as the sender can write it (never evaluated as a template), or why it is
    too large to carry.

    The text part is derived from the html when only html is given; bodies lose NUL and lone
    surrogates (no database stores the one, no encoder takes the other).
    """
    subject = one_line_subject(subject or "")
    html = None if html is None else BODY.remove(html)
    text = html_to_text(html) if text is None and html is not None else text
    text = None if text is None else BODY.remove(text)
    size = sum(len(part.encode()) for part in (subject, html, text) if part is not None)
    if size > MAX_MESSAGE_BYTES:
        return Problem(
            code=CONTENT_TOO_LARGE,
            detail=f"the rendered content has {size} bytes, at most {MAX_MESSAGE_BYTES}",
        )
    return RenderedContent(subject=subject, html=html, text=text)


def render_data(version: TemplateVersion, data: Mapping[str, Any], locale: str) -> dict[str, Any]:
    """What the sources see: the defaults of declared optional variables the data leaves out,
    the data, and the rendered ``locale`` with its text ``dir``."""
    values = {
        variable.name: variable.default
        if variable.default is not None
        else _EMPTY_BY_TYPE.get(variable.type)
        for variable in version.variables
        if not variable.required and variable.name not in data
    }
    return values | dict(data) | {"locale": locale, "dir": text_direction(locale)}


def with_direction(html: str, direction: str) -> str:
    """``html`` marked right-to-left when ``direction`` is ``rtl``: ``dir`` on its ``<html>``
    element (unless it has one), or a wrapping ``<div dir="rtl">`` when it has none."""
    if direction != "rtl":
        return html
    element = _HTML_TAG.search(html)
    if element is None:
        return f'<div dir="rtl">{html}</div>'
    if _DIR_ATTRIBUTE.search(element.group()):
        return html
    at = element.start() + len("<html")
    return f'{html[:at]} dir="rtl"{html[at:]}'


def render_version(
    version: TemplateVersion,
    layout: LayoutVersion | None,
    data: dict[str, Any],
    locale: str | None,
) -> RenderedContent | Problem:
    """``version`` in the locale that serves ``locale``, merged with ``data`` and put in
    ``layout``, or a problem saying which part broke and why (``render_failed``,
    ``render_limit_exceeded``, ``content_too_large``)."""
    spoken = best_locale(version, locale)
    sources = version.contents[spoken]
    variables = render_data(version, data, spoken)
    budget = RenderBudget()
    part = "subject"
    try:
        subject = render_source(sources.subject, False, variables, budget)
        rendered: dict[str, str | None] = {}
        for part, source in (("html", sources.html), ("text", sources.text)):
            rendered[part] = (
                None if source is None else render_source(source, part == "html", variables, budget)
            )
        html, text = rendered["html"], rendered["text"]
        if layout is not None:
            if text is None and html is not None and layout.text is not None:
                text = html_to_text(html)  # the layout's text frames the body's, not its html
            part = "layout.html"
            html = _in_layout(layout.html, html, True, variables, budget)
            part = "layout.text"
            text = _in_layout(layout.text, text, False, variables, budget)
    except RenderLimitExceeded as error:
        return _problem(RENDER_LIMIT_EXCEEDED, version, spoken, part, str(error))
    except MemoryError:
        return _problem(RENDER_LIMIT_EXCEEDED, version, spoken, part, "out of memory")
    except Exception as error:  # tenant code: any failure is the message's, not the lane's
        return _problem(RENDER_FAILED, version, spoken, part, f"{type(error).__name__}: {error}")
    if html is not None:
        html = with_direction(html, variables["dir"])
    content = render_inline(subject, html, text)
    if isinstance(content, Problem):
        return content
    return content.model_copy(
        update={
            "template_version": version.version,
            "layout_version": layout.version if layout else None,
            "locale": spoken,
        }
    )


def _in_layout(
    wrapper: str | None,
    body: str | None,
    autoescape: bool,
    variables: Mapping[str, Any],
    budget: RenderBudget,
) -> str | None:
    """``body`` in the layout's ``{{ content }}`` (the body as it is when the layout has no
    such part, or there is no body of that kind)."""
    if wrapper is None or body is None:
        return body
    slot = Markup(body) if autoescape else body  # already rendered: never escaped twice
    return render_source(wrapper, autoescape, {**variables, CONTENT_SLOT: slot}, budget)


def _problem(code: str, version: TemplateVersion, locale: str, part: str, why: str) -> Problem:
    return Problem(
        code=code,
        detail=f"template {version.alias!r} v{version.version}, locale {locale}, {part}: {why}",
    )


# --- preview -----------------------------------------------------------------------------------


def preview(
    version: TemplateVersion,
    layout: LayoutVersion | None,
    data: dict[str, Any] | None,
    locale: str | None,
) -> Preview | Problem:
    """``version`` rendered with ``data`` (default: the declared variables' examples; given
    data wins), with warnings about what a reader might trip over."""
    examples = {v.name: v.example for v in version.variables if v.example is not None}
    merged = examples | (data or {})
    content = render_version(version, layout, merged, locale)
    if isinstance(content, Problem):
        return content
    warnings = [
        *_missing_optional(version, merged),
        *_long_values(merged, content),
        *_html_warnings(content.html),
    ]
    if locale and content.locale and locale.lower() != content.locale.lower():
        warnings.append(
            _warning("locale_fallback", f"asked for {locale}, rendered {content.locale}")
        )
    return Preview(content=content, warnings=warnings)


def _warning(code: str, detail: str, part: str | None = None) -> TemplateIssue:
    return TemplateIssue(code=code, severity="warning", detail=detail, part=part)


def _missing_optional(version: TemplateVersion, data: Mapping[str, Any]) -> Iterator[TemplateIssue]:
    for variable in version.variables:
        if not variable.required and variable.name not in data:
            yield _warning(
                "missing_optional_data",
                f"{variable.name!r} is not given: rendered with its default {variable.default!r}",
            )


def _long_values(data: Mapping[str, Any], content: RenderedContent) -> Iterator[TemplateIssue]:
    for name, value in data.items():
        if isinstance(value, str) and len(value) > LONG_VALUE_CHARS:
            yield _warning(
                "long_value", f"{name!r} has {len(value)} characters: check the layout holds it"
            )
    if len(content.subject) > LONG_SUBJECT_CHARS:
        yield _warning(
            "long_value",
            f"the subject has {len(content.subject)} characters: inboxes cut it near"
            f" {LONG_SUBJECT_CHARS}",
            part="subject",
        )


def _html_warnings(html: str | None) -> Iterator[TemplateIssue]:
    if html is None:
        return
    audit = audit_html(html)
    for source in audit.images_without_alt:
        yield _warning("image_without_alt", f"the image {source!r} has no alt text", part="html")
    for url in audit.insecure_urls:
        yield _warning("insecure_link", f"{url!r} is not https", part="html")
