"""Screenshots of every Hipper+ screen at 360×740, light and dark, into docs/screens/.

Runs a real exchange (SQLite in a temp dir) and real headless Chromium; prints any console error or
horizontal overflow it sees, so a glance at the output tells whether a screen broke.

Run: .venv/bin/python bench/web/screens.py (only the in-call screens, which need SIPp: add `in-call`)
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Literal

from playwright.sync_api import Browser, ConsoleMessage, Page, ViewportSize, expect, sync_playwright

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.web.live_server import CHROMIUM, CHROMIUM_ARGS, PASSWORD, LiveServer  # noqa: E402
from tests.web.phones import Phones, done_with, sip_settings  # noqa: E402
from tests.web.screens import SCREENS  # noqa: E402

OUT = ROOT / "docs" / "screens"
VIEWPORT: ViewportSize = {"width": 360, "height": 740}
Scheme = Literal["light", "dark"]
SCHEMES: tuple[Scheme, ...] = ("light", "dark")


SETTLED = "document.documentElement.dataset.ready === 'true' && !document.documentElement.dataset.busy"


def settle(page: Page) -> None:
    page.wait_for_function(SETTLED)
    page.wait_for_timeout(150)


def console_error(message: ConsoleMessage, problems: list[str]) -> None:
    if message.type == "error":
        problems.append(f"console: {message.text}")


def check(page: Page, name: str, problems: list[str]) -> None:
    overflow = page.evaluate("document.documentElement.scrollWidth > window.innerWidth")
    if overflow:
        problems.append(f"{name}: wider than the screen")


def shoot(page: Page, name: str, scheme: str, problems: list[str]) -> None:
    check(page, name, problems)
    page.screenshot(path=str(OUT / f"{name.replace('/', '-')}-{scheme}.png"), full_page=False)


def log_in(page: Page, url: str) -> None:
    page.goto(url + "/#/login")
    settle(page)
    page.fill("#username", "anna")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector(".tiles")


def passkey_step_up(browser: Browser, server: LiveServer, scheme: Scheme, problems: list[str]) -> None:
    """The step-up dialog once this device has a passkey: Chromium's virtual authenticator, on localhost (a
    WebAuthn relying party is a domain, never an IP address)."""
    url = f"http://localhost:{server.port}"
    context = browser.new_context(
        bypass_csp=True, viewport=VIEWPORT, color_scheme=scheme, locale="nl-NL", device_scale_factor=1
    )
    page = context.new_page()
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    options = {"protocol": "ctap2", "transport": "internal", "hasResidentKey": True, "hasUserVerification": True}
    cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {**options, "isUserVerified": True}})
    log_in(page, url)
    page.goto(url + "/#/profile")
    settle(page)
    page.get_by_role("switch", name="Vingerafdruk / Face ID").check()
    page.get_by_role("dialog").get_by_label("Cijfercode").fill("2580")
    page.get_by_role("dialog").get_by_role("button", name="Bevestigen").click()
    # Registered once the exchange confirmed it (the switch itself flips at the tap).
    expect(page.get_by_role("status").filter(has_text="Vingerafdruk / Face ID staat aan.")).to_be_visible()
    page.get_by_role("button", name="Uitloggen").click()
    log_in(page, url)  # a new session: no step-up yet
    page.goto(url + "/#/service/remote-office")
    settle(page)
    page.get_by_label("Telefoonnummer").fill("+31201234998")
    page.get_by_role("button", name="Opslaan").click()
    page.wait_for_selector("dialog[open]")
    page.wait_for_timeout(150)
    shoot(page, "step-up-passkey", scheme, problems)
    # Leave the demo user as it was for the next colour scheme: this device's passkey removed again.
    page.keyboard.press("Escape")
    page.goto(url + "/#/profile")
    settle(page)
    page.get_by_role("switch", name="Vingerafdruk / Face ID").uncheck()
    expect(page.get_by_role("status").filter(has_text="Vingerafdruk / Face ID staat uit.")).to_be_visible()
    context.close()


def in_call(browser: Browser, problems: list[str]) -> None:
    """The in-call screen (manual 5.2) with real calls: an exchange with call processing, SIPp desk phones and a
    SIPp mobile network. Bram calls Anna's desk phone (one call, its actions), then Anna adds Carla: the contact
    picker, and the two calls of a consultation (the first on hold)."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = sip_settings()
        server = LiveServer(Path(tmp) / "data", call_processing=True, extra_settings=settings)
        server.start()
        phones = Phones.of(server, Path(tmp))
        try:
            people = [("anna", "Anna", "de Vries", "201", "+31612345601"), ("bram", "Bram", "Jansen", "202", None),
                      ("carla", "Carla", "Smit", "203", None)]  # fmt: skip
            for username, first, last, extension, mobile in people:
                server.add_user(username, pin="2580", first_name=first, last_name=last, extension=extension,
                                direct_number=f"+31201234{extension}", mobile_number=mobile)  # fmt: skip
                Phones.add_desk_phone(server, username)
            context = browser.new_context(
                bypass_csp=True, viewport=VIEWPORT, color_scheme="light", locale="nl-NL", device_scale_factor=1
            )
            page = context.new_page()
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            log_in(page, server.url)
            token = page.evaluate("localStorage.getItem('hipper.token')")
            for service, document in [
                ("fixed-mobile", {"fixed_rings": "desk"}),  # the mobile rings only for the consultation
                ("call-method", {"method": "callback", "callback_device": "mobile"}),
            ]:
                answer = page.request.put(f"{server.url}/api/v1/me/services/{service}", data=document,
                                          headers={"Authorization": f"Bearer {token}"})  # fmt: skip
                if not answer.ok:
                    problems.append(f"in-call: PUT {service} answered {answer.status}")
            # No call yet: the screen says so (also made by main() with every screen).
            page.goto(f"{server.url}/#/call")
            settle(page)
            for scheme in SCHEMES:
                page.emulate_media(color_scheme=scheme)
                page.wait_for_timeout(150)
                shoot(page, "call", scheme, problems)
            page.emulate_media(color_scheme="light")
            phones.desk_phone("anna")
            phones.call("bram", "201")
            page.goto(f"{server.url}/#/call")
            settle(page)
            expect(page.locator('.call-card[data-state="active"]')).to_have_count(1)
            page.wait_for_function("document.querySelector('.duration').textContent >= '0:03'")
            for scheme in SCHEMES:
                page.emulate_media(color_scheme=scheme)
                page.wait_for_timeout(150)
                shoot(page, "in-call", scheme, problems)
            page.emulate_media(color_scheme="light")
            # Every other screen shows the call in a bar that leads back here.
            page.goto(f"{server.url}/#/overview")
            settle(page)
            expect(page.locator("#callbar")).to_be_visible()
            shoot(page, "in-call-bar", "light", problems)
            page.goto(f"{server.url}/#/call")
            settle(page)
            phones.mobile()
            phones.desk_phone("carla")
            page.get_by_role("button", name="Toevoegen").click()
            picker = page.get_by_role("dialog", name="Toevoegen")
            picker.get_by_role("searchbox").fill("Smit")
            page.wait_for_timeout(150)
            shoot(page, "in-call-add", "light", problems)
            picker.get_by_role("button", name="Carla Smit Toestelnummer · 203").click()
            expect(page.locator('.call-card[data-state="held"]')).to_have_count(1)
            consultation = page.locator(".call-card", has_text="Ruggespraak")
            expect(consultation).to_have_attribute("data-state", "active", timeout=15_000)
            consultation.locator(".call-head").click()
            page.wait_for_function("!document.getElementById('toast').classList.contains('show')")
            for scheme in SCHEMES:
                page.emulate_media(color_scheme=scheme)
                page.wait_for_timeout(150)
                shoot(page, "in-call-consultation", scheme, problems)
            context.close()
        finally:
            phones.stop()
            server.stop()
            done_with(settings)


