"""Placing calls from the app against an exchange that runs call processing (the B2BUA on a free SIP port, as
`hipper serve` does): via the exchange, the app dials the access number POST /me/calls returns; a callback with
no phone to ring says why; an idle user has no live calls listed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.web.live_server import CHROMIUM, LiveServer
from tests.web.test_app_browser import log_in, new_user, toast, wait_ready
from tests.web.test_calling import RECORD_DIALLED, dialled

pytestmark = pytest.mark.browser


ACCESS = "+31201234999"


@pytest.fixture(scope="module")
def exchange(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium is not installed here")
    server = LiveServer(
        tmp_path_factory.mktemp("exchange") / "data",
        call_processing=True,
        extra_settings={"call_access_number": ACCESS, "call_access_seconds": 30.0},
    )
    server.start()
    yield server
    server.stop()


def set_method(page: Page, exchange: LiveServer, method: str) -> None:
    token = page.evaluate("localStorage.getItem('hipper.token')")
    response = httpx.put(
        f"{exchange.url}/api/v1/me/services/call-method",
        json={"method": method, "callback_device": "desk"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200, response.text


def test_via_the_exchange_the_mobile_dials_the_access_number(page: Page, exchange: LiveServer) -> None:
    username = new_user(exchange, pin="2580")
    exchange.add_history(username)
    log_in(page, exchange, username)
    set_method(page, exchange, "via_exchange")
    page.evaluate(RECORD_DIALLED)
    page.goto(exchange.url + "/#/calls")
    wait_ready(page)
    # Nothing going on: no live-calls section (GET /me/calls answered an empty list).
    expect(page.get_by_role("heading", name="Lopende gesprekken")).to_have_count(0)
    page.get_by_role("link", name="Bellen Manager").click()
    dialog = page.get_by_role("dialog", name="Bellen")
    dialog.get_by_role("radio", name="Bedrijfsnummer").check()
    with page.expect_response(lambda r: r.url.endswith("/api/v1/me/calls") and r.request.method == "POST") as placed:
        dialog.get_by_role("button", name="Bellen").click()
    answer = placed.value.json()
    assert placed.value.status == 202
    assert answer["method"] == "via_exchange"
    assert answer["to"] == "+31612345678"
    assert answer["access_number"] == ACCESS
    page.wait_for_function("window.dialled.length === 1")
    assert dialled(page) == [f"tel:{ACCESS}"]
    expect(page.get_by_role("status").filter(has_text="Uw mobiel belt de centrale")).to_be_visible()


def test_a_callback_without_a_phone_to_ring_says_why(page: Page, exchange: LiveServer) -> None:
    username = new_user(exchange, pin="2580")
    log_in(page, exchange, username)
    set_method(page, exchange, "callback")
    page.evaluate(RECORD_DIALLED)
    page.goto(exchange.url + "/#/dialpad")
    wait_ready(page)
    page.get_by_label("Te bellen nummer").fill("020 765 4321")
    page.get_by_role("button", name="Bellen", exact=True).click()
    expect(toast(page)).to_contain_text("Er is geen toestel om u op terug te bellen")
    page.wait_for_timeout(300)
    assert dialled(page) == []  # no silent fallback: the user learns why
