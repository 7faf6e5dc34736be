"""The in-call screen (manual 5.2, SPEC D3–D8) in real Chromium against a real exchange with call processing and
SIPp phones: a colleague's desk phone calls the user's desk phone, and the user controls the call from the app —
the list with live state and duration, hang-up, hold/resume across two devices, add (consultation), merge,
transfer blind and attended, recording, pull — and the exchange's refusals shown in the user's words.

SIPp runs on the exchange's own event loop with the call tests' helpers (tests/web/phones.py).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.calls.conftest import Sipp, scenario
from tests.web.conftest import BYPASS_CSP, VIEWPORT
from tests.web.live_server import CHROMIUM, PASSWORD, LiveServer
from tests.web.phones import Phones, done_with, sip_settings
from tests.web.test_accessibility import violations
from tests.web.test_app_browser import log_in, toast, wait_ready

pytestmark = [pytest.mark.browser, pytest.mark.sip]

_numbers = itertools.count(1)


@pytest.fixture(scope="module")
def exchange(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium is not installed here")
    settings = sip_settings()
    server = LiveServer(tmp_path_factory.mktemp("exchange") / "data", call_processing=True, extra_settings=settings)
    server.start()
    yield server
    server.stop()
    done_with(settings)


@pytest.fixture
def phones(exchange: LiveServer, tmp_path: Path) -> Iterator[Phones]:
    found = Phones.of(exchange, tmp_path)
    yield found
    found.stop()


def person(
    exchange: LiveServer, first_name: str, licences: list[str] | None = None, mobile: bool = True
) -> tuple[str, str]:
    """A user with a desk phone (its SIP device): (username, extension). Only the app user has a mobile: the one
    SIPp on the mobile network's port is theirs."""
    n = next(_numbers)
    username, extension = f"{first_name.lower()}{n}", str(600 + n)
    exchange.add_user(
        username, pin="2580", licences=licences, first_name=first_name, last_name="Test", extension=extension,
        direct_number=f"+312012{n + 600:05d}", mobile_number=f"+316123{n + 600:05d}" if mobile else None,
    )  # fmt: skip
    Phones.add_desk_phone(exchange, username)
    return username, extension


def token(page: Page) -> str:
    value: str = page.evaluate("localStorage.getItem('hipper.token')")
    return value


def live_calls(exchange: LiveServer, page: Page) -> list[dict[str, Any]]:
    response = httpx.get(f"{exchange.url}/api/v1/me/calls", headers={"Authorization": f"Bearer {token(page)}"})
    assert response.status_code == 200, response.text
    calls: list[dict[str, Any]] = response.json()["calls"]
    return calls


def put(exchange: LiveServer, page: Page, path: str, body: dict[str, Any]) -> None:
    response = httpx.put(f"{exchange.url}/api/v1{path}", json=body, headers={"Authorization": f"Bearer {token(page)}"})
    assert response.status_code == 200, response.text


def desk_only(exchange: LiveServer, page: Page) -> None:
    """Calls to the user ring the desk phone only: the mobile (a SIPp on the mobile network's port) then rings for
    nothing but what the test asks of it (a consultation, a pull) — not for the tail of the first call's fork."""
    services = httpx.get(f"{exchange.url}/api/v1/me/services", headers={"Authorization": f"Bearer {token(page)}"})
    if "fixed-mobile" in services.json()["services"]:  # licensed (not with a narrower licence)
        put(exchange, page, "/me/services/fixed-mobile", {"fixed_rings": "desk"})


def open_call_screen(page: Page, exchange: LiveServer) -> None:
    page.goto(exchange.url + "/#/call")
    wait_ready(page)


def card(page: Page, name: str) -> Any:
    return page.locator(".call-card").filter(has=page.locator(".call-name", has_text=name))


@pytest.fixture
def second_device(browser: Browser) -> Iterator[BrowserContext]:
    # In English and dark: the second device shows the screen's other language and theme too.
    ctx = browser.new_context(viewport=VIEWPORT, locale="en-GB", color_scheme="dark", bypass_csp=BYPASS_CSP)
    ctx.set_default_timeout(10_000)
    yield ctx
    ctx.close()


