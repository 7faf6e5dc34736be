"""Web Push in real Chromium (SPEC L): the app's notification toggles and the service worker's push handler.

What headless Chromium cannot do: hand out a real PushSubscription. In a Playwright context (incognito-like)
PushManager.subscribe refuses at once; in a persistent profile it waits for Google's push service, which a
test machine cannot reach. So the subscription is tested up to that point (permission asked, the exchange's
VAPID key fetched, the refusal reported on the screen), and the other half — a push arriving at the service
worker — is delivered with CDP's ServiceWorker.deliverPushMessage, the same path a push service takes.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.web.conftest import BYPASS_CSP, VIEWPORT
from tests.web.live_server import LiveServer
from tests.web.test_app_browser import api, log_in, new_user, saving_app_settings, wait_ready

pytestmark = pytest.mark.browser


def test_notification_toggle_asks_the_browser_with_the_exchanges_vapid_key(
    browser: Browser, exchange: LiveServer
) -> None:
    context = browser.new_context(
        viewport=VIEWPORT, locale="nl-NL", permissions=["notifications"], bypass_csp=BYPASS_CSP
    )
    context.set_default_timeout(10_000)
    page = context.new_page()
    try:
        username = new_user(exchange, pin="2580")
        log_in(page, exchange, username)
        page.evaluate("navigator.serviceWorker.ready.then(() => true)")
        page.goto(exchange.url + "/#/app-settings")
        wait_ready(page)
        status = page.locator("#push-status")
        expect(status).to_contain_text("Dit toestel ontvangt geen meldingen.")
        switch = page.get_by_role("switch", name="Gemiste gesprekken")
        expect(switch).to_be_checked()
        # Each change saved before the next (two PUTs in flight at once may reach the exchange in either order).
        with saving_app_settings(page):
            switch.uncheck()
        with page.expect_request("**/api/v1/push/vapid-public-key") as asked, saving_app_settings(page):
            switch.check()
        assert asked.value.method == "GET"
        # The browser could not reach a push service here: the screen says so instead of pretending.
        expect(status).to_contain_text("De browser kon zich niet aanmelden bij zijn meldingendienst.")
        expect(status.get_by_role("button", name="Meldingen aanzetten op dit toestel")).to_be_visible()
        assert api(page, exchange, "/me/app-settings")["push"]["missed_calls"] is True
        assert api(page, exchange, "/me/push-subscriptions") == []
    finally:
        context.close()


def test_without_permission_nothing_is_asked_of_the_exchange(page: Page, exchange: LiveServer) -> None:
    username = new_user(exchange, pin="2580")
    log_in(page, exchange, username)
    page.context.clear_permissions()
    page.goto(exchange.url + "/#/app-settings")
    wait_ready(page)
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.get_by_role("switch", name="Voicemail", exact=True).uncheck()
    page.get_by_role("switch", name="Voicemail", exact=True).check()
    status = page.locator("#push-status")
    expect(status).to_contain_text("U heeft geen toestemming gegeven voor meldingen.")
    assert not [url for url in requests if "vapid-public-key" in url]


def test_a_push_shows_a_notification_that_opens_the_screen(browser: Browser, exchange: LiveServer) -> None:
    context = browser.new_context(
        viewport=VIEWPORT, locale="nl-NL", permissions=["notifications"], bypass_csp=BYPASS_CSP
    )
    context.set_default_timeout(10_000)
    page = context.new_page()
    try:
        cdp = context.new_cdp_session(page)
        registrations: list[dict[str, Any]] = []
        cdp.on("ServiceWorker.workerRegistrationUpdated", lambda event: registrations.extend(event["registrations"]))
        cdp.send("ServiceWorker.enable")
        page.goto(exchange.url + "/")
        page.evaluate("navigator.serviceWorker.ready.then(() => true)")
        deadline = 300  # the registration event, within 30 s
        while not registrations and deadline:
            page.wait_for_timeout(100)
            deadline -= 1
        registration_id = registrations[-1]["registrationId"]
        # What hipper.notify.push sends for a new voicemail.
        message = {
            "type": "voicemail",
            "title": "Nieuwe voicemail",
            "body": "Manager (+31612345678), 12 s",
            "url": "/#/voicemails",
            "tag": "voicemail",
        }
        cdp.send(
            "ServiceWorker.deliverPushMessage",
            {"origin": exchange.url, "registrationId": registration_id, "data": json.dumps(message)},
        )
        # The worker shows it once it has woken and handled the push: wait for that event, not a fixed number of
        # polls (a loaded machine can take seconds to start the worker).
        handle = page.wait_for_function(
            """async () => {
              const found = await (await navigator.serviceWorker.ready).getNotifications();
              return found.length ? found.map((n) => ({title: n.title, body: n.body, tag: n.tag, url: n.data.url}))
                                  : null;
            }""",
            timeout=30_000,
        )
        shown: Any = handle.json_value()
        assert shown == [
            {"title": "Nieuwe voicemail", "body": message["body"], "tag": "voicemail", "url": "/#/voicemails"}
        ]
    finally:
        context.close()
