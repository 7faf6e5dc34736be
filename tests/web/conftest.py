"""Browser fixtures: one real exchange and one headless Chromium for the whole browser test session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, ViewportSize, sync_playwright

from tests.web.live_server import CHROMIUM, CHROMIUM_ARGS, LiveServer

VIEWPORT: ViewportSize = {"width": 360, "height": 740}


# Module scope, not session: sync Playwright keeps an event loop running in the test thread while it is open,
# and the shared session fixtures (tests/conftest.py) call asyncio.run, which a running loop refuses.
@pytest.fixture(scope="module")
def exchange(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium is not installed here")
    server = LiveServer(tmp_path_factory.mktemp("exchange") / "data")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium is not installed here")
    with sync_playwright() as playwright:
        # A fake microphone (a beep) lets the greeting recorder run for real.
        fake_media = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS + fake_media)
        yield launched
        launched.close()


# Playwright's string predicates (wait_for_function) and axe's injected script are eval and inline scripts, which
# the app's Content-Security-Policy forbids: the browser tests bypass it, and tests/security/test_http_csp_browser.py
# walks every screen with it enforced.
BYPASS_CSP = True


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context(
        viewport=VIEWPORT, locale="nl-NL", color_scheme="light", permissions=["microphone"], bypass_csp=BYPASS_CSP
    )
    ctx.set_default_timeout(10_000)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Iterator[Page]:
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    yield opened
    assert not errors, f"uncaught errors in the page: {errors}"
