"""End to end in real headless Chromium against a real exchange: the Hipper+ screens as a user walks them."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, FilePayload, Locator, Page, Route, expect

from tests.web.conftest import BYPASS_CSP
from tests.web.live_server import PASSWORD, LiveServer

pytestmark = pytest.mark.browser

_names = itertools.count(1)


SETTLED = "document.documentElement.dataset.ready === 'true' && !document.documentElement.dataset.busy"


def new_user(exchange: LiveServer, **fields: Any) -> str:
    username = f"walker{next(_names)}"
    exchange.add_user(
        username,
        first_name="Anna",
        last_name="de Vries",
        extension=str(300 + next(_names)),
        direct_number=f"+312012{next(_names):05d}",
        mobile_number=f"+316123{next(_names):05d}",
        **fields,
    )
    return username


def log_in(page: Page, exchange: LiveServer, username: str) -> None:
    page.goto(exchange.url + "/")
    page.get_by_label("Gebruikersnaam").fill(username)
    page.get_by_label("Wachtwoord").fill(PASSWORD)
    page.get_by_role("button", name="Inloggen").click()
    page.wait_for_function("location.hash !== '#/login' && document.querySelector('h1')?.textContent !== 'Inloggen'")


def api(page: Page, exchange: LiveServer, path: str) -> Any:
    """Read what the exchange stored, with the token the app keeps in localStorage."""
    token = page.evaluate("localStorage.getItem('hipper.token')")
    response = httpx.get(f"{exchange.url}/api/v1{path}", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    return response.json()


def eventually(read: Callable[[], Any], done: Callable[[Any], Any], seconds: float = 5) -> Any:
    """Read until `done` holds: for changes the page makes in the background."""
    deadline = time.monotonic() + seconds
    while True:
        value = read()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def saving_app_settings(page: Page) -> Any:
    """Around an action that saves the app settings: until the exchange answered the PUT. A switch or radio shows
    its new state before that, and a next change sent meanwhile may reach the exchange first."""
    return page.expect_response(
        lambda response: response.url.endswith("/api/v1/me/app-settings") and response.request.method == "PUT"
    )


def until(page: Page, done: Callable[[], bool], limit: float = 10.0, must: bool = True) -> bool:
    """Until `done()` holds; Playwright's sync API runs the page's event handlers (routes, responses) while it
    waits, so this waits in the page. `must`: a timeout fails the test; else it just says so."""
    deadline = time.monotonic() + limit
    while not done():
        if time.monotonic() > deadline:
            assert not must, "timed out"
            return False
        page.wait_for_timeout(20)
    return True


def toast(page: Page) -> Locator:
    """The app's message line (index.html #toast); other parts of a screen have the status role too (a pending
    action's "Een moment…"), so the role alone may name two elements."""
    return page.locator("#toast")


def wait_ready(page: Page) -> None:
    """Until the screen's data arrived (the app marks <html data-busy> while a screen loads)."""
    page.wait_for_function(SETTLED)


def test_first_login_sets_a_pin_then_shows_the_overview(page: Page, exchange: LiveServer) -> None:
    username = new_user(exchange)
    log_in(page, exchange, username)
    expect(page.get_by_role("heading", level=1)).to_have_text("Cijfercode instellen")
    page.get_by_label("Nieuwe cijfercode").fill("2580")
    page.get_by_label("Herhaal de cijfercode").fill("2581")
    page.get_by_role("button", name="Cijfercode opslaan").click()
    expect(page.get_by_role("alert")).to_have_text("De cijfercodes zijn niet gelijk.")
    page.get_by_label("Herhaal de cijfercode").fill("2580")
    page.get_by_role("button", name="Cijfercode opslaan").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Overzicht")
    for tile in ("Mijn profiel", "Uitgaande oproepen", "Inkomende oproepen"):
        expect(page.get_by_role("link", name=tile)).to_be_visible()
    assert api(page, exchange, "/me")["pin_set"] is True
    # Stays logged in: a reload (a new visit) goes straight to the overview.
    page.reload()
    expect(page.get_by_role("heading", level=1)).to_have_text("Overzicht")


def test_wrong_password_is_refused(page: Page, exchange: LiveServer) -> None:
    username = new_user(exchange, pin="2580")
    page.goto(exchange.url + "/")
    page.get_by_label("Gebruikersnaam").fill(username)
    page.get_by_label("Wachtwoord").fill("not it")
    page.get_by_role("button", name="Inloggen").click()
    expect(page.get_by_role("alert")).to_have_text("Gebruikersnaam of wachtwoord klopt niet.")


