"""Placing calls in real Chromium (SPEC D1, D2, D9): the number choice with "don't ask again", the dialpad
with the identity in use and its menu, and the "always ask" call method.

The app asks the exchange to place calls (POST /me/calls); this test exchange runs no call processing (as an
API-only node), answers 409 "not running", and the app then hands the number to the phone's dialer with a tel:
link (against an exchange that places calls: test_calling_exchange.py). A headless browser has no dialer, so
the page records tel: links the app opens (and stops them there) — the app's own code path is unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.web.live_server import CHROMIUM, LiveServer
from tests.web.test_app_browser import api, log_in, new_user, wait_ready

pytestmark = pytest.mark.browser

RECORD_DIALLED = """
window.dialled = [];
document.addEventListener("click", (event) => {
  const link = event.target.closest && event.target.closest('a[href^="tel:"]');
  if (link && link.hidden) { window.dialled.push(link.getAttribute("href")); event.preventDefault(); }
}, true);
"""


def put(page: Page, exchange: LiveServer, path: str, body: dict[str, Any]) -> None:
    token = page.evaluate("localStorage.getItem('hipper.token')")
    response = httpx.put(f"{exchange.url}/api/v1{path}", json=body, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text


def dialled(page: Page) -> list[str]:
    result: list[str] = page.evaluate("window.dialled")
    return result


NOT_RUNNING = "call processing is not running on this node"


def expect_call(
    page: Page,
    action: Callable[[], None],
    *,
    to: str,
    tel: str,
    identity: str,
    method: str,
    refused: str = NOT_RUNNING,
    code: str = "no_call_processing",
) -> None:
    """Run `action` and check the call it places: the app asks the exchange (POST /me/calls with the chosen number,
    identity and method); the exchange cannot place it and answers 409 with `refused` (this module's exchange
    runs no call processing: "not running"). The app then says so, in Dutch, and that the callee would see the
    mobile number; the user chooses the phone's dialer, which gets the number as a tel: link."""
    before = len(dialled(page))
    with page.expect_response(lambda r: r.url.endswith("/api/v1/me/calls") and r.request.method == "POST") as placed:
        action()
    assert placed.value.request.post_data_json == {"to": to, "identity": identity, "method": method}
    assert placed.value.status == 409
    assert placed.value.json()["detail"] == refused
    assert placed.value.json()["code"] == code  # what the app branches on (not the English text)
    choice = page.get_by_role("dialog", name="Bellen via de centrale lukt nu niet")
    expect(choice).to_contain_text("ziet dan uw mobiele nummer")
    assert len(dialled(page)) == before  # nothing dialled behind the user's back
    choice.get_by_role("button", name="Bellen met mijn mobiel").click()
    page.wait_for_function(f"window.dialled.length === {before + 1}")
    assert dialled(page)[-1] == tel
    # The fallback is the answer to that 409: the user is not shown the exchange's error as well.
    expect(page.get_by_role("status").filter(has_text=refused)).to_have_count(0)


def test_call_back_asks_for_the_number_until_told_not_to(page: Page, exchange: LiveServer) -> None:
    username = new_user(exchange, pin="2580")
    exchange.add_history(username)
    log_in(page, exchange, username)
    page.evaluate(RECORD_DIALLED)
    page.goto(exchange.url + "/#/calls")
    wait_ready(page)
    page.get_by_role("link", name="Bellen Manager").click()
    dialog = page.get_by_role("dialog", name="Bellen")
    choices = dialog.get_by_role("group", name="Bellen met nummer").get_by_role("radio")
    expect(choices).to_have_count(3)  # company, direct, mobile (fixed-mobile licensed)
    expect(dialog.get_by_role("radio", name="Direct nummer")).to_be_checked()
    dialog.get_by_role("radio", name="Bedrijfsnummer").check()
    dialog.get_by_role("checkbox", name="Niet meer vragen").check()
    expect_call(
        page,
        dialog.get_by_role("button", name="Bellen").click,
        to="+31612345678",
        tel="tel:+31612345678",
        identity="company",
        method="via_exchange",
    )
    expect(dialog).to_be_hidden()
    stored = api(page, exchange, "/me/services/outgoing-identity")
    assert stored["ask_each_call"] is False
    assert stored["fixed"] == "company"
    # Not asked again: the next call goes straight out.
    expect_call(
        page,
        page.get_by_role("link", name="Bellen Receptie").click,
        to="+31301234567",
        tel="tel:+31301234567",
        identity="company",
        method="via_exchange",
    )
    expect(page.get_by_role("dialog")).to_have_count(0)

    # Calling back from a voicemail, with the question switched on again in the outgoing-identity settings.
    put(page, exchange, "/me/services/outgoing-identity", {**stored, "ask_each_call": True})
    page.get_by_role("link", name="Voicemail").click()
    wait_ready(page)
    page.get_by_role("link", name="Manager").click()
    wait_ready(page)
    page.get_by_role("link", name="Bellen").click()
    dialog = page.get_by_role("dialog", name="Bellen")
    expect(dialog.get_by_role("radio", name="Bedrijfsnummer")).to_be_checked()
    dialog.get_by_role("button", name="Annuleren").click()
    expect(dialog).to_be_hidden()
    page.wait_for_timeout(300)
    assert len(dialled(page)) == 2  # cancelled: nothing dialled


