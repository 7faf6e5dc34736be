"""axe-core in real Chromium on every screen of Hipper+, light and dark: no violations (WCAG 2.x A/AA and
axe's best practices), including the dialogs (step-up, number choice) and the first-run screens.

axe-core is vendored under tests/web/vendor/axe-core (pinned, with its licence); it is injected into the page
here and never shipped with the app.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import pytest
from playwright.sync_api import Browser, Page

from tests.web.conftest import BYPASS_CSP, VIEWPORT
from tests.web.live_server import PASSWORD, LiveServer
from tests.web.screens import SCREENS
from tests.web.test_app_browser import SETTLED, log_in, new_user

pytestmark = pytest.mark.browser

AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"
I18N = Path(__file__).resolve().parents[2] / "src" / "hipper" / "web" / "i18n"


def violations(page: Page) -> list[str]:
    """Run axe on the page as it is now; one line per violation and element."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    found: list[dict[str, Any]] = page.evaluate(
        "axe.run(document, {resultTypes: ['violations']}).then((result) => result.violations)"
    )
    return [
        f"{item['id']} ({item['impact']}): {item['help']} — {node['target']} {node.get('failureSummary', '')}"
        for item in found
        for node in item["nodes"]
    ]


# Toasts and transitions (switch thumbs, 150 ms) finished: axe judges colours as drawn. Waited for as such (the Web
# Animations API lists running CSS transitions), not as a fixed 250 ms after each of the ~45 screens and dialogs.
AT_REST = "document.getAnimations().every((animation) => animation.playState !== 'running')"


def settle(page: Page) -> None:
    page.wait_for_function(SETTLED)
    page.wait_for_function(AT_REST)


@pytest.mark.parametrize("locale", ["nl-NL", "en-GB"])
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_no_axe_violations_on_any_screen(
    browser: Browser, exchange: LiveServer, scheme: Literal["light", "dark"], locale: str
) -> None:
    username = new_user(exchange, pin="2580")
    exchange.add_history(username)
    fresh = new_user(exchange)  # without a PIN: the first-run screen
    # The app follows the browser's language until the user chooses one: Dutch and English both checked.
    context = browser.new_context(viewport=VIEWPORT, locale=locale, color_scheme=scheme, bypass_csp=BYPASS_CSP)
    text = json.loads((I18N / f"{locale[:2]}.json").read_text())
    context.set_default_timeout(10_000)
    page = context.new_page()
    found: dict[str, list[str]] = {}
    try:
        page.goto(exchange.url + "/")
        settle(page)
        found["login"] = violations(page)
        page.fill("#username", fresh)
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_selector("#new-pin")
        settle(page)
        found["pin-setup"] = violations(page)
        page.evaluate("localStorage.clear()")
        page.goto(exchange.url + "/#/login")
        page.reload()
        settle(page)
        page.fill("#username", username)
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_selector(".tiles")
        for screen in SCREENS:
            page.goto(f"{exchange.url}/#/{screen}")
            settle(page)
            found[screen] = violations(page)
        # One contact opened from the list (its route carries the contact's id).
        page.goto(f"{exchange.url}/#/contacts")
        settle(page)
        page.locator(".list-row a.row-body").first.click()
        settle(page)
        found["contact"] = violations(page)
        # The dialogs, open over their screens.
        page.goto(f"{exchange.url}/#/service/call-forwarding-always")
        settle(page)
        page.get_by_role("switch", name=text["field.active"]).check()
        page.get_by_label(text["field.destination"]).fill("+31201234999")
        page.get_by_role("button", name=text["action.save"]).click()
        page.wait_for_selector("dialog[open]")
        found["step-up dialog"] = violations(page)
        page.keyboard.press("Escape")
        page.goto(f"{exchange.url}/#/calls")
        settle(page)
        page.get_by_role("link", name=f"{text['action.call']} Manager").click()
        page.wait_for_selector("dialog[open]")
        found["number choice dialog"] = violations(page)
        page.keyboard.press("Escape")
        page.goto(f"{exchange.url}/#/dialpad")
        settle(page)
        page.get_by_role("button", name=text["dialpad.menu"]).click()
        page.wait_for_selector("dialog[open]")
        found["dialpad menu"] = violations(page)
    finally:
        context.close()
    problems = {screen: lines for screen, lines in found.items() if lines}
    assert not problems, "\n".join(f"{screen}: {line}" for screen, lines in problems.items() for line in lines)


def test_keyboard_focus_is_never_hidden_under_the_bars(page: Page, exchange: LiveServer) -> None:
    """WCAG 2.4.11: a control reached with Tab is scrolled clear of the fixed tab bar, the sticky top bar and a
    screen's sticky save bar, not left behind one of them."""
    username = new_user(exchange, pin="2580")
    log_in(page, exchange, username)
    # Every bar drawn over the content (fixed or sticky), other than one the focused control is in, must be clear of
    # the control's whole box.
    obscured = """() => {
      const focused = document.activeElement;
      if (!focused || focused === document.body) return null;
      const box = focused.getBoundingClientRect();
      for (const bar of document.querySelectorAll('.tabbar, .topbar, .actions.sticky')) {
        const over = bar.getBoundingClientRect();
        if (!bar.contains(focused) && box.bottom > over.top && box.top < over.bottom)
          return `${focused.outerHTML.slice(0, 60)} under ${bar.className}`;
      }
      return null;
    }"""
    covered = []
    # Screens several times the viewport's height; the personal assistant has a sticky save bar.
    for screen in ("app-settings", "service/personal-assistant", "service/simultaneous-ring"):
        page.goto(f"{exchange.url}/#/{screen}")
        settle(page)
        for _ in range(40):
            page.keyboard.press("Tab")
            found = page.evaluate(obscured)
            if found:
                covered.append(f"{screen}: {found}")
    assert covered == []
