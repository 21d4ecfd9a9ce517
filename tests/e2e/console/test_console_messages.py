"""The support journey in a real browser: find a bounced message by its recipient, open it, read
the SMTP reply in its timeline and its trace as a waterfall; a tenant never sees another
tenant's message, an operator sees every tenant's."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg
import pytest
from playwright.async_api import Browser, Page, expect

from libs.tenants import Tenant, create_tenant
from libs.trace_waterfall import trace_ui_url
from services.console.rendering import SANDBOXED_MAIL
from tests.e2e.browser import console_url, fits_the_viewport, logged_in
from tests.e2e.conftest import Topology
from tests.support import eventually

pytestmark = pytest.mark.e2e

SIMULATOR = "simulator.sendarix.test"
SPANS_TIMEOUT = 45.0
"""How long Jaeger may take to hold the spans of every service the message went through."""


@dataclass(frozen=True)
class Bounced:
    """A message the simulator refused with 550 5.1.1 (at RCPT: its content was never sent),
    one it accepted, and the tenant that sent both."""

    tenant: tuple[Tenant, str]
    message_id: str
    trace_id: str
    recipient: str
    delivered_id: str


def receipt(to: str) -> dict[str, str]:
    return {
        "from": "app@example.test",
        "to": to,
        "subject": "Your receipt",
        "html": "<h1>Thanks</h1><p>Your order is on its way.</p>",
        "text": "Thanks. Your order is on its way.",
        "category": "billing",
    }


@pytest.fixture(scope="module")
async def bounced(topology: Topology, pool: asyncpg.Pool) -> Bounced:
    sender = await create_tenant(
        pool, f"shop-{uuid.uuid4().hex[:6]}", ["example.test"], dev_mode=True
    )
    recipient = f"bounce+{uuid.uuid4().hex[:8]}@{SIMULATOR}"
    accepted = await topology.send(sender[1], receipt(recipient))
    delivered = await topology.send(
        sender[1], receipt(f"success+{uuid.uuid4().hex[:8]}@{SIMULATOR}")
    )
    await topology.settled(sender[1], accepted["id"], "bounced")
    await topology.settled(sender[1], delivered["id"], "delivered")
    return Bounced(sender, accepted["id"], accepted["trace_id"], recipient, delivered["id"])


async def found_by_recipient(page: Page, topology: Topology, recipient: str) -> None:
    await page.goto(console_url(topology.settings, "/"))
    await page.get_by_label("Recipient").fill(recipient)
    await page.get_by_role("button", name="Search").click()
    await page.wait_for_url(lambda url: "recipient=" in url)


async def with_spans_of(page: Page, services: set[str]) -> Page:
    """The message page once its waterfall shows a span of each of ``services`` (reloaded
    while Jaeger does not have them yet)."""

    async def shown() -> Page | None:
        rows = page.locator("table.waterfall tr.span")
        present = {await row.get_attribute("data-service") for row in await rows.all()}
        if services <= present:
            return page
        await page.reload()
        return None

    return await eventually(shown, timeout=SPANS_TIMEOUT, every=1.0)


async def test_a_bounced_message_is_found_and_explained(
    topology: Topology, chromium: Browser, bounced: Bounced
) -> None:
    page = await logged_in(chromium, topology.settings, bounced.tenant[1])

    await found_by_recipient(page, topology, bounced.recipient)
    results = page.get_by_role("table", name="Newest messages first")
    row = results.get_by_role("row").filter(has_text=bounced.recipient)
    await expect(row).to_have_count(1)
    await expect(row).to_contain_text("bounced")
    await expect(row).to_contain_text("Your receipt")
    await row.get_by_role("link").click()
    await page.wait_for_url(console_url(topology.settings, f"/messages/{bounced.message_id}"))

    timeline = page.get_by_role("table", name="Every event of the message, oldest first")
    bounce = timeline.get_by_role("row").filter(has_text="bounced")
    await expect(bounce).to_contain_text("550 5.1.1")
    await expect(bounce).to_contain_text("invalid_recipient (hard)")
    suppression = page.get_by_role("link", name=f"{bounced.recipient} on the suppression list")
    await expect(suppression).to_be_visible()
    await with_spans_of(page, {"ingest", "sender"})
    bars = page.locator("table.waterfall rect.span-bar")
    assert await bars.count() >= 2
    assert float(await bars.first.get_attribute("width") or 0) > 0  # drawn, not styled away
    assert (await bars.first.bounding_box() or {"width": 0})["width"] > 0
    tracing = page.get_by_role("link", name="Open in the tracing UI")
    expected = trace_ui_url(topology.settings, bounced.trace_id)
    assert await tracing.get_attribute("href") == expected
    assert await fits_the_viewport(page)

    await expect(page.get_by_text("No sent copy")).to_be_visible()
    await page.context.close()


async def test_one_click_opens_the_same_trace_in_the_tracing_ui(
    topology: Topology, chromium: Browser, bounced: Bounced
) -> None:
    """The link opens Zipkin's page of the trace, which shows the services it went through
    (Zipkin gets the spans from Jaeger through the broker: the page is reloaded until then)."""
    page = await logged_in(chromium, topology.settings, bounced.tenant[1])
    await page.goto(console_url(topology.settings, f"/messages/{bounced.message_id}"))
    async with page.context.expect_page() as opening:
        await page.get_by_role("link", name="Open in the tracing UI").click()
    zipkin = await opening.value

    async def shown() -> bool | None:
        await zipkin.wait_for_load_state("networkidle")
        text = await zipkin.locator("body").inner_text()
        if bounced.trace_id in text and "sender" in text and "ingest" in text:
            return True
        await zipkin.reload()
        return None

    assert await eventually(shown, timeout=SPANS_TIMEOUT, every=1.0)
    assert zipkin.url == trace_ui_url(topology.settings, bounced.trace_id)
    await page.context.close()


async def test_a_sent_mail_is_previewed_in_a_sandbox_and_downloaded(
    topology: Topology, chromium: Browser, bounced: Bounced
) -> None:
    page = await logged_in(chromium, topology.settings, bounced.tenant[1])
    message_url = console_url(topology.settings, f"/messages/{bounced.delivered_id}")
    await page.goto(message_url)

    frame = page.locator("iframe.preview")
    assert await frame.get_attribute("sandbox") == ""
    heading = page.frame_locator("iframe.preview").get_by_role("heading", name="Thanks")
    await expect(heading).to_be_visible()
    preview = await page.request.get(f"{message_url}/preview")
    assert preview.headers["content-security-policy"] == SANDBOXED_MAIL["Content-Security-Policy"]
    assert "<h1>Thanks</h1>" in await preview.text()
    headers = page.get_by_role("table", name="Headers")
    subject = headers.get_by_role("row", name="Subject Your receipt", exact=True)
    await expect(subject).to_be_visible()
    download = await page.request.get(f"{message_url}/raw")
    assert download.headers["content-type"] == "message/rfc822"
    assert f'filename="{bounced.delivered_id}.eml"' in download.headers["content-disposition"]
    assert b"Subject: Your receipt" in await download.body()
    assert await fits_the_viewport(page)
    await page.context.close()


async def test_only_its_tenant_and_an_operator_see_the_message(
    topology: Topology, chromium: Browser, bounced: Bounced, pool: asyncpg.Pool
) -> None:
    other, stranger_key = await create_tenant(pool, "stranger", [], dev_mode=True)
    stranger = await logged_in(chromium, topology.settings, stranger_key)
    await found_by_recipient(stranger, topology, bounced.recipient)
    await expect(stranger.get_by_role("cell", name="No message matches.")).to_be_visible()
    answer = await stranger.goto(console_url(topology.settings, f"/messages/{bounced.message_id}"))
    assert answer is not None and answer.status == 404
    await expect(stranger.get_by_role("heading", level=1)).to_contain_text("404")
    preview = await stranger.request.get(
        console_url(topology.settings, f"/messages/{bounced.message_id}/preview")
    )
    assert preview.status == 404
    await stranger.context.close()

    _, operator_key = await create_tenant(
        pool, topology.settings.operator_tenant, [], dev_mode=True
    )
    operator = await logged_in(chromium, topology.settings, operator_key)
    await found_by_recipient(operator, topology, bounced.recipient)
    row = operator.get_by_role("row").filter(has_text=bounced.recipient)
    await expect(row).to_contain_text(bounced.tenant[0].id)
    await operator.get_by_label("Tenant id").fill(other.id)
    await operator.get_by_role("button", name="Search").click()
    await expect(operator.get_by_role("cell", name="No message matches.")).to_be_visible()
    await operator.get_by_label("Tenant id").fill(bounced.tenant[0].id)
    await operator.get_by_role("button", name="Search").click()
    await operator.get_by_role("row").filter(has_text=bounced.recipient).get_by_role("link").click()
    await expect(operator.get_by_role("heading", level=1)).to_contain_text(bounced.message_id)
    await expect(operator.locator(".facts")).to_contain_text(bounced.tenant[0].id)
    await operator.context.close()