@dataclass
class Office:
    """alice's desk phone calls bob's desk phone, which answers; bob runs the app on `page`."""

    alice: str
    alice_ext: str
    bob: str
    bob_ext: str
    alice_phone: Sipp
    bob_phone: Sipp


def office(page: Page, exchange: LiveServer, phones: Phones, **bob_fields: Any) -> Office:
    alice, alice_ext = person(exchange, "Alice", mobile=False)
    bob, bob_ext = person(exchange, "Bob", **bob_fields)
    log_in(page, exchange, bob)
    wait_ready(page)
    desk_only(exchange, page)
    bob_phone = phones.desk_phone(bob)
    alice_phone = phones.call(alice, bob_ext)
    return Office(alice, alice_ext, bob, bob_ext, alice_phone, bob_phone)


def test_the_call_shows_live_with_state_and_duration_and_hangs_up(
    page: Page, exchange: LiveServer, phones: Phones
) -> None:
    setup = office(page, exchange, phones)
    # The overview was open when the call came in: the call bar appears by itself (call.started), no reload.
    bar = page.locator("#callbar")
    expect(bar).to_contain_text("Lopend gesprek", timeout=15_000)
    expect(bar).to_contain_text("In gesprek")
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)  # type: ignore[arg-type]
        assert violations(page) == [], scheme
    page.emulate_media(color_scheme="light")
    bar.get_by_role("link").click()
    wait_ready(page)
    expect(page.get_by_role("heading", level=1)).to_have_text("Lopende gesprekken")
    [call] = live_calls(exchange, page)
    assert (call["direction"], call["state"]) == ("incoming", "active")
    row = page.locator(f'.call-card[data-call="{call["id"]}"]')
    expect(row).to_have_attribute("data-state", "active")
    expect(row.locator(".call-state")).to_have_text("In gesprek")
    # The exchange gives the caller's extension; the app names the colleague from the company's contacts.
    assert call["remote_number"] == setup.alice_ext
    expect(row.locator(".call-name")).to_have_text("Alice Test")
    # The duration runs: its text changes by itself, second by second.
    timer = row.get_by_role("timer")
    first = timer.inner_text()
    page.wait_for_function(
        "([el, first]) => el.textContent !== first && /^\\d+:\\d\\d$/.test(el.textContent)",
        arg=[timer.element_handle(), first],
    )
    # One call: its actions show at once, as the manual's screen does.
    actions = row.get_by_role("group", name="Bediening van het gesprek")
    expect(actions.get_by_role("button", name="Wachtstand")).to_be_visible()
    for name in ("Toevoegen", "Doorverbinden", "Gesprek overnemen"):
        expect(actions.get_by_role("button", name=name)).to_be_visible()
    # The screen with its actions passes axe (contrast, names, roles) in light and in dark.
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)  # type: ignore[arg-type]
        assert violations(page) == [], scheme
    with page.expect_response(lambda r: r.request.method == "DELETE" and "/api/v1/me/calls/" in r.url) as hung:
        actions.get_by_role("button", name="Ophangen").click()
    assert hung.value.status == 204
    expect(page.locator(".call-card")).to_have_count(0)
    expect(page.get_by_text("U heeft nu geen lopende gesprekken.")).to_be_visible()
    # Both phones got their BYE.
    phones.ends_well(setup.bob_phone)
    phones.ends_well(setup.alice_phone)
    assert live_calls(exchange, page) == []


