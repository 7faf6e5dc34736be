"""The defects of the manual walk-through (issue 12), each as a user meets it, in real Chromium against a real
exchange at 360 × 740."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import FilePayload, Page, expect

from tests.web.live_server import PASSWORD, LiveServer
from tests.web.test_app_browser import (
    add_plumber,
    api,
    dnd_on_from_another_device,
    log_in,
    new_user,
    record_greeting,
    wait_ready,
)

pytestmark = pytest.mark.browser

# The exchange's English reasons must never reach the Dutch screen.
ENGLISH = ["Value error", "is not a", "wrong PIN", "the current password", "too easy to guess", "offline"]


def other_device(exchange: LiveServer, username: str) -> httpx.Client:
    login = httpx.post(f"{exchange.url}/api/v1/auth/login", json={"username": username, "password": PASSWORD})
    token = login.json()["token"]
    return httpx.Client(base_url=f"{exchange.url}/api/v1", headers={"Authorization": f"Bearer {token}"})


def assert_no_english(page: Page) -> None:
    text = page.locator("#app").inner_text()
    assert not [phrase for phrase in ENGLISH if phrase in text], text


def test_live_updates_run_after_a_reload(page: Page, exchange: LiveServer) -> None:
    username = new_user(exchange, pin="2580")
    log_in(page, exchange, username)
    page.reload()
    wait_ready(page)
    switch = page.get_by_role("region", name="Snel instellen").get_by_role("switch", name="Niet storen")
    expect(switch).not_to_be_checked()
    dnd_on_from_another_device(exchange, username)
    expect(switch).to_be_checked()
    # A theme chosen on another device applies here without a second reload.
    with other_device(exchange, username) as device:
        assert device.put("/me/app-settings", json={"theme": "dark"}).status_code == 200
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")


def test_personal_assistant_end_date_stays_open_and_a_past_one_is_explained(page: Page, exchange: LiveServer) -> None:
    username = new_user(exchange, pin="2580")
    log_in(page, exchange, username)
    page.goto(exchange.url + "/#/service/personal-assistant")
    wait_ready(page)
    page.get_by_role("switch", name="Actief").check()
    page.get_by_role("button", name="Einddatum en tijd").click()
    date = page.locator("#until-date")
    expect(date).to_be_visible()
    expect(date).to_be_focused()
    date.fill("2099-12-31T17:00")
    expect(page.locator(".until-summary")).to_contain_text("2099")
    expect(date).to_be_visible()
    date.fill("2020-01-01T10:00")
    expect(page.locator(".until-summary")).to_contain_text("2020")
    page.get_by_role("button", name="Opslaan").click()
    expect(page.locator("[data-field=until] .error")).to_have_text(
        "Dit moment is al voorbij. Kies een later moment, of Altijd."
    )
    expect(date).to_be_visible()
    assert_no_english(page)
    assert api(page, exchange, "/me/services/personal-assistant")["active"] is False


def test_server_errors_are_translated_at_their_field(page: Page, exchange: LiveServer) -> None:
    username = new_user(exchange, pin="2580")
    log_in(page, exchange, username)
    page.goto(exchange.url + "/#/service/call-forwarding-always")
    wait_ready(page)
    page.get_by_role("switch", name="Actief").check()
    destination = page.get_by_label("Doorschakelen naar")
    expect(destination).to_have_attribute("maxlength", "32")
    destination.fill("abc")
    page.get_by_role("button", name="Opslaan").click()
    expect(destination).to_have_attribute("aria-invalid", "true")
    expect(page.locator("[data-field=destination] .error")).to_contain_text("Dit is geen geldig telefoonnummer")
    assert_no_english(page)

    # A list item the exchange refuses stays open with its message.
    page.goto(exchange.url + "/#/service/simultaneous-ring")
    wait_ready(page)
    for _ in range(2):
        page.get_by_role("button", name="Nummer toevoegen").click()
        page.locator(".list-field details[open] input[type=tel]").last.fill("+31207654321")
        page.locator(".list-field details[open] summary").last.click()  # closes it, as a user tidies up
    page.get_by_role("button", name="Opslaan").click()  # refused before any step-up: the list itself is wrong
    second = page.locator(".list-field details").nth(1)
    expect(second).to_have_attribute("open", "")
    expect(second.locator(".error")).to_have_text("Dit nummer staat al in de lijst.")
    assert_no_english(page)

    page.goto(exchange.url + "/#/profile")
    page.get_by_role("button", name="Wachtwoord wijzigen").click()
    form = page.get_by_role("dialog", name="Wachtwoord wijzigen")
    form.get_by_label("Huidig wachtwoord").fill("not it at all 1")
    form.get_by_label("Nieuw wachtwoord").fill("a much longer secret 2")
    form.get_by_role("button", name="Opslaan").click()
    expect(form.get_by_role("alert")).to_have_text("Het huidige wachtwoord klopt niet.")
    form.get_by_role("button", name="Annuleren").click()
    page.get_by_role("button", name="Cijfercode wijzigen").click()
    form = page.get_by_role("dialog", name="Cijfercode wijzigen")
    form.get_by_label("Huidige cijfercode").fill("2580")
    form.get_by_label("Nieuwe cijfercode (4–8 cijfers)").fill("4567")
    form.get_by_label("Herhaal de nieuwe cijfercode").fill("4567")
    form.get_by_role("button", name="Opslaan").click()
    expect(form.get_by_role("alert")).to_have_text("Deze cijfercode is te makkelijk te raden (opeenvolgende cijfers).")


# Whether any text of `selector` is broken across lines inside one word (one line per word, measured).
BROKEN_WORDS = """
(selector) => [...document.querySelectorAll(selector)].filter((element) => {
  const walker = document.createTreeWalker(element, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const text = node.textContent;
    let start = 0;
    for (const word of text.split(/(\\s+)/)) {
      if (word.trim()) {
        const range = document.createRange();
        range.setStart(node, start);
        range.setEnd(node, start + word.length);
        const tops = new Set([...range.getClientRects()].map((rect) => Math.round(rect.top)));
        if (tops.size > 1) return true;
      }
      start += word.length;
    }
  }
  return false;
}).map((element) => element.textContent)
"""


def test_numbers_read_as_dutch_and_never_break_at_360_px(page: Page, exchange: LiveServer) -> None:
    exchange.add_user(
        "numbers-reader",
        first_name="Anna",
        last_name="de Vries",
        extension="377",
        direct_number="+31201230201",
        mobile_number="+31612340201",
        licences=["full"],
        pin="2580",
    )
    log_in(page, exchange, "numbers-reader")
    page.goto(exchange.url + "/#/profile")
    wait_ready(page)
    expect(page.get_by_role("link", name="020 123 0201")).to_have_attribute("href", "tel:+31201230201")
    expect(page.get_by_role("link", name="06 1234 0201")).to_be_visible()
    assert page.evaluate(BROKEN_WORDS, "dl.facts dd") == []
    for menu in ("incoming", "outgoing", "settings"):
        page.goto(f"{exchange.url}/#/{menu}")
        wait_ready(page)
        assert page.evaluate(BROKEN_WORDS, ".menu-item") == [], menu
    page.goto(f"{exchange.url}/#/overview")
    wait_ready(page)
    assert page.evaluate(BROKEN_WORDS, ".tile, .quick") == []
    assert "null" not in page.locator(".quick").inner_text()


def test_night_mode_shows_what_is_in_effect_and_who_set_it(page: Page, exchange: LiveServer) -> None:
    username = new_user(exchange, pin="2580")
    exchange.set_company_night_mode(True)
    try:
        log_in(page, exchange, username)
        page.goto(exchange.url + "/#/incoming")
        wait_ready(page)
        row = page.get_by_role("link", name="Nachtstand")
        expect(row).to_contain_text("Aan (nachtstand van het bedrijf)")
        row.click()
        expect(page.get_by_text("De nachtstand van het bedrijf staat aan")).to_be_visible()
    finally:
        exchange.set_company_night_mode(False)


def test_an_offline_start_shows_the_last_overview_and_recovers_by_itself(page: Page, exchange: LiveServer) -> None:
    username = new_user(exchange, pin="2580")
    log_in(page, exchange, username)
    wait_ready(page)
    # The worker controls the page once it has cached the whole shell (install, then activate and claim).
    page.wait_for_function("navigator.serviceWorker.controller !== null")
    page.context.set_offline(True)
    try:
        page.reload()
        expect(page.get_by_role("heading", level=1)).to_have_text("Geen verbinding")
        expect(page.get_by_role("alert")).to_contain_text("Geen verbinding met de telefooncentrale")
        expect(page.get_by_role("heading", name="Anna de Vries")).to_be_visible()  # this device's last copy
        expect(page.get_by_role("navigation", name="Hoofdmenu")).to_be_visible()
        page.get_by_role("button", name="Opnieuw proberen").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Geen verbinding")
    finally:
        page.context.set_offline(False)
    # Back online: the app finds the exchange again by itself, without a reload.
    expect(page.get_by_role("heading", level=1)).to_have_text("Overzicht")
    expect(page.get_by_role("region", name="Snel instellen")).to_be_visible()


def test_contacts_open_to_every_number_edit_personal_ones_and_import_local_ones(
    page: Page, exchange: LiveServer
) -> None:
    exchange.add_user(
        "colleague-two-numbers", first_name="Mila", last_name="van Dijk", extension="288", mobile_number="+31687650077"
    )
    username = new_user(exchange, pin="2580")
    log_in(page, exchange, username)
    page.get_by_role("navigation", name="Hoofdmenu").get_by_role("link", name="Contacten").click()
    page.get_by_role("searchbox", name="Zoeken").fill("mila")
    expect(page.get_by_role("status").or_(page.locator("[aria-live]")).filter(has_text="1 contact")).to_have_count(1)
    page.locator(".list-row a.row-body").first.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Mila van Dijk")
    expect(page.locator("#main")).not_to_contain_text("null")
    numbers = page.get_by_role("list", name="Nummers")
    expect(numbers.get_by_role("link", name="Toestelnummer 288")).to_have_attribute("href", "tel:288")
    mobile = numbers.get_by_role("link", name="Mobiel 06 8765 0077")
    expect(mobile).to_have_attribute("href", "tel:+31687650077")
    # The colleague's mobile is called, not only their first number.
    mobile.click()
    with page.expect_request(lambda r: r.url.endswith("/api/v1/me/calls") and r.method == "POST") as placed:
        page.get_by_role("dialog", name="Bellen").get_by_role("button", name="Bellen").click()
    assert placed.value.post_data_json["to"] == "+31687650077"
    page.get_by_role("dialog", name="Bellen via de centrale lukt nu niet").get_by_role(
        "button", name="Annuleren"
    ).click()

    # A personal contact is changed in its own screen.
    page.goto(exchange.url + "/#/contacts")
    wait_ready(page)
    add_plumber(page)
    page.locator(".list-row a.row-body").first.click()
    page.get_by_role("button", name="Wijzigen").click()
    dialog = page.get_by_role("dialog", name="Contact wijzigen")
    expect(dialog.get_by_label("Voornaam")).to_have_value("Loodgieter")
    dialog.get_by_label("Telefoonnummer").fill("020 555 0199")
    dialog.get_by_role("button", name="Opslaan").click()
    expect(dialog).to_be_hidden()
    expect(page.get_by_role("list", name="Nummers")).to_contain_text("020 555 0199")
    personal = [
        c for c in api(page, exchange, "/me/contacts?list=personal")["contacts"] if c["first_name"] == "Loodgieter"
    ]
    assert [n["number"] for n in personal[0]["numbers"]] == ["+31205550199"]

    # "Lokaal": headless Chromium has no Contact Picker, so the device's contacts come as a vCard file.
    page.goto(exchange.url + "/#/contacts")
    page.get_by_role("link", name="Lokaal").click()
    expect(page.get_by_text("Exporteer uw contacten als vCard-bestand")).to_be_visible()
    vcard = "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Huisarts\r\nN:;Huisarts;;;\r\nTEL:+31205550124\r\nEND:VCARD\r\n"
    page.get_by_label("vCard-bestand kiezen").set_input_files(
        files=[FilePayload(name="contacts.vcf", mimeType="text/vcard", buffer=vcard.encode())]
    )
    expect(page.get_by_role("status").filter(has_text="1 nummers geïmporteerd")).to_be_visible()
    expect(page.get_by_role("link", name="Alle")).to_have_attribute("aria-current", "page")


def test_the_user_chooses_when_calls_are_recorded(page: Page, exchange: LiveServer) -> None:
    username = new_user(exchange, pin="2580")
    log_in(page, exchange, username)
    page.goto(exchange.url + "/#/service/call-recording")
    wait_ready(page)
    expect(page.get_by_role("radio")).to_have_count(5)
    page.get_by_role("radio", name=re.compile(r"^Op verzoek Alles")).check()
    page.get_by_role("button", name="Opslaan").click()
    expect(page.get_by_role("status").filter(has_text="Opgeslagen")).to_be_visible()
    assert api(page, exchange, "/me/services/call-recording")["mode"] == "on_demand"


def test_terms_of_use_and_privacy_are_real_pages(page: Page, exchange: LiveServer) -> None:
    username = new_user(exchange, pin="2580")
    log_in(page, exchange, username)
    page.goto(exchange.url + "/#/app-settings")
    wait_ready(page)
    page.get_by_role("link", name="Gebruiksvoorwaarden").click()
    expect(page).to_have_url(exchange.url + "/terms.html")
    expect(page.get_by_role("heading", name="Gebruiksvoorwaarden en privacyverklaring")).to_be_visible()
    page.goto(exchange.url + "/#/profile")
    privacy = page.get_by_role("region", name="Privacy")
    expect(privacy).to_contain_text("uitloggen wist ze")
    expect(privacy.get_by_role("link", name="Privacyverklaring")).to_have_attribute("href", "/terms.html#nl-privacy")


def boxes_overlap(first: dict[str, float] | None, second: dict[str, float] | None) -> bool:
    assert first is not None and second is not None
    return not (
        first["y"] + first["height"] <= second["y"]
        or second["y"] + second["height"] <= first["y"]
        or first["x"] + first["width"] <= second["x"]
        or second["x"] + second["width"] <= first["x"]
    )


def test_the_smaller_things_of_the_walk(page: Page, exchange: LiveServer) -> None:
    username = new_user(exchange, pin="2580")
    log_in(page, exchange, username)
    # The back arrow of a screen opened from the overview's tiles goes back to the overview.
    page.get_by_role("link", name="Inkomende oproepen").click()
    expect(page.get_by_role("link", name="Terug")).to_have_attribute("href", "#/overview")
    page.get_by_role("link", name="Anywhere").click()
    wait_ready(page)
    # The Anywhere card shows the number beside the name, as a Dutch user reads it.
    page.get_by_role("button", name="Locatie toevoegen").click()
    page.get_by_label("Naam").fill("Thuis")
    page.get_by_label("Telefoonnummer").fill("0207654321")
    page.get_by_role("button", name="Opslaan").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Voer uw cijfercode in")
    dialog.get_by_label("Cijfercode").fill("2580")
    dialog.get_by_role("button", name="Bevestigen").click()
    toast = page.get_by_role("status").filter(has_text="Opgeslagen")
    expect(toast).to_be_visible()
    expect(page.locator(".list-field summary")).to_have_text("Thuis · 020 765 4321")
    # The toast never covers the sticky Opslaan button.
    assert not boxes_overlap(toast.bounding_box(), page.get_by_role("button", name="Opslaan").bounding_box())
    # "Versie" sits inside its card with the same padding as the rows around it.
    page.goto(exchange.url + "/#/app-settings")
    wait_ready(page)
    version = page.get_by_text("Versie", exact=True).bounding_box()
    card = page.locator("section.card.menu").filter(has_text="Versie").bounding_box()
    assert version is not None and card is not None and version["x"] - card["x"] >= 12


def test_a_greeting_is_renamed_in_a_sheet_and_played_in_the_apps_own_player(page: Page, exchange: LiveServer) -> None:
    username = new_user(exchange, pin="2580")
    log_in(page, exchange, username)
    page.goto(exchange.url + "/#/service/voicemail")
    wait_ready(page)
    record_greeting(page, "Eerste")
    page.get_by_role("button", name="Eerste hernoemen").click()
    sheet = page.get_by_role("dialog", name="Eerste hernoemen")
    sheet.get_by_label("Naam van de begroeting").fill("Vakantie")
    sheet.get_by_role("button", name="Opslaan").click()
    expect(sheet).to_be_hidden()
    expect(page.get_by_role("button", name="Vakantie afspelen")).to_be_visible()
    page.get_by_role("button", name="Vakantie afspelen").click()
    player = page.get_by_role("group", name="Vakantie afspelen")
    expect(player.get_by_role("button", name="Pauzeren")).to_be_visible()  # playing
    expect(player.get_by_role("slider", name="Positie")).to_be_visible()
    assert api(page, exchange, "/me/greetings")["greetings"][0]["name"] == "Vakantie"


def test_explain_is_told_in_dutch_from_the_plans_steps(page: Page, exchange: LiveServer) -> None:
    username = new_user(exchange, pin="2580")
    log_in(page, exchange, username)
    with other_device(exchange, username) as device:
        forward = {"active": True, "destination": "+31207654321"}
        assert device.post("/auth/step-up", json={"pin": "2580"}).status_code == 200
        assert device.put("/me/services/call-forwarding-busy", json=forward).status_code == 200
    page.goto(exchange.url + "/#/explain")
    page.get_by_label("Nummer van de beller").fill("+31612345678")
    page.get_by_role("button", name="Toon wat er gebeurt").click()
    plan = page.locator("ol.plan").first
    expect(plan).to_contain_text("Uw mobiel 06 1")
    expect(plan).to_contain_text("Als u in gesprek bent:")
    expect(plan).to_contain_text("Doorgeschakeld naar 020 765 4321 (Doorschakelen bij bezet)")
    expect(page.get_by_role("heading", name="Zo wordt de oproep afgehandeld")).to_be_visible()
    assert "ring:" not in plan.inner_text()


def test_state_at_a_glance_on_the_overview_and_in_the_menus(page: Page, exchange: LiveServer) -> None:
    username = new_user(exchange, pin="2580")
    with other_device(exchange, username) as device:
        assert device.post("/auth/step-up", json={"pin": "2580"}).status_code == 200
        forward = {"active": True, "destination": "+31207654321"}
        assert device.put("/me/services/call-forwarding-always", json=forward).status_code == 200
    log_in(page, exchange, username)
    switch = page.get_by_role("switch", name="Doorschakelen alle gesprekken")
    expect(switch).to_be_checked()
    expect(switch).to_have_accessible_description("Aan · 020 765 4321")
    page.goto(exchange.url + "/#/incoming")
    wait_ready(page)
    expect(page.get_by_role("link", name="Doorschakelen alle gesprekken")).to_contain_text("Aan · 020 765 4321")


def test_the_settings_menu_shows_each_services_value(page: Page, exchange: LiveServer) -> None:
    username = new_user(exchange, pin="2580")
    log_in(page, exchange, username)
    page.goto(exchange.url + "/#/settings")
    wait_ready(page)
    expect(page.locator(".menu-item").filter(has_text="Voicemail")).to_contain_text("Aan")
    expect(page.locator(".menu-item").filter(has_text="Gespreksopname")).to_contain_text("Nooit")
    assert page.evaluate(BROKEN_WORDS, ".menu-item") == []
