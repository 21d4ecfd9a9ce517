"""The console's suppressions, templates and webhooks pages in a real browser: a suppression is
found and removed with a reason, a template version is previewed with typed sample data, an
endpoint's posts are listed and one is replayed — and another tenant's key sees none of them."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from playwright.async_api import Browser, expect

from libs.tenants import Tenant, create_tenant
from tests.e2e.browser import console_url, fits_the_viewport, logged_in
from tests.e2e.conftest import Topology
from tests.support import WebhookReceiver, eventually, serving_webhooks

pytestmark = pytest.mark.e2e


@pytest.fixture
async def stranger(pool: asyncpg.Pool) -> str:
    """The admin key of another tenant."""
    _, api_key = await create_tenant(pool, f"other-{uuid.uuid4().hex[:6]}", [], dev_mode=True)
    return api_key


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with serving_webhooks() as running:
        yield running


async def api(topology: Topology, api_key: str, method: str, path: str, **options: Any) -> Any:
    """A gateway call that must succeed; its JSON answer."""
    answer = await topology.http.request(
        method, path, headers={"Authorization": f"Bearer {api_key}"}, **options
    )
    assert answer.is_success, answer.text
    return answer.json()


async def not_seen_by(
    topology: Topology, chromium: Browser, api_key: str, listing: str, page_path: str, shown: str
) -> None:
    """Another tenant's key: ``shown`` is not in its ``listing`` page and ``page_path`` is 404."""
    page = await logged_in(chromium, topology.settings, api_key)
    await page.goto(console_url(topology.settings, listing))
    await expect(page.get_by_role("main")).not_to_contain_text(shown)
    answer = await page.goto(console_url(topology.settings, page_path))
    assert answer is not None and answer.status == 404
    await page.context.close()


async def test_a_suppression_is_found_and_removed_with_a_reason(
    topology: Topology,
    chromium: Browser,
    tenant: tuple[Tenant, str],
    stranger: str,
    pool: asyncpg.Pool,
) -> None:
    account, api_key = tenant
    address = f"gone+{uuid.uuid4().hex[:8]}@example.org"
    added = {"suppressions": [{"address": address, "stream": "transactional"}]}
    await api(topology, api_key, "POST", "/v1/suppressions", json=added)

    stranger_page = await logged_in(chromium, topology.settings, stranger)
    await stranger_page.goto(console_url(topology.settings, f"/suppressions?address={address}"))
    await expect(stranger_page.get_by_text("No suppression matches.")).to_be_visible()
    await stranger_page.context.close()

    page = await logged_in(chromium, topology.settings, api_key)
    await page.goto(console_url(topology.settings, "/suppressions"))
    await page.get_by_label("Address", exact=True).fill(address)
    await page.get_by_role("button", name="Search").click()
    table = page.get_by_role("table", name="Suppressions in force, by address")
    await expect(table.get_by_role("cell", name=address, exact=True)).to_be_visible()
    assert await fits_the_viewport(page)

    await page.get_by_role("button", name="Remove").click()  # no reason: the browser refuses
    assert await page.get_by_label(f"Why remove {address}").evaluate("e => !e.validity.valid")
    await page.get_by_label(f"Why remove {address} (transactional, manual)").fill("asked by phone")
    await page.get_by_role("button", name="Remove").click()

    await expect(page.get_by_role("status")).to_contain_text(f"suppression of {address}")
    await expect(page.get_by_text("No suppression matches.")).to_be_visible()
    listed = await api(topology, api_key, "GET", "/v1/suppressions", params={"address": address})
    assert listed["suppressions"] == []
    removal = await pool.fetchrow(
        "SELECT removed_by, note FROM suppression_removals WHERE tenant_id = $1 AND address = $2",
        uuid.UUID(account.id),
        address,
    )
    assert removal is not None and removal["note"] == "asked by phone"
    assert removal["removed_by"].startswith("key:")
    await page.context.close()


