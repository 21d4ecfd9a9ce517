"""A template with a layout and two locales, created and previewed over HTTP, through the whole
pipeline: the reader gets the locale asked for (through the fallback chain) inside the layout,
the message log names what was rendered, and a version activated after acceptance changes
nothing for mail accepted."""

from __future__ import annotations

import signal
import uuid
from typing import Any

import httpx
import pytest

from libs.tenants import Tenant
from tests.e2e.conftest import Topology

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


async def api(topology: Topology, api_key: str, path: str, body: dict[str, Any]) -> Any:
    """``POST`` to the gateway's API, which must succeed; the JSON answer."""
    answer = await topology.http.post(
        path, json=body, headers={"Authorization": f"Bearer {api_key}"}
    )
    assert answer.status_code in (200, 201), answer.text
    return answer.json()


async def test_a_localised_template_in_its_layout_renders_the_version_accepted(
    topology: Topology, tenant: tuple[Tenant, str]
) -> None:
    account, api_key = tenant
    run = uuid.uuid4().hex[:8]
    layout = await api(
        topology,
        api_key,
        "/v1/layouts",
        {"alias": f"brand-{run}", "version": {"html": LAYOUT_HTML, "text": LAYOUT_TEXT}},
    )
    alias = f"welcome-{run}"
    contents = {
        "en": {"subject": f"Welcome {{{{ name }}}} {run}", "html": "<p>Hello {{ name }}</p>"},
        "pt": {"subject": f"Bem-vinda {{{{ name }}}} {run}", "html": "<p>Olá {{ name }}</p>"},
    }
    version = {
        "contents": contents,
        "variables": [{"name": "name", "example": "Ana"}],
        "layout": {"alias": layout["alias"]},
    }
    created = await api(
        topology,
        api_key,
        "/v1/templates",
        {"alias": alias, "category": "onboarding", "version": version},
    )
    first = created["version"]["version"]
    assert created["active_version"] is None  # saved, not yet active

    preview = await api(topology, api_key, f"/v1/templates/{alias}/render", {"locale": "pt-BR"})
    assert preview["subject"] == f"Bem-vinda Ana {run}"
    assert "<header>ACME</header><p>Olá Ana</p><footer>" in preview["html"]
    assert (preview["locale"], preview["layout_version"]) == ("pt", layout["latest_version"])
    await api(topology, api_key, f"/v1/templates/{alias}/versions/{first}/activate", {})
    body = {
        "from": "hello@example.test",
        "to": f"new.user+{run}@example.com",
        "template": alias,
        "data": {"name": "Zoë"},
        "locale": "pt-BR",
    }

    # render paused: the message waits, accepted with the first version, while a second one
    # becomes the active version
    topology.supervisor.kill("render", signal.SIGSTOP)
    try:
        accepted = await topology.send(api_key, body)
        changed = {tag: part | {"subject": "Changed"} for tag, part in contents.items()}
        second = version | {"contents": changed, "activate": True}
        await api(topology, api_key, f"/v1/templates/{alias}/versions", second)
    finally:
        topology.supervisor.kill("render", signal.SIGCONT)

    shown = await topology.settled(api_key, accepted["id"], "delivered")
    assert (shown["template"], shown["template_version"]) == (alias, first)
    assert (shown["layout_version"], shown["locale"]) == (layout["latest_version"], "pt")

    delivered = await mailpit_message(topology, f"Bem-vinda Zoë {run}")
    assert "<header>ACME</header><p>Olá Zoë</p><footer>" in delivered["HTML"]
    assert delivered["Text"].startswith("ACME")
    assert "Olá Zoë" in delivered["Text"] and "Acme Ltd, Rua A 1" in delivered["Text"]
    async with httpx.AsyncClient(timeout=5) as client:
        url = f"{topology.settings.mailpit_ui_url}/api/v1/message/{delivered['ID']}/headers"
        headers = {name.lower(): values for name, values in (await client.get(url)).json().items()}
    assert headers["feedback-id"] == [f"{alias}:{account.id}:transactional:sendarix"]