def test_hold_and_resume_show_on_both_devices_of_the_user(
    page: Page, second_device: BrowserContext, exchange: LiveServer, phones: Phones
) -> None:
    setup = office(page, exchange, phones)
    other = second_device.new_page()  # the same user's other device, in English
    other.goto(exchange.url + "/")
    other.get_by_label("Username").fill(setup.bob)
    other.get_by_label("Password").fill(PASSWORD)
    other.get_by_role("button", name="Log in").click()
    other.wait_for_function("location.hash !== '#/login'")
    for device in (page, other):
        open_call_screen(device, exchange)
        expect(device.locator(".call-card")).to_have_attribute("data-state", "active", timeout=15_000)
    expect(other.locator(".call-card .call-state")).to_have_text("In call")
    call_id = live_calls(exchange, page)[0]["id"]
    with page.expect_response(lambda r: r.url.endswith(f"/me/calls/{call_id}/hold")) as held:
        page.get_by_role("button", name="Wachtstand").click()
    assert held.value.status == 200, held.value.text()
    assert held.value.json()["held"] is True
    expect(page.locator(".call-card .call-state")).to_have_text("In de wacht")
    # The other device hears of it from /api/v1/events (call.updated), not by reloading: the call screen of an
    # answered call reads the list again only when an event says so (incall.js polls only while a call rings).
    expect(other.locator(".call-card")).to_have_attribute("data-state", "held")
    expect(other.locator(".call-card .call-state")).to_have_text("On hold")
    # Taken back on the other device; the first follows.
    with other.expect_response(lambda r: r.url.endswith(f"/me/calls/{call_id}/resume")) as resumed:
        other.get_by_role("button", name="Resume").click()
    assert resumed.value.status == 200, resumed.value.text()
    expect(page.locator(".call-card")).to_have_attribute("data-state", "active")
    expect(page.get_by_role("button", name="Wachtstand")).to_be_visible()
    expect(other.get_by_role("button", name="Hold")).to_be_visible()
    page.get_by_role("button", name="Ophangen").click()
    expect(other.locator(".call-card")).to_have_count(0)
    expect(other.get_by_text("You have no calls going on now.")).to_be_visible()
    phones.ends_well(setup.bob_phone)
    phones.ends_well(setup.alice_phone)


def pick(page: Page, title: str, number: str) -> None:
    """The contact/number picker: type the number and choose it."""
    picker = page.get_by_role("dialog", name=title)
    picker.get_by_label("Nummer").fill(number)
    picker.get_by_role("button", name="Kiezen").click()


def post_to(page: Page, action: str) -> Any:
    return page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith(action))


def test_blind_transfer_to_a_contact_and_a_bad_number_refused(page: Page, exchange: LiveServer, phones: Phones) -> None:
    setup = office(page, exchange, phones)
    carol, carol_ext = person(exchange, "Carol", mobile=False)
    open_call_screen(page, exchange)
    row = page.locator(".call-card")
    expect(row).to_have_attribute("data-state", "active", timeout=15_000)
    call_id = live_calls(exchange, page)[0]["id"]
    # A number that is none: the exchange refuses (422), the screen says why, the call goes on as it was.
    page.get_by_role("button", name="Doorverbinden").click()
    pick(page, "Doorverbinden", "geen nummer")
    with post_to(page, f"/me/calls/{call_id}/transfer") as refused:
        page.get_by_role("dialog").get_by_role("button", name="Blind doorverbinden naar geen nummer").click()
    assert refused.value.status == 422
    assert refused.value.request.post_data_json == {"mode": "blind", "to": "geen nummer"}
    expect(row.get_by_role("alert")).to_have_text(
        "Dit is geen geldig telefoonnummer. Gebruik alleen cijfers, bijvoorbeeld 06 1234 5678."
    )
    assert [c["state"] for c in live_calls(exchange, page)] == ["active"]
    # An extension nobody has: refused as well (it would only give the caller a busy tone), said in words.
    page.get_by_role("button", name="Doorverbinden").click()
    pick(page, "Doorverbinden", "299")
    with post_to(page, f"/me/calls/{call_id}/transfer") as unknown:
        page.get_by_role("dialog").get_by_role("button", name="Blind doorverbinden naar 299").click()
    assert unknown.value.status == 422
    expect(row.get_by_role("alert")).to_have_text("Dit nummer is van niemand.")
    assert [c["state"] for c in live_calls(exchange, page)] == ["active"]
    # Now to Carol, chosen from the contacts (the company's colleagues). Her phone answers, talks a second and
    # hangs up: Alice's call ends with it.
    carol_phone = phones.desk_phone(carol, scenario("callee_hangs_up.xml"))
    page.get_by_role("button", name="Doorverbinden").click()
    picker = page.get_by_role("dialog", name="Doorverbinden")
    picker.get_by_role("searchbox").fill("Carol")
    picker.get_by_role("button", name=f"Carol Test Toestelnummer · {carol_ext}").click()
    choice = page.get_by_role("dialog", name="Doorverbinden")
    expect(choice.get_by_role("button", name="Met ruggespraak naar Carol Test")).to_be_visible()
    with post_to(page, f"/me/calls/{call_id}/transfer") as transferred:
        choice.get_by_role("button", name="Blind doorverbinden naar Carol Test").click()
    assert transferred.value.status == 202, transferred.value.text()
    assert transferred.value.request.post_data_json == {"mode": "blind", "to": carol_ext}
    expect(toast(page)).to_have_text("Doorverbonden met Carol Test.")
    # Bob's part is over: his phone got its BYE and the call left his list (on this screen without a reload).
    phones.ends_well(setup.bob_phone)
    expect(page.locator(".call-card")).to_have_count(0)
    # Carol's phone rang through the exchange and answered Alice; when Carol hangs up, Alice gets the BYE.
    phones.ends_well(carol_phone)
    phones.ends_well(setup.alice_phone)


