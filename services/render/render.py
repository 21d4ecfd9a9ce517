"""Template merge: a message's spec (and its template) become the subject and bodies to send.

Templates are tenant-written code, so they run in Jinja2's sandbox with ``StrictUndefined``
(a missing variable is an error, not an empty string). Data is HTML-escaped in the html body
only: escaping it in the subject or the text part would show ``&amp;`` to the reader. Inline
content (no template) is used as given and never evaluated as a template.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateError
from jinja2 import Template as JinjaTemplate
from jinja2.sandbox import SandboxedEnvironment

from libs.sendable import BODY, MAX_MESSAGE_BYTES, MAX_SUBJECT_CHARS, ONE_LINE
from libs.templates import TemplateVersion, best_locale
from schemas.common import Problem
from schemas.pipeline import MessageSpec, RenderedContent
from services.render.html_text import html_to_text

RENDER_FAILED = "render_failed"
CONTENT_TOO_LARGE = "content_too_large"


def _environment(autoescape: bool) -> SandboxedEnvironment:
    return SandboxedEnvironment(
        undefined=StrictUndefined, autoescape=autoescape, keep_trailing_newline=True
    )


_ENVIRONMENTS = {escaped: _environment(escaped) for escaped in (False, True)}


@lru_cache(maxsize=512)
def _compiled(source: str, autoescape: bool) -> JinjaTemplate:
    """A compiled template; the same few sources serve every message of a tenant."""
    return _ENVIRONMENTS[autoescape].from_string(source)


def one_line_subject(subject: str) -> str:
    """``subject`` as one header line of at most ``MAX_SUBJECT_CHARS``.

    Every run of white space (line breaks of any kind too) becomes one space; the controls
    left (NUL, C1, ...) and lone surrogates are dropped.
    """
    words = (ONE_LINE.remove(word) for word in subject.split())
    return " ".join(word for word in words if word)[:MAX_SUBJECT_CHARS].rstrip()


def content(
    subject: str, html: str | None, text: str | None, template_version: int | None = None
) -> RenderedContent | Problem:
    """The content to send, as the sender can write it, or why it is too large to carry.

    The text part is derived from the html when only html is given; bodies lose NUL and lone
    surrogates (no database stores the one, no encoder takes the other).
    """
    subject = one_line_subject(subject)
    html = None if html is None else BODY.remove(html)
    text = html_to_text(html) if text is None and html is not None else text
    text = None if text is None else BODY.remove(text)
    size = sum(len(part.encode()) for part in (subject, html, text) if part is not None)
    if size > MAX_MESSAGE_BYTES:
        return Problem(
            code=CONTENT_TOO_LARGE,
            detail=f"the rendered content has {size} bytes, at most {MAX_MESSAGE_BYTES}",
        )
    return RenderedContent(subject=subject, html=html, text=text, template_version=template_version)


def merge(
    template: TemplateVersion, data: dict[str, Any], locale: str | None
) -> RenderedContent | Problem:
    """``template`` in the locale that serves ``locale``, merged with ``data``, or a
    ``render_failed`` problem saying what broke."""
    spoken = best_locale(template, locale)
    sources = template.contents[spoken]
    parts = {"subject": sources.subject, "html": sources.html, "text": sources.text}
    merged: dict[str, str | None] = {}
    for part, source in parts.items():
        if source is None:
            merged[part] = None
            continue
        try:
            merged[part] = _compiled(source, part == "html").render(data)
        except Exception as error:  # tenant code: any failure is the message's, not the lane's
            reason = str(error) if isinstance(error, TemplateError) else repr(error)
            return Problem(
                code=RENDER_FAILED,
                detail=f"template {template.alias!r} v{template.version}, {part}: {reason}",
            )
    rendered = content(merged["subject"] or "", merged["html"], merged["text"], template.version)
    if isinstance(rendered, Problem):
        return rendered
    return rendered.model_copy(update={"locale": spoken})


def render(spec: MessageSpec, template: TemplateVersion | None) -> RenderedContent | Problem:
    """The content of ``spec``: its template merged with its data, or its inline parts as given.

    ``template`` is the one the store returned for ``spec.template`` (None: it does not exist).
    """
    if spec.template is None:
        return content(spec.subject or "", spec.html, spec.text)
    if template is None:
        locale = spec.locale or "the default locale"
        return Problem(
            code=RENDER_FAILED, detail=f"template {spec.template!r} not found for {locale}"
        )
    return merge(template, spec.data, spec.locale)
