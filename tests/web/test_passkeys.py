"""Passkeys in real Chromium (SPEC A2/A3): Chromium's virtual authenticator (CDP WebAuthn domain) plays the
phone's fingerprint sensor. The app is loaded from `localhost`: a WebAuthn relying party cannot be an IP."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from playwright.sync_api import CDPSession, Page, expect

from tests.web.live_server import PASSWORD, LiveServer
from tests.web.test_accessibility import violations
from tests.web.test_app_browser import api, new_user, wait_ready

pytestmark = pytest.mark.browser


def platform_authenticator(page: Page) -> tuple[CDPSession, str]:
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    added: dict[str, Any] = cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )
    return cdp, added["authenticatorId"]


def log_in_on_localhost(page: Page, exchange: LiveServer, username: str) -> None:
    page.goto(f"http://localhost:{exchange.port}/")
    page.get_by_label("Gebruikersnaam").fill(username)
    page.get_by_label("Wachtwoord").fill(PASSWORD)
    page.get_by_role("button", name="Inloggen").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Overzicht")
    wait_ready(page)


def test_register_a_passkey_then_confirm_a_forwarding_number_with_it(page: Page, exchange: LiveServer) -> None:
    cdp, authenticator = platform_authenticator(page)
    username = new_user(exchange, pin="2580")
    log_in_on_localhost(page, exchange, username)

    page.goto(f"http://localhost:{exchange.port}/#/profile")
    wait_ready(page)
    switch = page.get_by_role("switch", name="Vingerafdruk / Face ID")
    expect(switch).not_to_be_checked()
    switch.check()
    # Adding a passkey is itself confirmed with the PIN (there is no passkey yet to confirm with).
    dialog = page.get_by_role("dialog", name="Bevestig met uw cijfercode")
    dialog.get_by_label("Cijfercode").fill("2580")
    dialog.get_by_role("button", name="Bevestigen").click()
    expect(page.get_by_role("status").filter(has_text="Vingerafdruk / Face ID staat aan.")).to_be_visible()
    expect(switch).to_be_checked()
    stored = api(page, exchange, "/me/passkeys")
    assert stored["enabled"] is True
    credentials = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})["credentials"]
    # CDP gives standard base64, the exchange base64url.
    on_device = [base64.b64decode(item["credentialId"]) for item in credentials]
    assert [base64.urlsafe_b64encode(raw).rstrip(b"=").decode() for raw in on_device] == [
        stored["credentials"][0]["credential_id"]
    ]

    # A new login session has no step-up yet: the next number change asks, and offers the passkey first.
    page.get_by_role("button", name="Uitloggen").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Inloggen")
    log_in_on_localhost(page, exchange, username)
    page.get_by_role("link", name="Inkomende oproepen").click()
    page.get_by_role("link", name="Doorschakelen alle gesprekken").click()
    wait_ready(page)
    page.get_by_role("switch", name="Actief").check()
    page.get_by_label("Doorschakelen naar").fill("+31 20 765 4321")
    page.get_by_role("button", name="Opslaan").click()
    dialog = page.get_by_role("dialog", name="Bevestig de wijziging")
    passkey = dialog.get_by_role("button", name="Vingerafdruk / Face ID gebruiken")
    expect(passkey).to_be_focused()
    expect(dialog.get_by_label("Of uw cijfercode")).to_be_visible()
    assert violations(page) == []  # axe-core on this variant of the dialog too
    passkey.click()
    expect(dialog).to_be_hidden()
    expect(page.get_by_role("status").filter(has_text="Opgeslagen")).to_be_visible()
    assert api(page, exchange, "/me/services/call-forwarding-always")["destination"] == "+31207654321"
    assert api(page, exchange, "/me/passkeys")["credentials"][0]["sign_count"] >= 1

    # Switching it off removes this device's passkey: the PIN is the only way again.
    page.goto(f"http://localhost:{exchange.port}/#/profile")
    wait_ready(page)
    page.get_by_role("switch", name="Vingerafdruk / Face ID").uncheck()
    expect(page.get_by_role("status").filter(has_text="Vingerafdruk / Face ID staat uit.")).to_be_visible()
    assert api(page, exchange, "/me/passkeys") == {"enabled": False, "credentials": []}


def test_a_refused_passkey_falls_back_to_the_pin(page: Page, exchange: LiveServer) -> None:
    cdp, authenticator = platform_authenticator(page)
    username = new_user(exchange, pin="2580")
    log_in_on_localhost(page, exchange, username)
    page.goto(f"http://localhost:{exchange.port}/#/profile")
    wait_ready(page)
    page.get_by_role("switch", name="Vingerafdruk / Face ID").check()
    dialog = page.get_by_role("dialog", name="Bevestig met uw cijfercode")
    # The step-up says what it confirms: adding the passkey, not a phone number.
    expect(dialog).to_contain_text("U voegt vingerafdruk / Face ID toe")
    expect(dialog).not_to_contain_text("telefoonnummer")
    dialog.get_by_label("Cijfercode").fill("2580")
    dialog.get_by_role("button", name="Bevestigen").click()
    expect(page.get_by_role("status").filter(has_text="staat aan")).to_be_visible()
    # The finger is not recognised any more.
    cdp.send("WebAuthn.setUserVerified", {"authenticatorId": authenticator, "isUserVerified": False})
    page.get_by_role("button", name="Uitloggen").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Inloggen")
    log_in_on_localhost(page, exchange, username)
    page.goto(f"http://localhost:{exchange.port}/#/service/remote-office")
    wait_ready(page)
    page.get_by_role("switch", name="Actief").check()
    page.get_by_label("Telefoonnummer").fill("+31 20 765 4322")
    page.get_by_role("button", name="Opslaan").click()
    dialog = page.get_by_role("dialog", name="Bevestig de wijziging")
    dialog.get_by_role("button", name="Vingerafdruk / Face ID gebruiken").click()
    expect(dialog.get_by_role("alert")).to_have_text("Dat is niet gelukt. Bevestig met uw cijfercode.")
    expect(dialog.get_by_label("Of uw cijfercode")).to_be_focused()
    dialog.get_by_label("Of uw cijfercode").fill("2580")
    dialog.get_by_role("button", name="Bevestigen").click()
    expect(dialog).to_be_hidden()
    assert api(page, exchange, "/me/services/remote-office")["destination"] == "+31207654322"