def test_forwarding_to_a_number_asks_for_the_pin_and_retries(page: Page, exchange: LiveServer) -> None:
    username = new_user(exchange, pin="2580")
    log_in(page, exchange, username)
    expect(page.get_by_role("heading", level=1)).to_have_text("Overzicht")
    page.get_by_role("link", name="Inkomende oproepen").click()
    page.get_by_role("link", name="Doorschakelen alle gesprekken").click()
    page.get_by_role("switch", name="Actief").check()
    page.get_by_label("Doorschakelen naar").fill("+31 20 765 4321")
    page.get_by_role("button", name="Opslaan").click()
    dialog = page.get_by_role("dialog", name="Bevestig met uw cijfercode")
    expect(dialog).to_be_visible()
    dialog.get_by_label("Cijfercode").fill("1111")
    dialog.get_by_role("button", name="Bevestigen").click()
    expect(dialog.get_by_role("alert")).to_have_text("Onjuiste cijfercode.")
    dialog.get_by_label("Cijfercode").fill("2580")
    dialog.get_by_role("button", name="Bevestigen").click()
    expect(dialog).to_be_hidden()
    expect(page.get_by_role("status").filter(has_text="Opgeslagen")).to_be_visible()
    stored = api(page, exchange, "/me/services/call-forwarding-always")
    assert stored["active"] is True
    assert stored["destination"] == "+31207654321"
    # The exchange's normalised number is what the screen shows now.
    expect(page.get_by_label("Doorschakelen naar")).to_have_value("+31207654321")


def test_cancelling_the_step_up_saves_nothing(page: Page, exchange: LiveServer) -> None:
    username = new_user(exchange, pin="2580")
    log_in(page, exchange, username)
    expect(page.get_by_role("heading", level=1)).to_have_text("Overzicht")
    page.goto(exchange.url + "/#/service/remote-office")
    page.get_by_label("Telefoonnummer").fill("+31207654321")
    page.get_by_role("button", name="Opslaan").click()
    page.get_by_role("dialog").get_by_role("button", name="Annuleren").click()
    expect(page.get_by_role("alert")).to_contain_text("niet bevestigd")
    assert api(page, exchange, "/me/services/remote-office")["destination"] is None


def test_the_voicemail_e_mail_address_asks_for_the_pin_in_its_own_words(page: Page, exchange: LiveServer) -> None:
    """Where messages go is guarded like a forwarding number (docs/security.md): the dialog says what it guards."""
    username = new_user(exchange, pin="2580")
    log_in(page, exchange, username)
    expect(page.get_by_role("heading", level=1)).to_have_text("Overzicht")
    page.goto(exchange.url + "/#/service/voicemail")
    page.get_by_role("switch", name="E-mail notificatie").check()
    page.get_by_label("E-mail", exact=True).fill("jan@example.nl")
    page.get_by_role("button", name="Opslaan").click()
    dialog = page.get_by_role("dialog", name="Bevestig met uw cijfercode")
    expect(dialog).to_contain_text("U wijzigt het e-mailadres van uw voicemail.")
    dialog.get_by_label("Cijfercode").fill("2580")
    dialog.get_by_role("button", name="Bevestigen").click()
    expect(dialog).to_be_hidden()
    expect(page.get_by_role("status").filter(has_text="Opgeslagen")).to_be_visible()
    assert api(page, exchange, "/me/services/voicemail")["email_address"] == "jan@example.nl"


