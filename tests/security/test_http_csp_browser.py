"""The app works under its own Content-Security-Policy (issue 11: no CSP, X-Frame-Options, Referrer-Policy).

Real Chromium, with the policy enforced (the other browser tests bypass it for Playwright's own eval): log in,
set the PIN, open every screen; not one CSP violation and no uncaught error. Then a page of another origin
tries to frame the app, which the browser refuses.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, ConsoleMessage

from tests.web.conftest import VIEWPORT, browser, exchange  # noqa: F401 - the browser tests' fixtures
from tests.web.live_server import PASSWORD, LiveServer
from tests.web.screens import SCREENS
from tests.web.test_app_browser import new_user

pytestmark = pytest.mark.browser


def test_every_screen_runs_under_the_csp(browser: Browser, exchange: LiveServer) -> None:  # noqa: F811
    username = new_user(exchange, pin="2580")
    fresh = new_user(exchange)
    context = browser.new_context(viewport=VIEWPORT, locale="nl-NL", permissions=["microphone"])
    context.set_default_timeout(10_000)
    page = context.new_page()
    violations: list[str] = []
    errors: list[str] = []

    def console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text or "Refused to" in message.text:
            violations.append(message.text)

    page.on("console", console)
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        response = page.goto(exchange.url + "/")
        assert response is not None and "frame-ancestors 'none'" in response.headers["content-security-policy"]
        page.fill("#username", fresh)
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_selector("#new-pin")
        page.goto(exchange.url + "/#/login")
        page.evaluate("localStorage.clear()")
        page.reload()
        page.fill("#username", username)
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_selector(".tiles")
        for screen in SCREENS:
            page.goto(f"{exchange.url}/#/{screen}")
            page.wait_for_selector("html[data-ready='true']:not([data-busy])", state="attached")
            page.wait_for_timeout(100)
        # The routing explanation sets style attributes (allowed) — open it with a result.
        page.goto(f"{exchange.url}/#/explain")
        page.wait_for_timeout(300)
    finally:
        context.close()
    assert not violations, violations
    assert not errors, errors


def test_another_site_cannot_frame_the_app(browser: Browser, exchange: LiveServer) -> None:  # noqa: F811
    context = browser.new_context()
    page = context.new_page()
    blocked: list[str] = []
    page.on("console", lambda message: blocked.append(message.text))
    try:
        page.set_content(f'<iframe id="app" src="{exchange.url}/"></iframe>')
        page.wait_for_timeout(1500)
        frame = page.frame_locator("#app")
        assert frame.locator("#username").count() == 0  # nothing of the app rendered inside the frame
    finally:
        context.close()
    assert any("frame-ancestors" in text or "X-Frame-Options" in text for text in blocked), blocked
