"""The console in a real browser: Debian's Chromium driven by Playwright.

Each test gets a fresh browser context (its own cookies) at 1280 by 800, logged in through the
real form, so what it sees is what a support person sees.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, Page, async_playwright

from deploy.stack import tools
from libs.settings import Settings

VIEWPORT = {"width": 1280, "height": 800}


def console_url(settings: Settings, path: str = "/") -> str:
    return f"http://127.0.0.1:{settings.console_port}{path}"


@pytest.fixture(scope="module")
async def chromium() -> AsyncIterator[Browser]:
    executable = tools.chromium()
    if executable is None:
        pytest.fail("Chromium is missing: `make test` installs it (apt-get install chromium)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(executable), headless=True)
        try:
            yield browser
        finally:
            await browser.close()


async def logged_in(chromium: Browser, settings: Settings, api_key: str) -> Page:
    """A new page of a new context, logged in with ``api_key`` through the log-in form."""
    context = await chromium.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    page = await context.new_page()
    await page.goto(console_url(settings, "/login"))
    await page.get_by_label("API key").fill(api_key)
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_url(lambda url: "/login" not in url)
    return page


async def fits_the_viewport(page: Page) -> bool:
    """Whether the page reads at 1280 px wide without scrolling sideways."""
    width: int = await page.evaluate("document.documentElement.scrollWidth")
    return width <= VIEWPORT["width"]