def test_quick_settings_toggle_and_reorder_by_keyboard_and_drag(page: Page, exchange: LiveServer) -> None:
    username = new_user(exchange, pin="2580")
    log_in(page, exchange, username)
    quick = page.get_by_role("region", name="Snel instellen")
    quick.get_by_role("switch", name="Niet storen").check()
    expect(page.get_by_role("status").filter(has_text="Niet storen staat aan")).to_be_visible()
    assert api(page, exchange, "/me/services/do-not-disturb")["active"] is True

    page.get_by_role("link", name="Snel instellen aanpassen").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Snel instellen")
    rows = page.locator(".reorder-row label")
    before = rows.all_inner_texts()
    assert before[:3] == ["Niet storen", "Doorschakelen alle gesprekken", "Voicemail"]
    # Keyboard: the handle of the third row moves it up one place with the arrow key.
    page.get_by_role("button", name="Verplaats Voicemail").focus()
    page.keyboard.press("ArrowUp")
    expect(page.get_by_role("button", name="Verplaats Voicemail")).to_be_focused()
    assert rows.all_inner_texts()[:3] == ["Niet storen", "Voicemail", "Doorschakelen alle gesprekken"]
    # Drag: pull "Niet storen" by its handle below the next row.
    handle = page.get_by_role("button", name="Verplaats Niet storen").bounding_box()
    target = page.locator(".reorder-row").nth(1).bounding_box()
    assert handle is not None and target is not None
    page.mouse.move(handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2)
    page.mouse.down()
    page.mouse.move(handle["x"] + handle["width"] / 2, target["y"] + target["height"] * 0.7, steps=8)
    page.mouse.up()
    assert rows.all_inner_texts()[:2] == ["Voicemail", "Niet storen"]
    # Show one more on the overview.
    page.get_by_role("checkbox", name="Wisselgesprek").check()
    page.get_by_role("button", name="Opslaan").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Overzicht")
    saved = api(page, exchange, "/me/app-settings")["quick_settings"]
    assert saved == ["voicemail", "do-not-disturb", "call-forwarding-always", "call-waiting"]
    expect(quick.get_by_role("switch")).to_have_count(4)
    assert quick.get_by_role("switch").first.get_attribute("aria-label") is None
    expect(quick.locator(".switch-row label").first).to_have_text("Voicemail")


def test_theme_and_language_switch(page: Page, exchange: LiveServer) -> None:
    username = new_user(exchange, pin="2580")
    log_in(page, exchange, username)
    expect(page.get_by_role("heading", level=1)).to_have_text("Overzicht")
    page.goto(exchange.url + "/#/app-settings")
    with saving_app_settings(page):  # the theme shows at once, and is saved meanwhile
        page.get_by_role("radio", name="Donker").check()
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(15, 20, 27)"
    # click, not check: choosing a language draws the screen again in it, so the radio that was clicked is gone and
    # its successor is named "English" (check() re-finds it by the old name and would wait out its timeout).
    page.get_by_role("radio", name="English (Engels)").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("App settings")
    expect(page.get_by_role("radio", name="English", exact=True)).to_be_checked()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    stored = api(page, exchange, "/me/app-settings")
    assert (stored["theme"], stored["language"]) == ("dark", "en")
    # Both survive a new visit: they come back from the exchange and this device.
    page.reload()
    wait_ready(page)
    expect(page.get_by_role("heading", level=1)).to_have_text("App settings")
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")


def test_quick_changes_to_the_app_settings_reach_the_exchange_in_order(page: Page, exchange: LiveServer) -> None:
    """Dark, then at once light: the first save is held up on its way (a slow network), and the exchange must still
    end up with light — the app sends its saves one after another. Before, the second PUT overtook the held one,
    which then landed last and kept dark."""
    username = new_user(exchange, pin="2580")
    log_in(page, exchange, username)
    page.goto(exchange.url + "/#/app-settings")
    wait_ready(page)
    held: list[Route] = []
    answered: list[str] = []

    def hold_the_first(route: Route) -> None:
        if route.request.method == "PUT" and not held:
            held.append(route)
        else:
            route.continue_()

    page.route("**/api/v1/me/app-settings", hold_the_first)
    page.on("response", lambda r: answered.append(r.url) if r.request.method == "PUT" else None)
    page.get_by_role("radio", name="Donker").check()
    page.get_by_role("radio", name="Licht").check()
    expect(page.locator("html")).to_have_attribute("data-theme", "light")
    until(page, lambda: bool(held))
    # A second PUT sent meanwhile would be answered while the first is held: give it the moment it would take.
    # (Sent one after another, none is; a loaded machine can only make this test pass on the old code, not fail.)
    until(page, lambda: bool(answered), limit=1.0, must=False)
    held[0].continue_()
    until(page, lambda: len(answered) == 2)
    assert api(page, exchange, "/me/app-settings")["theme"] == "light"


SCREENS = {
    "profile": "Mijn profiel",
    "incoming": "Inkomende oproepen",
    "outgoing": "Uitgaande oproepen",
    "settings": "Instellingen",
    "calls": "Oproepen",
    "voicemails": "Oproepen",
    "contacts": "Contacten",
    "app-settings": "App-instellingen",
    "help": "Help",
}
SERVICE_SCREENS = [
    "call-forwarding-always",
    "call-forwarding-always-secondary",
    "remote-office",
    "fixed-mobile-rings",
    "personal-assistant",
    "simultaneous-ring",
    "call-forwarding-busy",
    "call-forwarding-no-answer",
    "call-forwarding-not-reachable",
    "do-not-disturb",
    "call-waiting",
    "night-forwarding",
    "anywhere",
    "fixed-mobile",
    "anonymous",
    "outgoing-identity",
    "call-method",
    "voicemail",
    "call-recording",
    "call-center-agent",
]


