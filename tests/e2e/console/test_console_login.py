"""The console's door in a real browser: a read or admin key logs in, a wrong or send-only key
does not, the session cookie cannot be read by scripts nor sent cross-site, and a control
without the session's CSRF token is refused."""

from __future__ import annotations

import asyncpg
import pytest
from playwright.async_api import Browser, expect

from libs.keys import KeySettings, Scope, insert_key
from libs.tenants import Tenant
from services.console.session import COOKIE
from tests.e2e.browser import console_url, fits_the_viewport, logged_in
from tests.e2e.conftest import Topology

pytestmark = pytest.mark.e2e


async def test_a_tenant_key_logs_in_and_out(
    topology: Topology, chromium: Browser, tenant: tuple[Tenant, str]
) -> None:
    shown, api_key = tenant
    page = await logged_in(chromium, topology.settings, api_key)

    await expect(page.get_by_role("navigation", name="Main")).to_be_visible()
    await expect(page.locator(".who")).to_contain_text(shown.name)
    assert await fits_the_viewport(page)
    [cookie] = [c for c in await page.context.cookies() if c["name"] == COOKIE]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert api_key not in cookie["value"]  # sealed, not the key itself

    await page.keyboard.press("Tab")  # the first stop is the skip link
    assert await page.evaluate("document.activeElement.textContent") == "Skip to content"

    await page.get_by_role("button", name="Log out").click()
    await page.wait_for_url(console_url(topology.settings, "/login"))
    await page.goto(console_url(topology.settings, "/queues"))
    assert "/login?next=%2Fqueues" in page.url  # no session any more
    await page.context.close()


async def test_a_wrong_or_send_only_key_is_refused(
    topology: Topology, chromium: Browser, tenant: tuple[Tenant, str], pool: asyncpg.Pool
) -> None:
    shown, _ = tenant
    _, send_only = await insert_key(pool, shown.id, KeySettings(scopes=frozenset({Scope.SEND})))
    context = await chromium.new_context()
    page = await context.new_page()
    for key, says in (("sx_not_a_key", "unknown, revoked or expired"), (send_only, "only send")):
        await page.goto(console_url(topology.settings, "/login"))
        await page.get_by_label("API key").fill(key)
        await page.get_by_role("button", name="Log in").click()
        await expect(page.get_by_role("alert")).to_contain_text(says)
    assert not [c for c in await context.cookies() if c["name"] == COOKIE]
    await context.close()


async def test_a_control_without_the_csrf_token_is_refused(
    topology: Topology, chromium: Browser, tenant: tuple[Tenant, str]
) -> None:
    _, api_key = tenant
    page = await logged_in(chromium, topology.settings, api_key)
    logout = console_url(topology.settings, "/logout")

    forged = await page.request.post(logout, form={"csrf": "guessed"})
    assert forged.status == 403
    cross_site = await page.request.post(
        logout, form={"csrf": "guessed"}, headers={"Origin": "https://evil.example"}
    )
    assert cross_site.status == 403
    await page.goto(console_url(topology.settings, "/queues"))
    assert "/login" not in page.url  # still logged in
    await page.context.close()