def test_add_a_party_and_merge_into_a_three_way_call(page: Page, exchange: LiveServer, phones: Phones) -> None:
    setup = office(page, exchange, phones)
    carol, carol_ext = person(exchange, "Carol", mobile=False)
    # The consultation call rings Bob's mobile first (his call method's callback device), then Carol.
    put(exchange, page, "/me/services/call-method", {"method": "callback", "callback_device": "mobile"})
    open_call_screen(page, exchange)
    expect(page.locator(".call-card")).to_have_attribute("data-state", "active", timeout=15_000)
    first = live_calls(exchange, page)[0]["id"]
    mobile = phones.mobile()
    carol_phone = phones.desk_phone(carol)
    page.get_by_role("button", name="Toevoegen").click()
    with post_to(page, f"/me/calls/{first}/consultations") as added:
        pick(page, "Toevoegen", carol_ext)
    assert added.value.status == 202, added.value.text()
    consultation = added.value.json()["id"]
    expect(toast(page)).to_contain_text("Uw telefoon gaat over")
    # Both calls are listed: the first waits on hold, the new one is the consultation with Carol.
    held = page.locator(f'.call-card[data-call="{first}"]')
    consulting = page.locator(f'.call-card[data-call="{consultation}"]')
    expect(held).to_have_attribute("data-state", "held", timeout=15_000)
    expect(consulting).to_have_attribute("data-state", "active", timeout=15_000)
    expect(consulting.locator(".call-state")).to_have_text("In gesprek · Ruggespraak")
    expect(consulting.locator(".call-name")).to_have_text("Carol Test")
    # Tap one of the calls (the first, on Bob's desk phone), then Samenvoegen.
    held.locator(".call-head").click()
    with post_to(page, f"/me/calls/{first}/merge") as merged:
        held.get_by_role("button", name="Samenvoegen").click()
    assert merged.value.status == 200, merged.value.text()
    assert merged.value.request.post_data_json == {"with": consultation}
    expect(toast(page)).to_have_text("Samengevoegd: u heeft nu een drieweggesprek.")
    # One three-way call remains, on the desk phone; the consultation's leg to Bob's mobile is released.
    expect(page.locator(".call-card")).to_have_count(1)
    expect(page.locator(".call-card")).to_have_attribute("data-state", "merged")
    expect(page.locator(".call-card .call-state")).to_have_text("Drieweggesprek")
    [three_way] = live_calls(exchange, page)
    assert three_way["merged"] is True
    phones.ends_well(mobile)
    # A three-way call is left or recorded, nothing else (the exchange refuses hold, transfer, pull there).
    three_way_card = page.locator(".call-card")
    expect(three_way_card.locator(".action-grid button")).to_have_text(["Ophangen"])
    assert carol_phone.process.returncode is None and setup.alice_phone.process.returncode is None
    page.get_by_role("button", name="Ophangen").click()
    expect(page.locator(".call-card")).to_have_count(0)
    phones.ends_well(setup.bob_phone)
    # Bob left; Alice and Carol talk on (her list still has the call once Bob's phone is gone).
    alice_token = httpx.post(f"{exchange.url}/api/v1/auth/login", json={"username": setup.alice, "password": PASSWORD})
    alice_calls = httpx.get(f"{exchange.url}/api/v1/me/calls",
                            headers={"Authorization": f"Bearer {alice_token.json()['token']}"})  # fmt: skip
    assert [c["state"] for c in alice_calls.json()["calls"]] == ["active"]