async def test_a_template_version_is_previewed_with_typed_sample_data(
    topology: Topology, chromium: Browser, tenant: tuple[Tenant, str], stranger: str
) -> None:
    _, api_key = tenant
    alias = f"welcome-{uuid.uuid4().hex[:8]}"
    version = {
        "contents": {
            "en": {
                "subject": "Welcome {{ name }}",
                "html": "<p>Hello <b>{{ name }}</b></p>",
                "text": "Hello {{ name }}",
            }
        },
        "variables": [{"name": "name", "example": "Ana"}],
        "activate": True,
    }
    body = {"alias": alias, "name": "Welcome mail", "version": version}
    await api(topology, api_key, "POST", "/v1/templates", json=body)

    page = await logged_in(chromium, topology.settings, api_key)
    await page.goto(console_url(topology.settings, "/templates"))
    await page.get_by_role("link", name=alias).click()
    subject = page.locator("#rendered-subject")
    await expect(subject).to_have_text("Welcome Ana")  # the declared example, prefilled
    assert json.loads(await page.get_by_label("Sample data (JSON)").input_value()) == {
        "name": "Ana"
    }

    await page.get_by_label("Sample data (JSON)").fill('{"name": "Zoë <script>"}')
    await page.get_by_role("button", name="Preview").click()
    await expect(subject).to_have_text("Welcome Zoë <script>")
    frame = page.frame_locator("iframe[title='HTML part, rendered']")
    await expect(frame.locator("b")).to_have_text("Zoë <script>")
    await expect(page.locator("pre")).to_have_text("Hello Zoë <script>")
    assert await fits_the_viewport(page)
    src = await page.locator("iframe[title='HTML part, rendered']").get_attribute("src")
    assert src is not None
    served = await page.request.get(console_url(topology.settings, src))
    policy = served.headers["content-security-policy"]
    assert policy.startswith("sandbox; default-src 'none'") and "script-src" not in policy

    await page.get_by_label("Sample data (JSON)").fill('{"name": ')
    await page.get_by_role("button", name="Preview").click()
    await expect(page.get_by_role("alert")).to_contain_text("not JSON")
    await page.context.close()

    await not_seen_by(topology, chromium, stranger, "/templates", f"/templates/{alias}", alias)


async def test_an_endpoints_posts_are_listed_and_one_is_replayed(
    topology: Topology,
    chromium: Browser,
    tenant: tuple[Tenant, str],
    stranger: str,
    receiver: WebhookReceiver,
) -> None:
    _, api_key = tenant
    hook, url = receiver.url()
    wanted = {"url": url, "event_types": ["sendarix.message.delivered"]}
    endpoint = await api(topology, api_key, "POST", "/v1/webhooks", json=wanted)
    accepted = await topology.send(
        api_key,
        {
            "from": "app@example.test",
            "to": "success@simulator.sendarix.test",
            "subject": "Webhook me",
            "text": "Hello",
        },
    )
    await topology.settled(api_key, accepted["id"], "delivered")

    async def posted() -> bool | None:
        return True if receiver.posts[hook] else None

    await eventually(posted)

    page = await logged_in(chromium, topology.settings, api_key)

    async def attempt_listed() -> bool | None:
        await page.goto(console_url(topology.settings, "/webhooks"))
        await page.get_by_role("link", name=url).click()
        return True if await page.get_by_role("link", name=accepted["id"]).count() else None

    await eventually(attempt_listed)
    attempts = page.get_by_role("table", name="Posts to this endpoint, newest first")
    await expect(attempts).to_contain_text("sendarix.message.delivered")
    await expect(attempts).to_contain_text("200")
    assert endpoint["secret"] not in await page.content()
    assert await fits_the_viewport(page)

    [(_, first)] = receiver.posts[hook]
    event_id = json.loads(first)["id"]
    await page.get_by_role("button", name=f"Replay event {event_id}").click()
    await expect(page.get_by_role("status")).to_contain_text("Replay accepted: 1 event(s)")

    async def posted_again() -> bool | None:
        return True if len(receiver.posts[hook]) == 2 else None

    await eventually(posted_again)
    assert json.loads(receiver.posts[hook][1][1])["id"] == event_id
    await page.context.close()

    endpoint_page = f"/webhooks/{endpoint['id']}"
    await not_seen_by(topology, chromium, stranger, "/webhooks", endpoint_page, url)