# Controls without an accessible name, and images of text without alternatives: the basics a screen reader needs.
UNNAMED_CONTROLS = """
() => [...document.querySelectorAll('input, button, select, textarea, a[href]')]
  .filter((el) => !el.closest('[hidden]') && el.type !== 'hidden')
  .filter((el) => {
    const labelled = el.labels && [...el.labels].some((label) => label.textContent.trim());
    const named = el.getAttribute('aria-label') || el.getAttribute('aria-labelledby') || el.getAttribute('title');
    const text = el.tagName !== 'INPUT' && el.textContent.trim();
    const placeholder = el.getAttribute('placeholder');
    return !(labelled || named || text || placeholder);
  })
  .map((el) => el.outerHTML.slice(0, 80))
"""


def test_every_screen_loads(page: Page, exchange: LiveServer) -> None:
    username = new_user(exchange, pin="2580")
    exchange.add_history(username)
    log_in(page, exchange, username)
    expect(page.get_by_role("link", name="U heeft 1 nieuwe voicemail")).to_be_visible()
    for path, title in SCREENS.items():
        page.goto(f"{exchange.url}/#/{path}")
        expect(page.get_by_role("heading", level=1)).to_have_text(title)
        wait_ready(page)
        expect(page.get_by_role("alert")).to_have_count(0)
        assert page.evaluate(UNNAMED_CONTROLS) == [], path
    failures = []
    for service in SERVICE_SCREENS:
        page.goto(f"{exchange.url}/#/service/{service}")
        wait_ready(page)
        if page.locator(".service-form").count() == 0 or page.get_by_role("alert").count():
            failures.append(service)
        overflow = page.evaluate("document.documentElement.scrollWidth > window.innerWidth")
        if overflow:
            failures.append(f"{service} is wider than 360 px")
        unnamed = page.evaluate(UNNAMED_CONTROLS)
        if unnamed:
            failures.append(f"{service}: controls without a name {unnamed}")
    assert not failures, failures


def test_voicemail_plays_and_is_marked_heard(page: Page, exchange: LiveServer) -> None:
    username = new_user(exchange, pin="2580")
    exchange.add_history(username)
    log_in(page, exchange, username)
    page.get_by_role("link", name="U heeft 1 nieuwe voicemail").click()
    page.get_by_role("link", name="Manager").click()
    player = page.get_by_label("Voicemail afspelen")
    expect(player).to_be_visible()
    page.wait_for_function("document.querySelector('audio').readyState >= 1")
    assert page.evaluate("document.querySelector('audio').duration") == pytest.approx(1.0, abs=0.05)
    expect(page.get_by_role("link", name="Bellen")).to_have_attribute("href", "tel:+31612345678")
    wait_ready(page)
    assert api(page, exchange, "/me/voicemails")["new_count"] == 0


def test_recent_calls_delete_several_at_once(page: Page, exchange: LiveServer) -> None:
    username = new_user(exchange, pin="2580")
    exchange.add_history(username)
    log_in(page, exchange, username)
    page.get_by_role("navigation", name="Hoofdmenu").get_by_role("link", name="Oproepen").click()
    expect(page.locator(".list-row")).to_have_count(3)
    page.get_by_role("button", name="Wijzigen").click()
    page.get_by_role("checkbox", name="Manager").check()
    page.get_by_role("checkbox", name="Receptie").check()
    page.get_by_role("button", name="Verwijderen (2)").click()
    expect(page.get_by_role("dialog")).to_contain_text("2 items verwijderen?")  # not "item(s)"
    page.get_by_role("dialog").get_by_role("button", name="Verwijderen").click()
    expect(page.locator(".list-row")).to_have_count(1)
    remaining = api(page, exchange, "/me/call-logs")["calls"]
    assert [call["remote_name"] for call in remaining] == ["Bram Jansen"]


def test_unlicensed_services_do_not_appear(page: Page, exchange: LiveServer) -> None:
    username = new_user(exchange, pin="2580", licences=["basic"])
    log_in(page, exchange, username)
    page.get_by_role("link", name="Inkomende oproepen").click()
    menu = page.locator(".card.menu")
    expect(menu.get_by_role("link", name="Niet storen")).to_be_visible()
    expect(menu.get_by_role("link", name="Persoonlijke Assistent")).to_have_count(0)
    page.goto(f"{exchange.url}/#/service/personal-assistant")
    expect(page.get_by_role("status").filter(has_text="niet beschikbaar")).to_be_visible()