def test_consult_swap_then_complete_the_transfer(page: Page, exchange: LiveServer, phones: Phones) -> None:
    setup = office(page, exchange, phones)
    carol, carol_ext = person(exchange, "Carol", mobile=False)
    put(exchange, page, "/me/services/call-method", {"method": "callback", "callback_device": "mobile"})
    open_call_screen(page, exchange)
    expect(page.locator(".call-card")).to_have_attribute("data-state", "active", timeout=15_000)
    first = live_calls(exchange, page)[0]["id"]
    mobile = phones.mobile()
    phones.desk_phone(carol)
    # Doorverbinden, the number, then "Met ruggespraak naar …": a consultation call.
    page.get_by_role("button", name="Doorverbinden").click()
    pick(page, "Doorverbinden", carol_ext)
    with post_to(page, f"/me/calls/{first}/consultations") as consulted:
        page.get_by_role("dialog").get_by_role("button", name=f"Met ruggespraak naar {carol_ext}").click()
    assert consulted.value.status == 202, consulted.value.text()
    consultation = consulted.value.json()["id"]
    alice_card = page.locator(f'.call-card[data-call="{first}"]')
    carol_card = page.locator(f'.call-card[data-call="{consultation}"]')
    expect(carol_card).to_have_attribute("data-state", "active", timeout=15_000)
    expect(alice_card).to_have_attribute("data-state", "held")
    # Wisselen: back to Alice, Carol waits.
    carol_card.locator(".call-head").click()
    with post_to(page, f"/me/calls/{first}/resume") as swapped:
        carol_card.get_by_role("button", name="Wisselen").click()
    assert swapped.value.status == 200, swapped.value.text()
    expect(alice_card).to_have_attribute("data-state", "active")
    expect(carol_card).to_have_attribute("data-state", "held")
    # Doorverbinden naar …: Alice and Carol are connected, Bob leaves both calls.
    alice_card.locator(".call-head").click()
    alice_card.get_by_role("button", name="Doorverbinden").click()
    with post_to(page, f"/me/calls/{first}/transfer") as completed:
        page.get_by_role("dialog").get_by_role("button", name="Doorverbinden naar Carol Test").click()
    assert completed.value.status == 200, completed.value.text()
    assert completed.value.request.post_data_json == {"mode": "attended", "consultation": consultation}
    expect(page.locator(".call-card")).to_have_count(0)
    phones.ends_well(setup.bob_phone)
    phones.ends_well(mobile)
    assert live_calls(exchange, page) == []


def test_recording_on_demand_start_pause_resume(page: Page, exchange: LiveServer, phones: Phones) -> None:
    alice, _ = person(exchange, "Alice", mobile=False)
    bob, bob_ext = person(exchange, "Bob")
    log_in(page, exchange, bob)
    put(exchange, page, "/me/services/call-recording", {"mode": "on_demand_user_start"})
    bob_phone = phones.desk_phone(bob)
    alice_phone = phones.call(alice, bob_ext)
    open_call_screen(page, exchange)
    row = page.locator(".call-card")
    expect(row).to_have_attribute("data-state", "active", timeout=15_000)
    call_id = live_calls(exchange, page)[0]["id"]
    for button, action, state, shown in [
        ("Opnemen", "start", "on", "In gesprek · Opname loopt"),
        ("Opname pauzeren", "pause", "paused", "In gesprek · Opname gepauzeerd"),
        ("Opname hervatten", "resume", "on", "In gesprek · Opname loopt"),
    ]:
        with post_to(page, f"/me/calls/{call_id}/recording") as changed:
            row.get_by_role("button", name=button, exact=True).click()
        assert changed.value.status == 200, changed.value.text()
        assert changed.value.request.post_data_json == {"action": action}
        assert changed.value.json()["recording"] == state
        expect(row.locator(".call-state")).to_have_text(shown)
    page.get_by_role("button", name="Ophangen").click()
    phones.ends_well(bob_phone)
    phones.ends_well(alice_phone)