def in_call_only() -> None:
    """`screens.py in-call`: only the in-call screenshots."""
    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        in_call(browser, problems)
        browser.close()
    for problem in sorted(set(problems)):
        print("PROBLEM", problem)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        server = LiveServer(Path(tmp) / "data")
        server.start()
        try:
            server.add_user(
                "anna",
                pin="2580",
                first_name="Anna",
                last_name="de Vries",
                extension="201",
                direct_number="+31201234101",
                mobile_number="+31612345601",
            )
            server.add_history("anna")
            server.add_user(
                "bram", first_name="Bram", last_name="Jansen", extension="202", mobile_number="+31612345602"
            )
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                for scheme in SCHEMES:
                    context = browser.new_context(
                        bypass_csp=True, viewport=VIEWPORT, color_scheme=scheme, locale="nl-NL", device_scale_factor=1
                    )
                    page = context.new_page()
                    page.on("console", lambda message: console_error(message, problems))
                    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
                    page.goto(server.url + "/")
                    settle(page)
                    shoot(page, "login", scheme, problems)
                    # First login of a user without a PIN shows the PIN setup.
                    page.fill("#username", "bram")
                    page.fill("#password", PASSWORD)
                    page.click("button[type=submit]")
                    page.wait_for_selector("#new-pin")
                    shoot(page, "pin-setup", scheme, problems)
                    page.evaluate("localStorage.clear()")
                    page.goto(server.url + "/#/login")
                    page.reload()
                    settle(page)
                    page.fill("#username", "anna")
                    page.fill("#password", PASSWORD)
                    page.click("button[type=submit]")
                    page.wait_for_selector(".tiles")
                    for screen in SCREENS:
                        if screen == "explain":
                            continue  # below, with a result
                        page.goto(f"{server.url}/#/{screen}")
                        settle(page)
                        shoot(page, screen, scheme, problems)
                    # D2: calling back asks which number to call with.
                    page.goto(f"{server.url}/#/calls")
                    settle(page)
                    page.get_by_role("link", name="Bellen Manager").click()
                    page.wait_for_selector("dialog[open]")
                    page.wait_for_timeout(150)
                    shoot(page, "call-choice", scheme, problems)
                    page.keyboard.press("Escape")
                    # One contact, opened from the list: every number, each called on its own.
                    page.goto(f"{server.url}/#/contacts")
                    settle(page)
                    page.get_by_role("searchbox").fill("bram")
                    page.locator(".list-row a.row-body").first.click()
                    settle(page)
                    shoot(page, "contact", scheme, problems)
                    page.goto(f"{server.url}/terms.html")
                    page.wait_for_load_state()
                    shoot(page, "terms", scheme, problems)
                    page.goto(f"{server.url}/#/explain")
                    settle(page)
                    page.get_by_label("Nummer van de beller").fill("+31612345678")
                    page.get_by_role("button", name="Toon wat er gebeurt").click()
                    page.wait_for_selector("ol.plan li")
                    shoot(page, "explain", scheme, problems)
                    page.goto(f"{server.url}/#/service/call-forwarding-always")
                    settle(page)
                    page.get_by_label("Doorschakelen naar").fill("+31201234999")
                    page.get_by_role("button", name="Opslaan").click()
                    page.wait_for_selector("dialog[open]")
                    shoot(page, "step-up", scheme, problems)
                    page.keyboard.press("Escape")
                    # Started without the exchange: the offline screen with this device's last profile.
                    page.goto(f"{server.url}/#/overview")
                    settle(page)
                    page.wait_for_function("navigator.serviceWorker.controller !== null")
                    context.set_offline(True)
                    page.reload()
                    page.wait_for_selector(".offline")
                    page.wait_for_timeout(150)
                    shoot(page, "offline", scheme, problems)
                    context.set_offline(False)
                    context.close()
                    passkey_step_up(browser, server, scheme, problems)
                # English follows the browser's language.
                context = browser.new_context(bypass_csp=True, viewport=VIEWPORT, color_scheme="light", locale="en-GB")
                page = context.new_page()
                page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
                page.goto(server.url + "/")
                settle(page)
                page.fill("#username", "anna")
                page.fill("#password", PASSWORD)
                page.click("button[type=submit]")
                page.wait_for_selector(".tiles")
                for screen in ("overview", "service/personal-assistant"):
                    page.goto(f"{server.url}/#/{screen}")
                    settle(page)
                    shoot(page, f"{screen}-en", "light", problems)
                context.close()
                in_call(browser, problems)
                browser.close()
        finally:
            server.stop()
    # The step-up screenshot is made by a refused save on purpose; Chromium logs that 403.
    # The offline screenshot loses the network on purpose; Chromium logs those failed requests.
    problems = [p for p in problems if "status of 403" not in p and "ERR_INTERNET_DISCONNECTED" not in p]
    for problem in sorted(set(problems)):
        print("PROBLEM", problem)
    print(f"screens written to {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    in_call_only() if sys.argv[1:] == ["in-call"] else main()
