"""The render scenario: render + MIME of an OTP inside a layout, in this one process.

What one render process and one sender spend per message, without the broker around them: the
engine (``libs.template_engine.render_version``: the sandboxed template, its layout, the
locale-aware filters, the text part) and the MIME writer (``services.sender.mime
.build_message``), called in turn for ``messages`` messages to different recipients with
different codes. Messages/s is their count over the time spent in the two calls; each call is
timed on its own, so the µs per message split render / MIME. Compiling the sources is done once
before the clock starts, as a running render process has done.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from libs.template_engine import render_version
from libs.templates import LayoutVersion, LocaleContent, TemplateVariable, TemplateVersion
from schemas.common import Lane, Mailbox
from schemas.pipeline import DeliveryJob, RenderedContent, Route
from services.sender.mime import build_message
from tests.records import message_spec

GOAL_PER_S = 2000
DISTINCT_SPECS = 1000
"""Messages built up front (and cycled): building specs is ingest's cost, not render's."""

LAYOUT = LayoutVersion(
    tenant_id="00000000-0000-0000-0000-000000000000",
    alias="brand",
    version=3,
    html=(
        "<!doctype html><html lang='{{ locale }}'><head><meta charset='utf-8'><title>{{ brand }}"
        "</title></head><body style='font-family:sans-serif'><table role='presentation'"
        " width='100%'><tr><td><img src='https://cdn.example.test/logo.png' alt='{{ brand }}'>"
        "</td></tr><tr><td>{{ content }}</td></tr><tr><td><p style='color:#888'>{{ brand }},"
        " 1 Example Street · <a href='https://example.test/help'>Help</a></p></td></tr></table>"
        "</body></html>"
    ),
    text="{{ content }}\n\n--\n{{ brand }} · https://example.test/help",
)
OTP = TemplateVersion(
    tenant_id=LAYOUT.tenant_id,
    alias="otp",
    version=5,
    default_locale="en",
    contents={
        "en": LocaleContent(
            subject="{{ code }} is your {{ brand }} code",
            html="<h1>Your code</h1><p>Hi {{ name }}, enter <b>{{ code }}</b> to sign in. It"
            " expires at {{ expires | time(tz=tz) }}.</p><p>Not you? Ignore this mail.</p>",
        ),
        "pt-BR": LocaleContent(
            subject="{{ code }} é o seu código {{ brand }}",
            html="<h1>Seu código</h1><p>Olá {{ name }}, digite <b>{{ code }}</b> para entrar."
            " Expira às {{ expires | time(tz=tz) }}.</p><p>Não foi você? Ignore.</p>",
        ),
    },
    variables=[
        TemplateVariable(name="code"),
        TemplateVariable(name="name", required=False, default="there"),
        TemplateVariable(name="expires", type="datetime"),
        TemplateVariable(name="tz", required=False, default="UTC"),
        TemplateVariable(name="brand", required=False, default="ACME"),
    ],
    layout_alias=LAYOUT.alias,
    layout_version=LAYOUT.version,
)
ROUTE = Route(name="simulator", host="127.0.0.1", port=25, pool="security")


def _jobs(count: int) -> list[tuple[DeliveryJob, dict[str, Any], str]]:
    """Delivery jobs (content to be filled), their data and locale: half en, half pt-BR."""
    expires = (datetime.now(UTC) + timedelta(minutes=10)).isoformat()
    jobs = []
    for number in range(count):
        locale = "pt-BR" if number % 2 else "en"
        spec = message_spec(
            tenant_id=LAYOUT.tenant_id,
            sender=Mailbox(address="security@example.test", name="ACME Security"),
            recipient=Mailbox(address=f"user{number}@example.org", name=f"User Nº{number}"),
            lane=Lane.CRITICAL,
            category="otp",
            template=OTP.alias,
            template_version=OTP.version,
            locale=locale,
        )
        job = DeliveryJob(
            message=spec,
            content=RenderedContent(subject="-", text="-"),
            route=ROUTE,
            attempt=1,
            retry_until=spec.accepted_at + timedelta(hours=1),
        )
        data = {"code": f"{number * 7919 % 1_000_000:06d}", "name": f"User {number}",
                "expires": expires, "tz": "America/Sao_Paulo"}  # fmt: skip
        jobs.append((job, data, locale))
    return jobs


def render_bench(messages: int) -> dict[str, Any]:
    """Render and write ``messages`` OTPs; messages/s and µs per message, render and MIME."""
    jobs = _jobs(min(messages, DISTINCT_SPECS))
    for _, data, locale in jobs[:2]:  # compile every source once, as a warm process has
        render_version(OTP, LAYOUT, data, locale)
    render_s = mime_s = 0.0
    sizes = 0
    for index in range(messages):
        job, data, locale = jobs[index % len(jobs)]
        began = time.perf_counter()
        content = render_version(OTP, LAYOUT, data, locale)
        rendered = time.perf_counter()
        assert isinstance(content, RenderedContent), content
        raw = build_message(job.model_copy(update={"content": content}))
        mime_s += time.perf_counter() - rendered
        render_s += rendered - began
        assert isinstance(raw, bytes), raw
        sizes += len(raw)
    return {
        "messages": messages,
        "messages_per_s": round(messages / (render_s + mime_s)),
        "render_us_per_message": round(1e6 * render_s / messages, 1),
        "mime_us_per_message": round(1e6 * mime_s / messages, 1),
        "mean_message_bytes": round(sizes / messages),
    }


def render_goals(figures: dict[str, Any] | None) -> list[tuple[bool, str]]:
    """The issue's goal for render + MIME in one process."""
    if not figures:
        return []
    rate = figures["messages_per_s"]
    return [
        (rate >= GOAL_PER_S, f"render + MIME of an OTP in a layout >= {GOAL_PER_S}/s: {rate}/s")
    ]


def render_report(figures: dict[str, Any]) -> str:
    """The render scenario's figures, for the terminal and docs/benchmarks.md."""
    return (
        f"render: {figures['messages']:,} OTPs in a layout rendered and written as MIME in one"
        f" process: {figures['messages_per_s']} messages/s; µs per message: render"
        f" {figures['render_us_per_message']}, MIME {figures['mime_us_per_message']}"
        f" ({figures['mean_message_bytes']} bytes each)"
    )