def test_pull_the_call_to_the_mobile(page: Page, exchange: LiveServer, phones: Phones) -> None:
    setup = office(page, exchange, phones)
    open_call_screen(page, exchange)
    expect(page.locator(".call-card")).to_have_attribute("data-state", "active", timeout=15_000)
    call_id = live_calls(exchange, page)[0]["id"]
    # The mobile answers after 1.5 s; until then the screen says what to do.
    mobile = phones.mobile(scenario("callee.xml", ring_ms=1500))
    with post_to(page, f"/me/calls/{call_id}/pull") as pulled:
        page.get_by_role("button", name="Gesprek overnemen").click()
        expect(page.locator(".call-card").get_by_role("status")).to_have_text(
            "Uw mobiele telefoon gaat over: neem op om het gesprek over te nemen."
        )
        expect(page.get_by_role("button", name="Wachtstand")).to_be_disabled()
    assert pulled.value.status == 200, pulled.value.text()
    assert pulled.value.request.post_data_json == {"device": "mobile"}
    expect(toast(page)).to_have_text("Het gesprek komt naar uw mobiele telefoon.")
    # The desk phone is out of the call; the call goes on (now on the mobile) and is still Bob's.
    phones.ends_well(setup.bob_phone)
    expect(page.locator(".call-card")).to_have_attribute("data-state", "active")
    page.get_by_role("button", name="Ophangen").click()
    expect(page.locator(".call-card")).to_have_count(0)
    phones.ends_well(mobile)
    phones.ends_well(setup.alice_phone)


def test_an_operation_the_licence_lacks_is_refused_in_words(page: Page, exchange: LiveServer, phones: Phones) -> None:
    setup = office(page, exchange, phones, licences=["do-not-disturb"])
    open_call_screen(page, exchange)
    row = page.locator(".call-card")
    expect(row).to_have_attribute("data-state", "active", timeout=15_000)
    call_id = live_calls(exchange, page)[0]["id"]
    page.get_by_role("button", name="Toevoegen").click()
    with post_to(page, f"/me/calls/{call_id}/consultations") as refused:
        pick(page, "Toevoegen", setup.alice_ext)
    assert refused.value.status == 403
    assert refused.value.json()["code"] == "not_licensed"
    expect(row.get_by_role("alert")).to_have_text("Deze dienst hoort niet bij uw licentie.")
    assert [c["state"] for c in live_calls(exchange, page)] == ["active"]
    page.get_by_role("button", name="Ophangen").click()
    phones.ends_well(setup.bob_phone)
    phones.ends_well(setup.alice_phone)


def test_a_refusal_of_the_call_s_state_is_said_in_words(page: Page, exchange: LiveServer, phones: Phones) -> None:
    # Bob has no mobile: Gesprek overnemen asks for his desk phones, and the only one has the call already.
    setup = office(page, exchange, phones, mobile=False)
    open_call_screen(page, exchange)
    row = page.locator(".call-card")
    expect(row).to_have_attribute("data-state", "active", timeout=15_000)
    call_id = live_calls(exchange, page)[0]["id"]
    with post_to(page, f"/me/calls/{call_id}/pull") as refused:
        page.get_by_role("button", name="Gesprek overnemen").click()
    assert refused.value.request.post_data_json == {"device": "desk"}
    assert (refused.value.status, refused.value.json()["code"]) == (409, "nothing_to_pull_to")
    expect(row.get_by_role("alert")).to_have_text("Er is geen toestel om het gesprek naartoe te halen.")
    expect(row).to_have_attribute("data-state", "active")
    assert [c["state"] for c in live_calls(exchange, page)] == ["active"]
    # The next action clears the message.
    page.get_by_role("button", name="Wachtstand").click()
    expect(row).to_have_attribute("data-state", "held")
    expect(row.get_by_role("alert")).to_have_count(0)
    page.get_by_role("button", name="Ophangen").click()
    phones.ends_well(setup.bob_phone)
    phones.ends_well(setup.alice_phone)
