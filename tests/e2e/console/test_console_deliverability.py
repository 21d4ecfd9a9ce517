"""The deliverability page in a real browser: after some deliveries and a bounce, the rate chart
and the critical lane's latency chart are drawn with those figures, their numbers are also in
words and in a table, and the page reads at 1280 by 800."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import Browser, Locator, expect

from libs.tenants import Tenant
from tests.e2e.browser import console_url, fits_the_viewport, logged_in
from tests.e2e.conftest import Topology
from tests.support import eventually

pytestmark = pytest.mark.e2e

DELIVERED = 3


async def _values(points: Locator) -> list[float]:
    """The values of a chart's points (each circle's ``data-value``)."""
    return [float(await point.get_attribute("data-value") or "nan") for point in await points.all()]


async def test_the_charts_show_the_deliveries_and_the_bounce(
    topology: Topology, chromium: Browser, tenant: tuple[Tenant, str]
) -> None:
    _, api_key = tenant
    auth = {"Authorization": f"Bearer {api_key}"}
    for n in range(DELIVERED):
        otp = {"to": f"success+{n}@simulator.sendarix.test", "category": "otp", "text": "123456"}
        await topology.send(api_key, {"from": "app@example.test", "subject": "Code"} | otp)
    bounce = {"to": "bounce@simulator.sendarix.test", "subject": "Hi", "text": "Hello"}
    await topology.send(api_key, {"from": "app@example.test"} | bounce)

    async def counted() -> dict[str, Any] | None:
        answer = await topology.http.get("/v1/analytics", headers=auth)
        assert answer.status_code == 200, answer.text
        counts = answer.json()["totals"]["counts"]
        return counts if counts["delivered"] >= DELIVERED and counts["bounced"] >= 1 else None

    await eventually(counted, timeout=120, every=0.5)

    page = await logged_in(chromium, topology.settings, api_key)
    await page.goto(console_url(topology.settings, "/deliverability?range=1h&bucket=minute"))
    rates = page.get_by_role("img", name="Delivered, bounced, complained and deferred rates")
    await expect(rates).to_be_visible()
    delivered = rates.locator("g[data-series='Delivered'] circle")
    await expect(delivered).not_to_have_count(0)
    assert max(await _values(delivered)) > 0
    assert max(await _values(rates.locator("g[data-series='Bounced'] circle"))) > 0
    label = await rates.get_attribute("aria-label") or ""
    assert "Delivered latest" in label and "Bounced latest" in label, label

    latency = page.get_by_role("img", name="Critical lane: accepted to delivered")
    label = await latency.get_attribute("aria-label") or ""
    assert "p50 latest" in label and "p99 latest" in label, label
    await expect(latency.locator("g[data-series='p99'] circle")).not_to_have_count(0)

    await page.get_by_text("The numbers of this chart").first.click()
    numbers = page.get_by_role("table", name="Delivered, bounced, complained and deferred rates")
    await expect(numbers.get_by_role("row")).not_to_have_count(1)  # a header and the buckets
    domains = page.get_by_role("table", name="Counts and rates per recipient domain")
    await expect(domains.get_by_role("row", name="simulator.sendarix.test")).to_have_count(1)
    assert await fits_the_viewport(page)
    await page.context.close()
