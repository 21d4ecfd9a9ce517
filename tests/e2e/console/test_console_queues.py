"""The queue page in a real browser: the live stage table refreshes itself; a tenant pauses its
normal lane with the form, the pause shows in the page and the API and holds the tenant's mail,
and the Resume button lets it go; a read-only key sees the queues but no control."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import pytest
from playwright.async_api import Browser, Page, expect

from libs.keys import KeySettings, Scope, insert_key
from libs.tenants import Tenant, create_tenant
from tests.e2e.browser import console_url, fits_the_viewport, logged_in
from tests.e2e.conftest import Topology
from tests.support import eventually

pytestmark = pytest.mark.e2e

HELD_SECONDS = 2.0


def _auth(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"}


async def _queues_page(topology: Topology, chromium: Browser, api_key: str) -> Page:
    page = await logged_in(chromium, topology.settings, api_key)
    await page.goto(console_url(topology.settings, "/queues"))
    return page


async def _controls(topology: Topology, api_key: str) -> list[dict[str, Any]]:
    answer = await topology.http.get("/v1/queue-controls", headers=_auth(api_key))
    assert answer.status_code == 200, answer.text
    controls: list[dict[str, Any]] = answer.json()["controls"]
    return controls


async def _stays_undelivered(topology: Topology, api_key: str, message_id: str) -> None:
    deadline = time.monotonic() + HELD_SECONDS
    while time.monotonic() < deadline:
        answer = await topology.http.get(f"/v1/messages/{message_id}", headers=_auth(api_key))
        assert answer.status_code in (200, 404), answer.text
        assert answer.status_code == 404 or answer.json()["status"] != "delivered"
        await asyncio.sleep(0.2)


async def _refreshed(page: Page, selector: str) -> None:
    table = page.locator(selector)
    before = await table.get_attribute("data-refreshed-at")

    async def changed() -> str | None:
        now = await table.get_attribute("data-refreshed-at")
        return now if now != before else None

    await eventually(changed, timeout=10, every=0.2)


async def test_pausing_and_resuming_a_lane_with_the_controls(
    topology: Topology, chromium: Browser, tenant: tuple[Tenant, str]
) -> None:
    _, api_key = tenant
    page = await _queues_page(topology, chromium, api_key)
    await expect(page.get_by_role("heading", name="Queues", level=1)).to_be_visible()
    stages = page.get_by_role("table", name="Depth and oldest wait per stage and lane")
    await expect(stages).to_be_visible()
    await expect(stages.get_by_role("row", name="deliver")).not_to_have_count(0)
    await _refreshed(page, "#live-stages")
    assert await fits_the_viewport(page)

    await page.get_by_role("button", name="Pause lane normal").click()
    await expect(page.get_by_role("status")).to_contain_text("Paused lane normal")
    controls = page.get_by_role("table", name="Active controls")
    await expect(controls.get_by_role("row", name="lane normal")).to_have_count(1)
    [control] = await _controls(topology, api_key)
    assert control["kind"] == "pause" and control["scope"]["lane"] == "normal"
    assert control["scope"]["tenant_id"] == tenant[0].id

    message = {
        "from": "app@example.test",
        "to": "success@simulator.sendarix.test",
        "subject": "Held",
        "text": "Hello",
        "priority": "normal",
    }
    accepted = await topology.send(api_key, message)
    await _stays_undelivered(topology, api_key, accepted["id"])
    waiting = page.get_by_role("table", name="Scheduled retries")
    await expect(waiting.get_by_role("row", name="paused")).to_have_count(1, timeout=10_000)

    await page.get_by_role("button", name="Resume lane normal").click()
    await expect(page.get_by_role("status")).to_contain_text("Resumed lane normal")
    await expect(controls).to_contain_text("Nothing is paused or drained.")
    assert await _controls(topology, api_key) == []
    await topology.settled(api_key, accepted["id"], "delivered", timeout=60)
    events = page.get_by_role("table", name="Recent queue events")
    await expect(events).to_contain_text("resumed", timeout=10_000)  # live, no reload
    await page.context.close()


async def test_a_read_only_key_sees_the_queues_but_no_control(
    topology: Topology, chromium: Browser, tenant: tuple[Tenant, str], pool: asyncpg.Pool
) -> None:
    shown, admin_key = tenant
    paused = await topology.http.post(
        "/v1/queue-controls", json={"kind": "pause", "lane": "bulk"}, headers=_auth(admin_key)
    )
    assert paused.status_code == 201, paused.text
    _, read_key = await insert_key(pool, shown.id, KeySettings(scopes=frozenset({Scope.READ})))
    page = await _queues_page(topology, chromium, read_key)

    controls = page.get_by_role("table", name="Active controls")
    await expect(controls.get_by_role("row", name="lane bulk")).to_have_count(1)
    await expect(page.get_by_role("button")).to_have_count(1)  # Log out, nothing else
    await expect(page.get_by_role("button", name="Log out")).to_be_visible()
    await page.context.close()


async def test_a_refused_control_says_why_and_a_cancel_needs_its_confirmation(
    topology: Topology, chromium: Browser, tenant: tuple[Tenant, str]
) -> None:
    _, api_key = tenant
    page = await _queues_page(topology, chromium, api_key)

    await page.get_by_label("Kind of control").select_option("drain")
    await page.get_by_role("button", name="Apply control").click()
    await expect(page.get_by_role("alert")).to_contain_text("drain_needs_route")
    assert await _controls(topology, api_key) == []

    await page.get_by_role("button", name="Cancel waiting mail").click()
    await expect(page.get_by_role("alert")).to_contain_text("Nothing cancelled")
    await page.get_by_label("Yes, cancel these messages").check()
    await page.get_by_role("button", name="Cancel waiting mail").click()
    await expect(page.get_by_role("status")).to_contain_text("Cancelled 0 waiting messages")
    await page.context.close()


async def test_an_operator_pauses_a_tenant_that_cannot_lift_the_pause_itself(
    topology: Topology, chromium: Browser, tenant: tuple[Tenant, str], pool: asyncpg.Pool
) -> None:
    shown, tenant_key = tenant
    _, operator_key = await create_tenant(
        pool, topology.settings.operator_tenant, [], dev_mode=True
    )
    operator = await _queues_page(topology, chromium, operator_key)
    form = operator.get_by_role("form", name="Pause or drain a scope")
    await form.get_by_label("Tenant id").fill(shown.id)
    await form.get_by_label("Lane", exact=True).select_option("bulk")
    await form.get_by_label("Reason").fill("e2e: the tenant's bulk mail bounces")
    await form.get_by_role("button", name="Apply control").click()
    scope = f"tenant {shown.id}, lane bulk"
    await expect(operator.get_by_role("status")).to_contain_text(f"Paused {scope}")

    own = await _queues_page(topology, chromium, tenant_key)
    await own.get_by_role("button", name="Resume lane bulk").click()
    await expect(own.get_by_role("alert")).to_contain_text("operator_only")
    assert len(await _controls(topology, tenant_key)) == 1

    await operator.reload()
    await operator.get_by_role("button", name=f"Resume {scope}").click()
    await expect(operator.get_by_role("status")).to_contain_text(f"Resumed {scope}")
    assert await _controls(topology, tenant_key) == []
    for page in (operator, own):
        await page.context.close()