def test_personal_assistant_reason_duration_and_exception(page: Page, exchange: LiveServer) -> None:
    username = new_user(exchange, pin="2580")
    log_in(page, exchange, username)
    page.goto(exchange.url + "/#/service/personal-assistant")
    wait_ready(page)
    page.get_by_role("switch", name="Actief").check()
    page.get_by_role("radio", name="Lunch").check()
    page.get_by_role("button", name="2 uur").click()
    expect(page.locator(".until-summary")).to_contain_text("Niet beschikbaar tot")
    page.get_by_role("button", name="Uitzondering toevoegen").click()
    page.get_by_label("Naam").fill("Manager")
    page.get_by_label("Telefoonnummer").fill("+31687654321")
    page.get_by_role("button", name="Opslaan").click()
    page.get_by_role("dialog").get_by_label("Cijfercode").fill("2580")
    page.get_by_role("dialog").get_by_role("button", name="Bevestigen").click()
    expect(page.get_by_role("status").filter(has_text="Opgeslagen")).to_be_visible()
    stored = api(page, exchange, "/me/services/personal-assistant")
    assert (stored["active"], stored["presence"]) == (True, "lunch")
    assert stored["exceptions"] == [{"name": "Manager", "number": "+31687654321"}]
    until = datetime.fromisoformat(stored["until"])
    assert abs((until - datetime.now(UTC)).total_seconds() - 7200) < 120
    # Removing the exception needs no step-up (no new number) and leaves the list empty.
    page.locator("summary", has_text="Manager").click()
    page.get_by_role("button", name="Manager verwijderen").click()
    page.get_by_role("button", name="Opslaan").click()
    expect(page.locator("summary", has_text="Manager")).to_have_count(0)
    stored = eventually(lambda: api(page, exchange, "/me/services/personal-assistant"), lambda d: not d["exceptions"])
    assert stored["exceptions"] == []


def logged_in_with_dnd_switch(page: Page, exchange: LiveServer) -> tuple[str, Locator]:
    """A new user logged in on the overview: the username, and the Do Not Disturb quick switch (off)."""
    username = new_user(exchange, pin="2580")
    log_in(page, exchange, username)
    switch = page.get_by_role("region", name="Snel instellen").get_by_role("switch", name="Niet storen")
    expect(switch).not_to_be_checked()
    return username, switch


def dnd_on_from_another_device(exchange: LiveServer, username: str) -> None:
    """`username` switches Do Not Disturb on from a second session (another device)."""
    login = httpx.post(f"{exchange.url}/api/v1/auth/login", json={"username": username, "password": PASSWORD})
    headers = {"Authorization": f"Bearer {login.json()['token']}"}
    changed = httpx.put(f"{exchange.url}/api/v1/me/services/do-not-disturb", json={"active": True}, headers=headers)
    assert changed.status_code == 200, changed.text


def test_a_change_from_another_device_shows_live(page: Page, exchange: LiveServer) -> None:
    username, switch = logged_in_with_dnd_switch(page, exchange)
    # Another device of the same user switches Do Not Disturb on; the overview follows through /events.
    dnd_on_from_another_device(exchange, username)
    expect(switch).to_be_checked()


def test_a_change_that_arrives_while_the_device_is_offline_shows_once_it_is_back(
    page: Page, exchange: LiveServer
) -> None:
    """The event comes, but re-reading the data fails (no connection): the app catches up when it is online."""
    username, switch = logged_in_with_dnd_switch(page, exchange)
    failed: list[str] = []
    page.on("requestfailed", lambda request: failed.append(request.url))
    page.context.set_offline(True)
    try:
        dnd_on_from_another_device(exchange, username)
        for _ in range(100):  # the event arrives and the app's re-read of /me fails
            if any(url.endswith("/api/v1/me") for url in failed):
                break
            page.wait_for_timeout(100)  # (Playwright delivers page events while it waits, not in time.sleep)
        assert any(url.endswith("/api/v1/me") for url in failed), failed
        expect(switch).not_to_be_checked()  # nothing to show yet
    finally:
        page.context.set_offline(False)
    expect(switch).to_be_checked()


