"""A template with a layout and two locales, through the whole pipeline: the reader gets the
locale asked for (through the fallback chain) inside the layout, the message log names what
was rendered, and a version activated after acceptance changes nothing for mail accepted."""

from __future__ import annotations

import signal
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from libs.templates import LocaleContent, TemplateVariable, add_version, upsert_template
from libs.tenants import Tenant
from tests.e2e.conftest import Topology
from tests.template_rows import add_layout

pytestmark = pytest.mark.e2e

LAYOUT_HTML = (
    "<html><body><header>ACME</header>{{ content }}<footer>Acme Ltd, Rua A 1</footer></body></html>"
)
LAYOUT_TEXT = "ACME\n\n{{ content }}\n\n-- Acme Ltd, Rua A 1"


async def mailpit_message(topology: Topology, subject: str) -> dict[str, Any]:
    """The whole message Mailpit received with ``subject`` (headers, html, text)."""
    listed = await topology.in_mailpit(subject)
    async with httpx.AsyncClient(timeout=5) as client:
        answer = await client.get(
            f"{topology.settings.mailpit_ui_url}/api/v1/message/{listed['ID']}"
        )
    message: dict[str, Any] = answer.json()
    return message


async def test_a_localised_template_in_its_layout_renders_the_version_accepted(
    topology: Topology, pool: asyncpg.Pool, tenant: tuple[Tenant, str]
) -> None:
    account, api_key = tenant
    run = uuid.uuid4().hex[:8]
    layout = await add_layout(pool, account.id, f"brand-{run}", LAYOUT_HTML, LAYOUT_TEXT)
    alias = f"welcome-{run}"
    await upsert_template(pool, account.id, alias, category="onboarding")
    contents = {
        "en": LocaleContent(
            subject=f"Welcome {{{{ name }}}} {run}", html="<p>Hello {{ name }}</p>"
        ),
        "pt": LocaleContent(
            subject=f"Bem-vinda {{{{ name }}}} {run}", html="<p>Olá {{ name }}</p>"
        ),
    }
    first = await add_version(
        pool,
        account.id,
        alias,
        contents,
        variables=[TemplateVariable(name="name", example="Ana")],
        layout=(layout.alias, layout.version),
        activate=True,
    )
    body = {
        "from": "hello@example.test",
        "to": f"new.user+{run}@example.com",
        "template": alias,
        "data": {"name": "Zoë"},
        "locale": "pt-BR",
    }

    # render paused: the message waits, accepted with v1, while v2 becomes the active version
    topology.supervisor.kill("render", signal.SIGSTOP)
    try:
        accepted = await topology.send(api_key, body)
        changed = {
            tag: part.model_copy(update={"subject": "Changed"}) for tag, part in contents.items()
        }
        await add_version(
            pool, account.id, alias, changed, layout=(layout.alias, layout.version), activate=True
        )
    finally:
        topology.supervisor.kill("render", signal.SIGCONT)

    shown = await topology.settled(api_key, accepted["id"], "delivered")
    assert (shown["template"], shown["template_version"]) == (alias, first.version)
    assert (shown["layout_version"], shown["locale"]) == (layout.version, "pt")

    delivered = await mailpit_message(topology, f"Bem-vinda Zoë {run}")
    assert "<header>ACME</header><p>Olá Zoë</p><footer>" in delivered["HTML"]
    assert delivered["Text"].startswith("ACME")
    assert "Olá Zoë" in delivered["Text"] and "Acme Ltd, Rua A 1" in delivered["Text"]
    async with httpx.AsyncClient(timeout=5) as client:
        url = f"{topology.settings.mailpit_ui_url}/api/v1/message/{delivered['ID']}/headers"
        headers = {name.lower(): values for name, values in (await client.get(url)).json().items()}
    assert headers["feedback-id"] == [f"{alias}:{account.id}:transactional:sendarix"]
