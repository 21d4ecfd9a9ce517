"""Template merge: a message's spec (and its template version) become the subject and bodies to
send. The engine is ``libs.template_engine`` (ingest previews and checks with it too)."""

from __future__ import annotations

from libs.template_engine import RENDER_FAILED, render_inline, render_version
from libs.templates import LayoutVersion, TemplateVersion
from schemas.common import Problem
from schemas.pipeline import MessageSpec, RenderedContent


def render(
    spec: MessageSpec, template: TemplateVersion | None, layout: LayoutVersion | None = None
) -> RenderedContent | Problem:
    """The content of ``spec``: its template (in ``layout``) merged with its data, or its inline
    parts as given.

    ``template`` is the version the store returned for ``spec.template`` (None: not found).
    """
    if spec.template is None:
        return render_inline(spec.subject, spec.html, spec.text)
    if template is None:
        missing = (
            "no active version"
            if spec.template_version is None
            else f"no version {spec.template_version}"
        )
        return Problem(
            code=RENDER_FAILED, detail=f"template {spec.template!r} not found: {missing}"
        )
    return render_version(template, layout, spec.data, spec.locale)