def test_the_shell_opens_offline(page: Page, exchange: LiveServer) -> None:
    page.goto(exchange.url + "/")
    wait_ready(page)
    page.wait_for_function("navigator.serviceWorker.ready.then(() => true)")
    page.wait_for_function("caches.has('hipper-shell-v1')")
    page.context.set_offline(True)
    try:
        page.reload()
        wait_ready(page)
        expect(page.get_by_role("heading", level=1)).to_have_text("Inloggen")
        page.get_by_label("Gebruikersnaam").fill("nobody")
        page.get_by_label("Wachtwoord").fill("whatever")
        page.get_by_role("button", name="Inloggen").click()
        expect(page.get_by_role("alert")).to_contain_text("Geen verbinding")
    finally:
        page.context.set_offline(False)


def test_explain_shows_the_exchanges_plan(page: Page, exchange: LiveServer) -> None:
    username = new_user(exchange, pin="2580")
    log_in(page, exchange, username)
    page.goto(exchange.url + "/#/incoming")
    page.get_by_role("link", name="Wat gebeurt er als ik gebeld word?").click()
    page.get_by_label("Nummer van de beller").fill("+31612345678")
    page.get_by_role("button", name="Toon wat er gebeurt").click()
    expect(page.locator("ol.plan li").first).to_be_visible()


def test_contacts_search_and_whatsapp_for_dutch_mobiles(page: Page, exchange: LiveServer) -> None:
    exchange.add_user("colleague-mobile", first_name="Mila", last_name="Smit", mobile_number="+31687650001")
    exchange.add_user("colleague-desk", first_name="Daan", last_name="Bakker", extension="299")
    username = new_user(exchange, pin="2580")
    log_in(page, exchange, username)
    page.get_by_role("navigation", name="Hoofdmenu").get_by_role("link", name="Contacten").click()
    page.get_by_role("searchbox", name="Zoeken").fill("mila")
    rows = page.locator(".list-row")
    expect(rows).to_have_count(1)
    expect(rows.first.get_by_role("link", name="WhatsApp Mila Smit")).to_have_attribute(
        "href", "https://wa.me/31687650001"
    )
    page.get_by_role("searchbox", name="Zoeken").fill("daan")
    expect(rows).to_have_count(1)
    expect(rows.first.get_by_role("link", name="WhatsApp Daan Bakker")).to_have_count(0)