def test_dialpad_shows_and_changes_the_identity_and_adds_a_number(page: Page, exchange: LiveServer) -> None:
    username = new_user(exchange, pin="2580")
    log_in(page, exchange, username)
    page.evaluate(RECORD_DIALLED)
    page.goto(exchange.url + "/#/dialpad")
    wait_ready(page)
    direct = api(page, exchange, "/me")["numbers"]["direct"]
    expect(page.locator("#dial-identity")).to_have_text(f"U belt met Direct nummer {direct}")
    page.get_by_role("button", name="Menu").click()
    page.get_by_role("button", name="Uitgaand nummer wijzigen").click()
    dialog = page.get_by_role("dialog", name="Uitgaand nummer wijzigen")
    dialog.get_by_role("radio", name="Bedrijfsnummer").check()
    dialog.get_by_role("button", name="Opslaan").click()
    expect(page.locator("#dial-identity")).to_have_text("U belt met Bedrijfsnummer +31201234000")
    assert api(page, exchange, "/me/services/outgoing-identity")["fixed"] == "company"

    # Typed with the keys; the dialpad does not ask for the identity (it shows the one in use).
    for key in "0612345670":
        page.get_by_role("button", name=key, exact=True).click()
    expect(page.get_by_label("Te bellen nummer")).to_have_value("0612345670")
    page.get_by_role("button", name="Laatste cijfer wissen").click()
    page.get_by_role("button", name="9", exact=True).click()
    expect_call(
        page,
        page.get_by_role("button", name="Bellen", exact=True).click,
        to="0612345679",
        tel="tel:0612345679",
        identity="company",
        method="via_exchange",
    )

    page.get_by_role("button", name="Menu").click()
    page.get_by_role("button", name="Nummer toevoegen aan persoonlijke lijst").click()
    dialog = page.get_by_role("dialog", name="Contact toevoegen")
    expect(dialog.get_by_label("Telefoonnummer")).to_have_value("0612345679")
    dialog.get_by_label("Voornaam").fill("Loodgieter")
    dialog.get_by_role("button", name="Opslaan").click()
    expect(dialog).to_be_hidden()
    personal = [c for c in api(page, exchange, "/me/contacts")["contacts"] if c["list"] == "personal"]
    assert [(c["first_name"], c["numbers"][0]["number"]) for c in personal] == [("Loodgieter", "+31612345679")]


def test_always_ask_offers_the_call_method(page: Page, exchange: LiveServer) -> None:
    username = new_user(exchange, pin="2580")
    log_in(page, exchange, username)
    page.goto(exchange.url + "/#/service/call-method")
    wait_ready(page)
    page.get_by_role("radio", name="Altijd vragen").check()
    page.get_by_role("button", name="Opslaan").click()
    expect(page.get_by_role("status").filter(has_text="Opgeslagen")).to_be_visible()
    assert api(page, exchange, "/me/services/call-method")["method"] == "ask"

    page.evaluate(RECORD_DIALLED)
    page.goto(exchange.url + "/#/dialpad")
    wait_ready(page)
    page.get_by_label("Te bellen nummer").fill("+31 20 555 0101")
    page.get_by_role("button", name="Bellen", exact=True).click()
    dialog = page.get_by_role("dialog", name="Bellen")
    methods = dialog.get_by_role("group", name="Hoe wilt u bellen?")
    expect(methods.get_by_role("radio")).to_have_count(3)
    methods.get_by_role("radio", name="Bel mobiel").check()
    dialog.get_by_role("button", name="Bellen").click()
    page.wait_for_function("window.dialled.length === 1")
    assert dialled(page) == ["tel:+31205550101"]

    # The exchange calls the user back first (click-to-dial).
    page.get_by_role("button", name="Bellen", exact=True).click()
    dialog = page.get_by_role("dialog", name="Bellen")
    dialog.get_by_role("radio", name="Centrale belt terug").check()
    expect_call(
        page,
        dialog.get_by_role("button", name="Bellen").click,
        to="+31 20 555 0101",
        tel="tel:+31205550101",
        identity="direct",
        method="callback",
    )


@pytest.fixture(scope="module")
def exchange_without_access_number(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """An exchange that runs call processing but has no access number configured (call_access_number unset)."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium is not installed here")
    server = LiveServer(tmp_path_factory.mktemp("exchange") / "data", call_processing=True)
    server.start()
    yield server
    server.stop()


def test_via_the_exchange_without_an_access_number_the_phone_dials(
    page: Page, exchange_without_access_number: LiveServer
) -> None:
    exchange = exchange_without_access_number
    username = new_user(exchange, pin="2580")
    log_in(page, exchange, username)
    assert api(page, exchange, "/me/services/call-method")["method"] == "via_exchange"
    page.evaluate(RECORD_DIALLED)
    page.goto(exchange.url + "/#/dialpad")
    wait_ready(page)
    page.get_by_label("Te bellen nummer").fill("020 765 4321")
    expect_call(
        page,
        page.get_by_role("button", name="Bellen", exact=True).click,
        to="020 765 4321",
        tel="tel:0207654321",
        identity="direct",
        method="via_exchange",
        refused="this exchange has no access number for calls via the exchange",
        code="no_access_number",
    )