def test_profile_changes_the_pin_and_logs_out(page: Page, exchange: LiveServer) -> None:
    username = new_user(exchange, pin="2580")
    log_in(page, exchange, username)
    page.get_by_role("link", name="Mijn profiel").click()
    expect(page.get_by_text(username, exact=True)).to_be_visible()
    expect(page.get_by_text("Mobiel nummer")).to_be_visible()
    page.get_by_role("button", name="Cijfercode wijzigen").click()
    dialog = page.get_by_role("dialog", name="Cijfercode wijzigen")
    dialog.get_by_label("Huidige cijfercode").fill("2580")
    dialog.get_by_label("Nieuwe cijfercode (4–8 cijfers)").fill("135790")
    dialog.get_by_label("Herhaal de nieuwe cijfercode").fill("135790")
    dialog.get_by_role("button", name="Opslaan").click()
    expect(dialog).to_be_hidden()
    token = page.evaluate("localStorage.getItem('hipper.token')")
    step_up = httpx.post(
        f"{exchange.url}/api/v1/auth/step-up", json={"pin": "135790"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert step_up.status_code == 200, step_up.text
    page.get_by_role("button", name="Wachtwoord wijzigen").click()
    dialog = page.get_by_role("dialog", name="Wachtwoord wijzigen")
    dialog.get_by_label("Huidig wachtwoord").fill(PASSWORD)
    dialog.get_by_label("Nieuw wachtwoord").fill("a much longer secret 2")
    dialog.get_by_role("button", name="Opslaan").click()
    expect(dialog).to_be_hidden()
    page.get_by_role("button", name="Uitloggen").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Inloggen")
    assert page.evaluate("localStorage.getItem('hipper.token')") is None
    gone = httpx.get(f"{exchange.url}/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert gone.status_code == 401
    again = {"username": username, "password": "a much longer secret 2"}
    assert httpx.post(f"{exchange.url}/api/v1/auth/login", json=again).status_code == 200


def record_greeting(page: Page, name: str) -> None:
    page.get_by_role("button", name="Nieuwe begroeting opnemen").click()
    dialog = page.get_by_role("dialog", name="Nieuwe begroeting opnemen")
    dialog.get_by_label("Naam van de begroeting").fill(name)
    dialog.get_by_role("button", name="Opnemen").click()
    expect(dialog.get_by_role("status")).to_have_text("Opname loopt…")
    page.wait_for_timeout(1500)
    dialog.get_by_role("button", name="Stoppen").click()
    expect(dialog.get_by_role("status")).to_have_text("Luister de opname terug en kies Opslaan.")
    dialog.get_by_role("button", name="Opslaan").click()
    expect(dialog).to_be_hidden()


def test_record_a_greeting_and_make_it_active(page: Page, exchange: LiveServer) -> None:
    username = new_user(exchange, pin="2580")
    log_in(page, exchange, username)
    page.goto(exchange.url + "/#/service/voicemail")
    wait_ready(page)
    record_greeting(page, "Vakantie")
    no_answer = page.get_by_role("group", name="Bij geen gehoor")
    expect(no_answer.get_by_role("radio", name="Standaardbegroeting (noemt uw nummer)")).to_be_checked()
    no_answer.get_by_role("radio", name="Vakantie").check()
    # The toast of the upload may still show "Opgeslagen", so wait for the exchange itself.
    greetings = eventually(lambda: api(page, exchange, "/me/greetings")["greetings"], lambda g: g and g[0]["active"])
    assert [(g["name"], g["active"], g["active_busy"]) for g in greetings] == [("Vakantie", True, False)]
    # About 1.5 s were recorded; a busy machine stretches that.
    assert 500 <= greetings[0]["duration_ms"] <= 10_000


def test_a_busy_greeting_of_its_own_and_back_to_the_same_as_no_answer(page: Page, exchange: LiveServer) -> None:
    username = new_user(exchange, pin="2580")
    log_in(page, exchange, username)
    page.goto(exchange.url + "/#/service/voicemail")
    wait_ready(page)
    record_greeting(page, "Kantoor")
    record_greeting(page, "Even bellen")
    page.get_by_role("group", name="Bij geen gehoor").get_by_role("radio", name="Kantoor").check()
    busy = page.get_by_role("group", name="Bij in gesprek")
    expect(busy.get_by_role("radio", name="Dezelfde als bij geen gehoor")).to_be_checked()
    busy.get_by_role("radio", name="Even bellen").check()

    def chosen() -> list[tuple[str, bool, bool]]:
        return [(g["name"], g["active"], g["active_busy"]) for g in api(page, exchange, "/me/greetings")["greetings"]]

    expected = [("Kantoor", True, False), ("Even bellen", False, True)]
    assert eventually(chosen, lambda c: c == expected) == expected
    # The list says which greeting callers hear when.
    expect(page.get_by_role("listitem").filter(has_text="Even bellen")).to_contain_text("In gesprek")
    # After a reload the choices show as saved; then busy callers hear the no-answer greeting again.
    page.reload()
    wait_ready(page)
    busy = page.get_by_role("group", name="Bij in gesprek")
    expect(busy.get_by_role("radio", name="Even bellen")).to_be_checked()
    busy.get_by_role("radio", name="Dezelfde als bij geen gehoor").check()
    expected = [("Kantoor", True, False), ("Even bellen", False, False)]
    assert eventually(chosen, lambda c: c == expected) == expected


def test_agent_becomes_available(page: Page, exchange: LiveServer) -> None:
    username = new_user(exchange, pin="2580")
    log_in(page, exchange, username)
    page.goto(exchange.url + "/#/service/call-center-agent")
    wait_ready(page)
    expect(page.get_by_role("radio", name="Afronden")).to_be_disabled()
    page.get_by_role("radio", name="Beschikbaar", exact=True).check()
    page.get_by_role("button", name="Opslaan").click()
    expect(page.get_by_role("status").filter(has_text="Opgeslagen")).to_be_visible()
    assert api(page, exchange, "/me/services/call-center-agent")["state"] == "available"


def add_plumber(page: Page) -> None:
    """On the contacts screen: add the personal contact "Loodgieter" (a Dutch mobile) and search for it."""
    page.get_by_role("button", name="Contact toevoegen").click()
    dialog = page.get_by_role("dialog", name="Contact toevoegen")
    dialog.get_by_label("Voornaam").fill("Loodgieter")
    dialog.get_by_label("Telefoonnummer").fill("06 11 22 33 44")
    dialog.get_by_role("button", name="Opslaan").click()
    expect(dialog).to_be_hidden()
    wait_ready(page)
    page.get_by_role("searchbox", name="Zoeken").fill("loodgieter")


def test_personal_contacts_add_import_and_delete(page: Page, exchange: LiveServer) -> None:
    username = new_user(exchange, pin="2580")
    log_in(page, exchange, username)
    page.get_by_role("navigation", name="Hoofdmenu").get_by_role("link", name="Contacten").click()
    wait_ready(page)
    add_plumber(page)
    expect(page.get_by_role("link", name="WhatsApp Loodgieter")).to_have_attribute("href", "https://wa.me/31611223344")
    # A vCard file (the device's contacts where the Contact Picker API is missing).
    vcard = (
        "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Tandarts Noord\r\nN:Noord;Tandarts;;;\r\nTEL:+31205550123\r\nEND:VCARD\r\n"
    )
    page.locator("#vcard-file").set_input_files(
        files=[FilePayload(name="contacts.vcf", mimeType="text/vcard", buffer=vcard.encode())]
    )
    expect(page.get_by_role("status").filter(has_text="1 nummers geïmporteerd")).to_be_visible()
    wait_ready(page)
    page.get_by_role("searchbox", name="Zoeken").fill("tandarts")
    expect(page.locator(".list-row")).to_have_count(1)
    page.get_by_role("button", name="Tandarts Noord verwijderen uit uw persoonlijke lijst").click()
    page.get_by_role("dialog").get_by_role("button", name="Verwijderen").click()
    expect(page.get_by_text("Geen contacten gevonden.")).to_be_visible()
    personal = [c["display_name"] for c in api(page, exchange, "/me/contacts?list=personal")["contacts"]]
    assert personal == ["Loodgieter"]


def test_restart_app_reads_new_licences(page: Page, exchange: LiveServer) -> None:
    username = new_user(exchange, pin="2580", licences=["basic"])
    log_in(page, exchange, username)
    page.goto(exchange.url + "/#/settings")
    wait_ready(page)
    expect(page.get_by_role("link", name="Agent status")).to_have_count(0)
    exchange.set_licences(username, ["basic", "call-center-agent"])
    page.goto(exchange.url + "/#/app-settings")
    wait_ready(page)
    page.get_by_role("button", name="Herstart app").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Overzicht")
    page.get_by_role("navigation", name="Hoofdmenu").get_by_role("link", name="Instellingen").click()
    expect(page.get_by_role("link", name="Agent status")).to_be_visible()


def test_voicemails_delete_several(page: Page, exchange: LiveServer) -> None:
    username = new_user(exchange, pin="2580")
    exchange.add_history(username)
    exchange.add_history(username)
    log_in(page, exchange, username)
    page.get_by_role("link", name="U heeft 2 nieuwe voicemails").click()
    expect(page.locator(".list-row")).to_have_count(2)
    page.get_by_role("button", name="Wijzigen").click()
    for box in page.get_by_role("checkbox", name="Manager").all():
        box.check()
    page.get_by_role("button", name="Verwijderen (2)").click()
    page.get_by_role("dialog").get_by_role("button", name="Verwijderen").click()
    expect(page.get_by_text("Geen voicemails.")).to_be_visible()
    assert api(page, exchange, "/me/voicemails")["messages"] == []


def test_english_browser_gets_english_and_keyboard_logs_in(browser: Browser, exchange: LiveServer) -> None:
    username = new_user(exchange, pin="2580")
    context = browser.new_context(viewport={"width": 360, "height": 740}, locale="en-GB", bypass_csp=BYPASS_CSP)
    try:
        page = context.new_page()
        page.goto(exchange.url + "/")
        expect(page.get_by_role("heading", level=1)).to_have_text("Log in")
        # Keyboard only: the fields come in reading order and Enter submits.
        page.keyboard.press("Tab")
        expect(page.get_by_label("Username")).to_be_focused()
        page.keyboard.type(username)
        page.keyboard.press("Tab")
        expect(page.get_by_label("Password")).to_be_focused()
        page.keyboard.type(PASSWORD)
        page.keyboard.press("Enter")
        expect(page.get_by_role("heading", level=1)).to_have_text("Overview")
        expect(page.get_by_role("link", name="Incoming calls")).to_be_visible()
    finally:
        context.close()


def test_a_quick_toggle_that_needs_a_number_opens_its_screen(page: Page, exchange: LiveServer) -> None:
    username = new_user(exchange, pin="2580")
    log_in(page, exchange, username)
    page.get_by_role("region", name="Snel instellen").get_by_role(
        "switch", name="Doorschakelen alle gesprekken"
    ).click()  # not check(): the switch does not stay on, the screen that asks for the number replaces it
    expect(page.get_by_role("heading", level=1)).to_have_text("Doorschakelen alle gesprekken")
    expect(page.get_by_label("Doorschakelen naar")).to_be_visible()
    assert api(page, exchange, "/me/services/call-forwarding-always")["active"] is False
