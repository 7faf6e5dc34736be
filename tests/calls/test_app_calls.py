"""Calls placed from the app (SPEC D1/D2/D9): callback, via the exchange's access number, via the mobile; the
user's live calls listed and hung up through the API, with real SIPp phones, trunk and mobile network."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import select

from hipper.api.app import attach_calls, create_app
from hipper.api.routers.calls import LiveCallOut
from hipper.apps.click_to_dial import Callback
from hipper.domain.services import (
    Anywhere,
    AnywhereLocation,
    CallForwardingNoAnswer,
    CallMethod,
    DoNotDisturb,
    FixedMobile,
    Voicemail,
)
from hipper.engine.call import call_key
from hipper.engine.leg import CalleeLeg, LegState
from hipper.store.models import ActiveCall, Node
from tests.calls.conftest import (
    Exchange,
    Sipp,
    call_until_told,
    expect_headers,
    phone,
    place_call,
    scenario,
    start_sipp,
    trunk,
    with_request_uri,
)
from tests.calls.test_groups import QUEUE_NUMBER, call_center, call_from_trunk, hunt_group
from tests.calls.test_settings_matrix import greeting_ms
from tests.ops.conftest import free_port
from tests.ops.test_events import next_event, read_events

pytestmark = pytest.mark.sip

ACCESS = "+31201234999"
ALICE_DIRECT = "+31201234201"
SHOWN = re.escape(ALICE_DIRECT)  # SIPp checks headers with regular expressions
ALICE_MOBILE = "+31612340201"
FAR = "+31207654321"  # what "020 765 4321" becomes
LOCATION = "+31612345678"  # an Anywhere location (reached over the trunk)
# The window for the mobile's call is the default's (30 s): SIPp starts within it however loaded the machine is.
SETTINGS = {"call_access_number": ACCESS, "call_access_seconds": 30.0}


@dataclass
class Api:
    http: httpx.AsyncClient

    async def login(self, name: str) -> dict[str, str]:
        response = await self.http.post("/api/v1/auth/login", json={"username": name, "password": "correct horse 1"})
        assert response.status_code == 200, response.text
        return {"Authorization": f"Bearer {response.json()['token']}"}


@pytest.fixture
async def api(exchange: Exchange) -> AsyncIterator[Api]:
    async with serving_api(exchange) as served:
        yield served


@contextlib.asynccontextmanager
async def serving_api(exchange: Exchange) -> AsyncIterator[Api]:
    """The HTTP API over a real connection (SSE needs one), sharing the exchange's B2BUA as `hipper serve` does."""
    app = create_app(exchange.settings, run_migrations=False)
    attach_calls(app, exchange.b2bua)
    app.state.hipper.events.poll_seconds = 0.2
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning",
                       timeout_graceful_shutdown=1)
    )  # fmt: skip
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:  # noqa: ASYNC110 - uvicorn offers a flag, not an event
                await asyncio.sleep(0.02)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            yield Api(http)
    finally:
        server.should_exit = True
        server.force_exit = True
        async with asyncio.timeout(10):
            await task
        await app.state.hipper.engine.dispose()


async def alice(exchange: Exchange, method: str = "callback", device: str = "desk") -> None:
    await exchange.add_user("alice", "201", direct=ALICE_DIRECT, mobile=ALICE_MOBILE)
    await exchange.add_user("bob", "202", direct="+31201234202")
    await exchange.set_service("alice", CallMethod(method=method, callback_device=device))


async def finished_callback(exchange: Exchange, limit: float = 20.0) -> Callback:
    async with asyncio.timeout(limit):
        return await exchange.callbacks_ended.get()


async def desk_ringing(exchange: Exchange, callback_id: str, limit: float = 15.0) -> None:
    """Until the callback's leg to the user's phone has its 1xx (the phone rings)."""
    callback = exchange.applications.app_calls.callbacks[callback_id]
    async with asyncio.timeout(limit):
        while not any(leg.state is LegState.EARLY for leg in callback.legs):  # noqa: ASYNC110 - the leg's state
            await asyncio.sleep(0.02)


async def live_calls(api: Api, headers: dict[str, str]) -> list[dict[str, object]]:
    response = await api.http.get("/api/v1/me/calls", headers=headers)
    assert response.status_code == 200, response.text
    calls: list[dict[str, object]] = response.json()["calls"]
    return calls


async def call_events(api: Api, headers: dict[str, str]) -> list[tuple[str, str]]:
    """The user's call.started / call.ended events from the live stream, up to the first call.ended."""
    found: list[tuple[str, str]] = []
    async with api.http.stream("GET", "/api/v1/events", headers={**headers, "Last-Event-ID": "0"}) as response:
        events = read_events(response)
        while not found or found[-1][0] != "call.ended":
            sse = await next_event(events)
            if sse.event in ("call.started", "call.ended"):
                found.append((sse.event, sse.data["id"]))
    return found


async def wait_for_state(api: Api, headers: dict[str, str], state: str, limit: float = 15.0) -> dict[str, object]:
    async with asyncio.timeout(limit):
        while True:
            calls = await live_calls(api, headers)
            if calls and calls[0]["state"] == state:
                return calls[0]
            await asyncio.sleep(0.1)


@pytest.mark.parametrize("exchange", [SETTINGS], indirect=True)
async def test_callback_rings_the_desk_phone_then_calls_the_number_and_bridges_them(
    exchange: Exchange, api: Api
) -> None:
    await alice(exchange)
    desk = await phone(
        exchange, "alice", "alice-desk",
        scenario("callback_user_talks.xml", ring_ms=1500, wait_ms=300, talk_ms=2500, from_check=r"\+31207654321"),
    )  # fmt: skip
    checks = expect_headers(("From", SHOWN), ("P-Asserted-Identity", SHOWN), ("To", r"\+31207654321"))
    network = await trunk(exchange, "far", scenario("callee.xml", ring_ms=200, **checks), "-rtp_echo")
    headers = await api.login("alice")

    placed = await api.http.post("/api/v1/me/calls", json={"to": "020 765 4321"}, headers=headers)
    assert placed.status_code == 202, placed.text
    body = placed.json()
    assert body["method"] == "callback" and body["to"] == FAR and body["identity"]["number"] == ALICE_DIRECT
    # The desk phone rings first (for 1.5 s): meanwhile the call is "ringing" and the number is not called yet.
    listed = await wait_for_state(api, headers, "ringing")
    assert listed["id"] == body["id"] and listed["direction"] == "outgoing" and listed["remote_number"] == FAR
    assert exchange.applications.app_calls.callbacks[body["id"]].far_leg is None
    await wait_for_state(api, headers, "active")

    await desk.succeeded()
    await network.succeeded()  # it got the INVITE with Alice's number in From and P-Asserted-Identity, then BYE
    callback = await finished_callback(exchange)
    assert callback.media["user_packets_received"] > 50  # the desk phone's audio …
    assert callback.media["far_packets_sent"] > 50  # … relayed to the far end,
    assert callback.media["far_packets_received"] > 50  # its echo …
    assert callback.media["user_packets_sent"] > 50  # … relayed back to the desk phone
    assert await live_calls(api, headers) == []
    [row] = await exchange.call_logs("alice")
    assert (row.direction, row.remote_number, row.local_identity) == ("placed", FAR, ALICE_DIRECT)
    assert row.outcome == "callback, answered" and row.answered_at is not None

    # The app's live event stream saw the call start and end (SPEC D3).
    assert await call_events(api, headers) == [("call.started", body["id"]), ("call.ended", body["id"])]


@pytest.mark.parametrize("exchange", [SETTINGS], indirect=True)
async def test_hanging_up_through_the_api_ends_both_legs_and_only_the_owner_can(exchange: Exchange, api: Api) -> None:
    await alice(exchange)
    desk = await phone(exchange, "alice", "alice-desk", scenario("callee.xml", ring_ms=100), "-rtp_echo")
    network = await trunk(exchange, "far", scenario("callee.xml", ring_ms=100), "-rtp_echo")
    headers = await api.login("alice")
    bob = await api.login("bob")

    placed = await api.http.post("/api/v1/me/calls", json={"to": FAR, "method": "callback"}, headers=headers)
    assert placed.status_code == 202, placed.text
    call_id = placed.json()["id"]
    await wait_for_state(api, headers, "active")
    assert await live_calls(api, bob) == []  # Bob never sees Alice's calls …
    assert (await api.http.delete(f"/api/v1/me/calls/{call_id}", headers=bob)).status_code == 404  # … nor ends them
    assert len(await live_calls(api, headers)) == 1

    ended = await api.http.delete(f"/api/v1/me/calls/{call_id}", headers=headers)
    assert ended.status_code == 204, ended.text
    await desk.succeeded()  # both got their BYE
    await network.succeeded()
    await finished_callback(exchange)
    assert await live_calls(api, headers) == []
    assert (await api.http.delete(f"/api/v1/me/calls/{call_id}", headers=headers)).status_code == 404


async def mobile_calls_the_access_number(exchange: Exchange, final: str, name: str = "handset", **values: Any) -> Sipp:
    """alice's mobile, through the mobile network, calls the access number (a call via the exchange)."""
    text = scenario(
        "trunk_caller.xml", final=final, user=ALICE_MOBILE, from_user=ALICE_MOBILE, display="Alice", extra="", **values
    )
    return await start_sipp(exchange, name, text, "-s", ACCESS, port=exchange.mobile_port)


@pytest.mark.parametrize("exchange", [SETTINGS], indirect=True)
async def test_via_the_exchange_the_mobile_calling_the_access_number_in_time_is_connected(
    exchange: Exchange, api: Api
) -> None:
    await alice(exchange, method="via_exchange")
    headers = await api.login("alice")
    checks = expect_headers(("From", SHOWN), ("P-Asserted-Identity", SHOWN))
    network = await trunk(exchange, "far", scenario("callee.xml", ring_ms=100, **checks), "-rtp_echo")

    placed = await api.http.post("/api/v1/me/calls", json={"to": "020 765 4321"}, headers=headers)
    assert placed.status_code == 202, placed.text
    assert placed.json()["access_number"] == ACCESS and placed.json()["expires_in_seconds"] == 30.0
    handset = await mobile_calls_the_access_number(exchange, "final_talks.xml", talk_ms=1500)
    listed = await wait_for_state(api, headers, "active")
    assert (listed["direction"], listed["remote_number"]) == ("outgoing", FAR)
    assert (await call_events(api, headers))[0] == ("call.started", listed["id"])
    await handset.succeeded()
    await network.succeeded()
    call = await exchange.next_call()
    assert call.answered
    assert call.media["caller_packets_received"] > 30 and call.media["callee_packets_received"] > 30
    rows = await exchange.call_logs("alice")
    assert [(r.direction, r.remote_number, r.local_identity) for r in rows] == [("placed", FAR, ALICE_DIRECT)]
    assert await call_events(api, headers) == [("call.started", listed["id"]), ("call.ended", listed["id"])]


@pytest.mark.parametrize("exchange", [{**SETTINGS, "call_access_seconds": 2.0}], indirect=True)
async def test_via_the_exchange_a_call_after_the_window_or_unannounced_is_refused(exchange: Exchange, api: Api) -> None:
    await alice(exchange, method="via_exchange")
    headers = await api.login("alice")
    placed = await api.http.post("/api/v1/me/calls", json={"to": FAR}, headers=headers)
    assert placed.status_code == 202, placed.text
    await asyncio.sleep(2.5)  # the window (2 s here, 30 s by default) has passed
    for attempt in ("late", "again"):  # a second try finds nothing armed either
        handset = await mobile_calls_the_access_number(
            exchange, "final_rejected.xml", name=f"handset-{attempt}", status=403
        )
        await handset.succeeded()
        call = await exchange.next_call()
        assert not call.answered


@pytest.mark.parametrize("exchange", [{**SETTINGS, "outbound_max_calls_per_user": 1}], indirect=True)
async def test_via_the_exchange_a_call_out_counts_against_the_outbound_limit(exchange: Exchange, api: Api) -> None:
    """A call via the exchange goes out through the trunk on the user's account: with alice's one outside call
    already talking from her desk phone, her mobile's call to the access number is refused as her own second call
    out would be (toll fraud: before, it went out whatever the limits said)."""
    await alice(exchange, method="via_exchange")
    network = await trunk(exchange, "far", scenario("callee.xml", ring_ms=100), "-rtp_echo")
    first = await call_until_told(exchange, "alice", "0612345678")
    async with asyncio.timeout(15):
        while exchange.b2bua.outbound.gate.trunk < 1:  # noqa: ASYNC110 - admitted: it counts from then on
            await asyncio.sleep(0.01)
    headers = await api.login("alice")
    placed = await api.http.post("/api/v1/me/calls", json={"to": FAR}, headers=headers)
    assert placed.status_code == 202, placed.text
    handset = await mobile_calls_the_access_number(exchange, "final_rejected.xml", status=403)
    await handset.succeeded()
    refused = await exchange.next_call()
    assert not refused.answered and refused.branches == []  # the trunk was not rung for it
    await first.hang_up()
    await network.succeeded()
    assert (await exchange.next_call()).answered
    async with asyncio.timeout(5):
        while exchange.b2bua.outbound.gate.trunk:  # noqa: ASYNC110 - released when the call ended
            await asyncio.sleep(0.01)


@pytest.mark.parametrize("exchange", [SETTINGS], indirect=True)
async def test_bad_requests_get_a_clear_answer(exchange: Exchange, api: Api) -> None:
    await alice(exchange)
    await exchange.add_user("carol", "203", direct="+31201234203", licences=("do-not-disturb",))
    headers = await api.login("alice")

    async def post(json: dict[str, object], who: dict[str, str] = headers) -> httpx.Response:
        return await api.http.post("/api/v1/me/calls", json=json, headers=who)

    bad = await post({"to": "not a number"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "to"]
    missing = await post({"to": FAR, "identity": "call_center", "method": "via_mobile"})
    assert missing.status_code == 422 and missing.json()["detail"][0]["loc"] == ["body", "identity"]
    wrong = await post({"to": FAR, "method": "teleport"})
    assert wrong.status_code == 422
    nothing = await post({"to": FAR})  # callback to the desk phone, and none is registered
    assert nothing.status_code == 409 and nothing.json()["code"] == "nothing_to_call_back"
    assert "registered" in nothing.json()["detail"]
    unlicensed = await post({"to": FAR}, await api.login("carol"))
    assert unlicensed.status_code == 403 and unlicensed.json()["code"] == "not_licensed"
    assert (await api.http.delete("/api/v1/me/calls/abc123", headers=headers)).status_code == 404
    assert (await api.http.get("/api/v1/me/calls")).status_code == 401

    # Via the mobile: nothing happens in the exchange, the app learns which number the callee will see (G3).
    mobile = await post({"to": "020 765 4321", "method": "via_mobile", "identity": "mobile"})
    assert mobile.status_code == 200, mobile.text
    assert mobile.json()["identity"]["number"] == ALICE_MOBILE and mobile.json()["id"] is None
    assert await live_calls(api, headers) == []


@pytest.mark.parametrize("exchange", [SETTINGS], indirect=True)
async def test_callback_on_the_mobile_rings_the_handset_through_the_mobile_network(
    exchange: Exchange, api: Api
) -> None:
    await alice(exchange, device="mobile")
    # The handset is reached through the mobile network with its routing prefix; the far end hangs up after 1 s.
    mobile_checks = expect_headers(("To", re.escape(ALICE_MOBILE)))
    handset = await start_sipp(
        exchange, "handset", scenario("callee.xml", ring_ms=100, **mobile_checks), "-rtp_echo",
        port=exchange.mobile_port,
    )  # fmt: skip
    network = await trunk(exchange, "far", scenario("callee_hangs_up.xml"))
    headers = await api.login("alice")
    placed = await api.http.post("/api/v1/me/calls", json={"to": FAR}, headers=headers)
    assert placed.status_code == 202, placed.text
    await handset.succeeded()  # rung first, answered, and got its BYE when the far end hung up
    await network.succeeded()
    callback = await finished_callback(exchange)
    assert callback.targets[0].uri.user == "9" + ALICE_MOBILE and callback.outcome == "answered"
    [row] = await exchange.call_logs("alice")
    assert row.outcome == "callback, answered"


@pytest.mark.parametrize("exchange", [SETTINGS], indirect=True)
async def test_callback_to_a_busy_number_plays_busy_then_hangs_up_the_user(exchange: Exchange, api: Api) -> None:
    await alice(exchange)
    desk = await phone(exchange, "alice", "alice-desk", scenario("callee.xml", ring_ms=100), "-rtp_echo")
    network = await trunk(exchange, "far", scenario("callee_refuses.xml", status=486))
    headers = await api.login("alice")
    placed = await api.http.post("/api/v1/me/calls", json={"to": FAR}, headers=headers)
    assert placed.status_code == 202, placed.text
    await network.succeeded()
    await desk.succeeded()  # the exchange hung up on the desk phone after the busy tone
    callback = await finished_callback(exchange)
    assert callback.media["user_packets_sent"] > 50  # the busy tone (and ringback) reached the desk phone
    [row] = await exchange.call_logs("alice")
    assert (row.outcome, row.answered_at) == ("callback, busy", None)


@pytest.mark.parametrize("exchange", [SETTINGS], indirect=True)
async def test_callback_to_a_colleague_rings_their_phone_showing_the_extension(exchange: Exchange, api: Api) -> None:
    await alice(exchange)
    desk = await phone(exchange, "alice", "alice-desk", scenario("callee.xml", ring_ms=100), "-rtp_echo")
    bob_checks = expect_headers(("From", "sip:201@"))
    bob = await phone(exchange, "bob", "bob-desk", scenario("callee.xml", ring_ms=100, **bob_checks), "-rtp_echo")
    headers = await api.login("alice")
    placed = await api.http.post("/api/v1/me/calls", json={"to": "202"}, headers=headers)
    assert placed.status_code == 202, placed.text
    assert placed.json()["identity"]["kind"] == "extension"
    await wait_for_state(api, headers, "active")
    # One call for Alice, with the number she called: not also the exchange's loop-back leg (without a number).
    assert [(call["id"], call["remote_number"]) for call in await live_calls(api, headers)] == [
        (placed.json()["id"], "202")
    ]
    ended = await api.http.delete(f"/api/v1/me/calls/{placed.json()['id']}", headers=headers)
    assert ended.status_code == 204
    await desk.succeeded()
    await bob.succeeded()
    await finished_callback(exchange)
    # One row in Recent, with the colleague's name as a call from the desk phone has it.
    [row] = await exchange.call_logs("alice")
    assert (row.direction, row.remote_number, row.remote_name) == ("placed", "202", "Bob")


@pytest.mark.parametrize("exchange", [SETTINGS], indirect=True)
async def test_an_incoming_call_is_listed_while_it_rings_and_can_be_refused(exchange: Exchange, api: Api) -> None:
    await alice(exchange)
    await exchange.set_service("alice", Voicemail(active=False))  # nothing for busy: the caller hears the refusal
    desk = await phone(exchange, "alice", "alice-desk", scenario("callee_rings.xml"))
    bob_calls = await place_call(exchange, "bob", "201", "final_rejected.xml", status=486)
    headers = await api.login("alice")
    listed = await wait_for_state(api, headers, "ringing")
    assert (listed["direction"], listed["remote_number"]) == ("incoming", "202")
    assert [c["direction"] for c in await live_calls(api, await api.login("bob"))] == ["outgoing"]
    ended = await api.http.delete(f"/api/v1/me/calls/{listed['id']}", headers=headers)
    assert ended.status_code == 204
    await bob_calls.succeeded()  # Bob's phone got busy (486): alice has nothing for busy
    await desk.succeeded()  # Alice's phone got CANCEL
    call = await exchange.next_call()
    assert not call.answered and call.branches and {status for _, status in call.branches} == {603}
    assert await live_calls(api, headers) == []


async def test_a_call_refused_from_the_app_goes_to_the_users_voicemail_for_busy(exchange: Exchange, api: Api) -> None:
    """Refusing a ringing call in the app is the user's Decline: the call goes on as their plan says for busy —
    here voicemail on busy takes a message — not ended for the caller as if they had hung up (BroadWorks: a
    rejected call gets the busy treatment)."""
    await alice(exchange)
    await exchange.set_service("alice", Voicemail(active=True, on_busy=True, on_no_answer=False))
    desk = await phone(exchange, "alice", "alice-desk", scenario("callee_rings.xml"))
    bob = await place_call(exchange, "bob", "201", "final_leaves_message.xml", greeting_ms=greeting_ms("201"), limit=40)
    headers = await api.login("alice")
    listed = await wait_for_state(api, headers, "ringing")
    refused = await api.http.delete(f"/api/v1/me/calls/{listed['id']}", headers=headers)
    assert refused.status_code == 204, refused.text
    await desk.succeeded()  # CANCEL for alice's desk
    await bob.succeeded(45)  # the voicemail answered: greeting, tone, bob's message, its BYE
    call = await exchange.next_call(45)
    assert call.outcome == "voicemail"
    assert call.branches and {status for _, status in call.branches} == {603}  # her desk (and mobile) declined
    rows = await exchange.call_logs("alice")
    assert [(r.direction, r.outcome) for r in rows] == [("missed", "busy, voicemail")]


async def test_an_agent_refusing_an_offered_call_center_call_passes_it_to_the_next_agent(
    exchange: Exchange, api: Api
) -> None:
    """A call-center agent who refuses the offered call in the app only passes it on: the caller stays in the
    queue and the next available agent gets it (before, the refusal ended the queued caller's call)."""
    await exchange.add_user("alice", "201")
    await exchange.add_user("carol", "203")
    await call_center(exchange, ["alice", "carol"])
    agent = "/api/v1/me/services/call-center-agent"
    alice_headers, carol_headers = await api.login("alice"), await api.login("carol")
    assert (await api.http.put(agent, json={"state": "available"}, headers=alice_headers)).status_code == 200
    desk = await phone(exchange, "alice", "alice", scenario("callee_rings.xml"))  # rings until cancelled
    carol = await phone(exchange, "carol", "carol", scenario("callee.xml", ring_ms=500), "-rtp_echo")
    outside = await call_from_trunk(exchange, QUEUE_NUMBER)
    listed = await wait_for_state(api, alice_headers, "ringing")  # offered to alice, the only one available
    assert (await api.http.put(agent, json={"state": "available"}, headers=carol_headers)).status_code == 200
    refused = await api.http.delete(f"/api/v1/me/calls/{listed['id']}", headers=alice_headers)
    assert refused.status_code == 204, refused.text
    await desk.succeeded()  # CANCEL for alice's phone
    await carol.succeeded()  # the same caller, offered to carol, answered and talked
    await outside.succeeded()
    call = await exchange.next_call()
    assert call.answered and [status for _, status in call.branches] == [603, 200]


async def call_stream(api: Api, headers: dict[str, str], last: str) -> list[tuple[str, dict[str, object]]]:
    """The user's `call.*` events from the live stream (all of them, from the start), up to the first `last`."""
    found: list[tuple[str, dict[str, object]]] = []
    async with api.http.stream("GET", "/api/v1/events", headers={**headers, "Last-Event-ID": "0"}) as response:
        events = read_events(response)
        while not found or found[-1][0] != last:
            sse = await next_event(events, 15)
            if sse.event is not None and sse.event.startswith("call."):
                found.append((sse.event, sse.data))
    return found


async def test_an_incoming_call_rings_on_the_event_stream_and_ends_there_when_nobody_answers(
    exchange: Exchange, api: Api
) -> None:
    """bob calls alice; her desk rings one ring, then her voicemail takes the call. Her apps hear of it while it
    rings (`call.ringing`: what the list draws), its end for her when the ringing stops unanswered (the call goes
    on, in her voicemail), and the call's own end with her missed call."""
    await alice(exchange)
    await exchange.set_service("alice", Voicemail(active=True, on_no_answer=True, rings=1))
    headers = await api.login("alice")
    desk = await phone(exchange, "alice", "alice-desk", scenario("callee_rings.xml"))  # cancelled after a ring
    bob = await place_call(exchange, "bob", "201", "final_talks.xml", talk_ms=1500)
    await desk.succeeded()
    await bob.succeeded()
    key = call_key((await exchange.next_call()).call_id)
    found = await call_stream(api, headers, "call.ended")
    assert [kind for kind, _ in found] == ["call.ringing", "call.updated", "call.ended"], found
    ringing, ended, logged = (payload for _, payload in found)
    drawn = LiveCallOut.model_validate(ringing)  # the call as GET /me/calls lists it
    assert (drawn.id, drawn.direction, drawn.state) == (key, "incoming", "ringing")
    assert (drawn.remote_number, drawn.remote_name) == ("202", "Bob")
    assert ended == {"id": key, "state": "ended"} and logged["id"] == key
    [row] = await exchange.call_logs("alice")
    assert (row.direction, row.outcome) == ("missed", "no-answer, voicemail")


async def shared_rows(exchange: Exchange, name: str) -> list[tuple[str, bool]]:
    """The user's rows in the shared `active_calls` table (what the other nodes list): (call id, ringing)."""
    async with exchange.sessions() as session:
        rows = await session.execute(
            select(ActiveCall.call_id, ActiveCall.ringing).where(ActiveCall.user_id == exchange.users[name])
        )
        return [(call_id, ringing) for call_id, ringing in rows.all()]


async def test_a_call_placed_from_a_phone_is_shared_ringing_until_hung_up_from_the_app(
    exchange: Exchange, api: Api
) -> None:
    """alice's desk phone calls bob, whose phone rings: her call is written to the shared table as ringing (another
    node lists it and forwards its control here) with its `call.ringing`, as an incoming call is; hung up in her
    app (CANCEL to bob, 487 to her phone) its row goes with the call. Before, her ringing call had no row at all."""
    await alice(exchange)
    desk = await phone(exchange, "bob", "bob-desk", scenario("callee_rings.xml"))  # rings until cancelled
    calling = await place_call(exchange, "alice", "202", "final_rejected.xml", status=487)
    headers = await api.login("alice")
    [(_, payload)] = await call_stream(api, headers, "call.ringing")
    drawn = LiveCallOut.model_validate(payload)
    assert (drawn.direction, drawn.state, drawn.remote_number, drawn.remote_name) == ("outgoing", "ringing", "202",
                                                                                       "Bob")  # fmt: skip
    [call] = exchange.b2bua.calls
    assert drawn.id == call.key and await shared_rows(exchange, "alice") == [(call.call_id, True)]
    hung_up = await api.http.delete(f"/api/v1/me/calls/{drawn.id}", headers=headers)
    assert hung_up.status_code == 204, hung_up.text
    await calling.succeeded()
    await desk.succeeded()
    found = await call_stream(api, headers, "call.ended")
    assert [kind for kind, _ in found] == ["call.ringing", "call.ended"]  # her own call: no `call.updated` ended
    assert await shared_rows(exchange, "alice") == []


async def test_a_call_placed_from_a_phone_is_shared_ringing_then_answered(exchange: Exchange, api: Api) -> None:
    """The ringing row of alice's own call gives way to her answered row when bob answers, and that goes with the
    call's end."""
    await alice(exchange)
    desk = await phone(exchange, "bob", "bob-desk", scenario("callee.xml", ring_ms=1500), "-rtp_echo")
    calling = await call_until_told(exchange, "alice", "202")
    headers = await api.login("alice")
    await call_stream(api, headers, "call.ringing")
    [call] = exchange.b2bua.calls
    assert await shared_rows(exchange, "alice") == [(call.call_id, True)]
    found = await call_stream(api, headers, "call.started")
    assert [kind for kind, _ in found] == ["call.ringing", "call.started"]
    assert await shared_rows(exchange, "alice") == [(call.call_id, False)]  # on a call now: busy on every node
    await calling.hang_up()
    await desk.succeeded()
    assert [kind for kind, _ in await call_stream(api, headers, "call.ended")] == [
        "call.ringing", "call.started", "call.ended"
    ]  # fmt: skip
    assert await shared_rows(exchange, "alice") == []


async def test_a_call_placed_from_a_phone_that_a_colleagues_voicemail_answers_rings_no_more(
    exchange: Exchange, api: Api
) -> None:
    """alice's desk phone calls bob, whose phone rings once; then his voicemail answers her. For her the call rings
    no more: listed active (`call.updated`), its ringing row in the shared table replaced by an answered one, so no
    other node lists it ringing for the length of her message (before, it stayed ringing until she hung up), and
    every node finds her on a call (before, no node did)."""
    await alice(exchange)
    await exchange.set_service("bob", Voicemail(active=True, on_no_answer=True, rings=1))
    desk = await phone(exchange, "bob", "bob-desk", scenario("callee_rings.xml"))  # cancelled after a ring
    calling = await call_until_told(exchange, "alice", "202")
    headers = await api.login("alice")
    await desk.succeeded()
    found = await call_stream(api, headers, "call.updated")
    assert [kind for kind, _ in found] == ["call.ringing", "call.updated"], found
    [call] = exchange.b2bua.calls
    assert found[1][1] == {"id": call.key, "state": "active"}
    listed = await wait_for_state(api, headers, "active")
    assert (listed["id"], listed["direction"]) == (call.key, "outgoing")
    await exchange.b2bua.presence.written()
    assert await shared_rows(exchange, "alice") == [(call.call_id, False)]  # answered: busy on every node
    await calling.hang_up()
    found = await call_stream(api, headers, "call.ended")
    assert [kind for kind, _ in found] == ["call.ringing", "call.updated", "call.ended"], found
    await exchange.b2bua.presence.written()
    assert await shared_rows(exchange, "alice") == []


@pytest.mark.parametrize(("ring_ms", "announce_after", "events"), [
    (1500, 0.5, ["call.ringing", "call.started", "call.ended"]),
    # Answered before the announcement is due (a long wait here, so a loaded machine cannot make the answer late):
    # drawn by its call.started, no ring event to write.
    (0, 10.0, ["call.started", "call.ended"]),
], ids=["rings", "answered-at-once"])  # fmt: skip
async def test_an_answered_call_rings_then_starts_on_the_event_stream(
    exchange: Exchange, api: Api, ring_ms: int, announce_after: float, events: list[str]
) -> None:
    exchange.applications.app_calls.ringing_event_seconds = announce_after
    await alice(exchange)
    headers = await api.login("alice")
    desk = await phone(exchange, "alice", "alice-desk", scenario("callee.xml", ring_ms=ring_ms), "-rtp_echo")
    bob = await place_call(exchange, "bob", "201", "final_talks.xml", talk_ms=500)
    await desk.succeeded()
    await bob.succeeded()
    found = await call_stream(api, headers, "call.ended")
    assert [kind for kind, _ in found] == events, found
    assert len({payload["id"] for _, payload in found}) == 1
    assert not exchange.applications.app_calls._ringing  # nothing still to announce (or to end) for the call


@pytest.mark.parametrize("exchange", [SETTINGS], indirect=True)
async def test_callback_rings_the_mobile_too_when_fixed_mobile_says_so(exchange: Exchange, api: Api) -> None:
    await alice(exchange)
    await exchange.set_service("alice", FixedMobile(click_to_dial_to_mobile=True))
    desk = await phone(exchange, "alice", "alice-desk", scenario("callee_rings.xml"))  # rings until cancelled
    handset = await start_sipp(
        exchange, "handset", scenario("callee.xml", ring_ms=300), "-rtp_echo", port=exchange.mobile_port
    )
    network = await trunk(exchange, "far", scenario("callee_hangs_up.xml"))
    headers = await api.login("alice")
    placed = await api.http.post("/api/v1/me/calls", json={"to": FAR}, headers=headers)
    assert placed.status_code == 202, placed.text
    await desk.succeeded()  # cancelled once the handset answered
    await handset.succeeded()
    await network.succeeded()
    callback = await finished_callback(exchange)
    assert sorted(t.label for t in callback.targets) == ["desk", "mobile"]
    assert callback.user_leg is not None and callback.user_leg.label == "mobile"


@pytest.mark.parametrize("exchange", [SETTINGS], indirect=True)
async def test_callback_rings_the_active_anywhere_locations_when_anywhere_says_so(exchange: Exchange, api: Api) -> None:
    """Anywhere's "click-to-dial rings my locations" (manual §7.2.10): the active location rings beside the desk
    and, answering first, carries the call; a location switched off is not rung."""
    await alice(exchange)
    car = AnywhereLocation(name="car", number=LOCATION, active=True)
    home = AnywhereLocation(name="home", number="+31301234567", active=False)
    await exchange.set_service("alice", Anywhere(locations=[car, home], click_to_dial_rings_locations=True))
    desk = await phone(exchange, "alice", "alice-desk", scenario("callee_rings.xml"))  # rings until cancelled
    # The location's number is dialled; the request is still addressed to alice (her callback).
    dialled = with_request_uri(expect_headers(("To", SHOWN)), rf"^INVITE sip:{re.escape(LOCATION)}@")
    location = await start_sipp(
        exchange, "location", scenario("callee.xml", ring_ms=300, **dialled), "-rtp_echo", port=exchange.trunk_port
    )
    bob = await phone(exchange, "bob", "bob-desk", scenario("callee_hangs_up.xml"))
    headers = await api.login("alice")
    placed = await api.http.post("/api/v1/me/calls", json={"to": "202"}, headers=headers)
    assert placed.status_code == 202, placed.text
    await desk.succeeded()  # cancelled once the location answered
    await location.succeeded()
    await bob.succeeded()
    callback = await finished_callback(exchange)
    assert sorted(t.label for t in callback.targets) == ["anywhere", "desk"]
    assert callback.user_leg is not None and callback.user_leg.label == "anywhere"


@pytest.mark.parametrize("exchange", [SETTINGS], indirect=True)
async def test_callback_without_ringing_locations_rings_the_desk_only(exchange: Exchange, api: Api) -> None:
    await alice(exchange)
    car = AnywhereLocation(name="car", number=LOCATION, active=True)
    await exchange.set_service("alice", Anywhere(locations=[car], click_to_dial_rings_locations=False))
    desk = await phone(exchange, "alice", "alice-desk", scenario("callee.xml", ring_ms=100), "-rtp_echo")
    bob = await phone(exchange, "bob", "bob-desk", scenario("callee_hangs_up.xml"))
    headers = await api.login("alice")
    placed = await api.http.post("/api/v1/me/calls", json={"to": "202"}, headers=headers)
    assert placed.status_code == 202, placed.text
    await desk.succeeded()
    await bob.succeeded()
    callback = await finished_callback(exchange)
    assert [t.label for t in callback.targets] == ["desk"]


@pytest.mark.parametrize("exchange", [SETTINGS], indirect=True)
async def test_hanging_up_a_callback_while_the_desk_phone_rings_cancels_it(exchange: Exchange, api: Api) -> None:
    await alice(exchange)
    desk = await phone(exchange, "alice", "alice-desk", scenario("callee_rings.xml"))
    headers = await api.login("alice")
    placed = await api.http.post("/api/v1/me/calls", json={"to": FAR}, headers=headers)
    assert placed.status_code == 202, placed.text
    await wait_for_state(api, headers, "ringing")
    again = await api.http.post("/api/v1/me/calls", json={"to": FAR}, headers=headers)
    assert again.status_code == 409 and again.json()["code"] == "callback_under_way"
    await desk_ringing(exchange, placed.json()["id"])  # so it is the phone's ringing that the hang-up ends
    assert (await api.http.delete(f"/api/v1/me/calls/{placed.json()['id']}", headers=headers)).status_code == 204
    await desk.succeeded()
    callback = await finished_callback(exchange)
    assert callback.far_leg is None and callback.outcome == "cancelled"
    [row] = await exchange.call_logs("alice")
    assert row.outcome == "callback, cancelled"


async def test_a_node_without_call_processing_has_no_live_calls_and_places_none(exchange: Exchange) -> None:
    await alice(exchange)
    app = create_app(exchange.settings, run_migrations=False)  # no B2BUA on app.state.calls: an API-only node
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost") as http:
            headers = await Api(http).login("alice")
            assert (await http.get("/api/v1/me/calls", headers=headers)).json() == {"calls": []}
            placed = await http.post("/api/v1/me/calls", json={"to": FAR}, headers=headers)
            assert placed.status_code == 409 and placed.json()["code"] == "no_call_processing"
            mobile = await http.post("/api/v1/me/calls", json={"to": FAR, "method": "via_mobile"}, headers=headers)
            assert mobile.status_code == 200  # nothing in the exchange is needed for that
            assert (await http.delete("/api/v1/me/calls/abc", headers=headers)).status_code == 404
    finally:
        await app.state.hipper.engine.dispose()


@pytest.mark.parametrize("exchange", [{**SETTINGS, "rtp_timeout_seconds": 2.0}], indirect=True)
async def test_a_callback_whose_far_end_falls_silent_ends_by_rtp_timeout(exchange: Exchange, api: Api) -> None:
    await alice(exchange)
    # Neither side sends audio of its own after the bridge (the desk phone only echoes): no RTP in 2 s ends it.
    desk = await phone(exchange, "alice", "alice-desk", scenario("callee.xml", ring_ms=100), "-rtp_echo")
    network = await trunk(exchange, "far", scenario("callee.xml", ring_ms=100))
    headers = await api.login("alice")
    placed = await api.http.post("/api/v1/me/calls", json={"to": FAR}, headers=headers)
    assert placed.status_code == 202, placed.text
    await desk.succeeded()  # both got a BYE from the exchange
    await network.succeeded()
    callback = await finished_callback(exchange)
    assert callback.outcome == "rtp-timeout"


@pytest.mark.parametrize("exchange", [SETTINGS], indirect=True)
async def test_via_the_exchange_to_a_colleague_rings_their_phone(exchange: Exchange, api: Api) -> None:
    await alice(exchange, method="via_exchange")
    bob = await phone(
        exchange, "bob", "bob-desk", scenario("callee.xml", ring_ms=100, **expect_headers(("From", "sip:201@"))),
        "-rtp_echo",
    )  # fmt: skip
    headers = await api.login("alice")
    placed = await api.http.post("/api/v1/me/calls", json={"to": "202"}, headers=headers)
    assert placed.status_code == 202, placed.text
    handset = await mobile_calls_the_access_number(exchange, "final_talks.xml", talk_ms=1000)
    await handset.succeeded()
    await bob.succeeded()
    call = await exchange.next_call()
    assert call.answered
    assert [(r.direction, r.remote_number) for r in await exchange.call_logs("alice")] == [("placed", "202")]
    assert [r.direction for r in await exchange.call_logs("bob")] == ["received"]


async def test_explain_plans_with_the_exchanges_ring_length(exchange: Exchange, api: Api) -> None:
    """The exchange here rings 1 s per ring: explain's no-answer timeout is 3 rings × 1 s, as a real call's."""
    await alice(exchange)
    await exchange.set_service("alice", CallForwardingNoAnswer(active=True, destination="+31612349999", rings=3))
    headers = await api.login("alice")
    explained = await api.http.get("/api/v1/me/routing/explain", params={"caller": FAR}, headers=headers)
    assert explained.status_code == 200, explained.text
    assert explained.json()["plan"]["steps"][0]["timeout_seconds"] == 3 * exchange.settings.seconds_per_ring == 3


@pytest.mark.parametrize("exchange", [SETTINGS], indirect=True)
async def test_callback_to_a_colleague_follows_their_do_not_disturb(exchange: Exchange, api: Api) -> None:
    """The colleague's own plan applies to a callback's far leg: do-not-disturb is busy (486), where ringing their
    phones directly would find nothing registered (480, "not-answered")."""
    await alice(exchange)
    await exchange.set_service("bob", DoNotDisturb(active=True))
    desk = await phone(exchange, "alice", "alice-desk", scenario("callee.xml", ring_ms=100), "-rtp_echo")
    headers = await api.login("alice")
    placed = await api.http.post("/api/v1/me/calls", json={"to": "202"}, headers=headers)
    assert placed.status_code == 202, placed.text
    await desk.succeeded()  # busy tone, then the exchange hung up
    callback = await finished_callback(exchange)
    assert callback.outcome == "busy"
    assert (await exchange.next_call()).outcome == "busy"  # the far leg: Bob's busy treatment, a 486
    [row] = await exchange.call_logs("alice")  # one row for Alice: the callback's, not a second "placed"
    assert (row.direction, row.outcome) == ("placed", "callback, busy")


@pytest.mark.parametrize("exchange", [SETTINGS], indirect=True)
async def test_callback_to_a_colleague_reaches_their_voicemail(exchange: Exchange, api: Api) -> None:
    await alice(exchange)
    await exchange.set_service("bob", Voicemail(active=True, all_calls_to_voicemail=True))
    desk = await phone(exchange, "alice", "alice-desk", scenario("callee.xml", ring_ms=100), "-rtp_echo")
    headers = await api.login("alice")
    placed = await api.http.post("/api/v1/me/calls", json={"to": "202"}, headers=headers)
    assert placed.status_code == 202, placed.text
    await wait_for_state(api, headers, "active")  # voicemail answered Bob's line
    await asyncio.sleep(1.0)  # Bob's greeting plays (what a deposit stores is tested in tests/media_apps)
    ended = await api.http.delete(f"/api/v1/me/calls/{placed.json()['id']}", headers=headers)
    assert ended.status_code == 204
    await desk.succeeded()
    assert (await finished_callback(exchange)).outcome == "answered"
    assert (await exchange.next_call()).outcome == "voicemail"


TIMERS = {**SETTINGS, "session_min_se_seconds": 2}  # intervals of a few seconds (RFC 4028's floor is 90 s)


@pytest.mark.parametrize("exchange", [TIMERS], indirect=True)
async def test_callback_legs_offer_session_timers_and_the_exchange_refreshes_both(exchange: Exchange, api: Api) -> None:
    """RFC 4028 on the two legs the exchange originates for a callback, like a call's own legs: both INVITEs offer
    the timer, both phones make the exchange the refresher (refresher=uac) and get its UPDATE in time."""
    await alice(exchange)
    # Each checks Supported: timer in the INVITE, answers Session-Expires: 4;refresher=uac, and requires an UPDATE
    # within the interval (the exchange refreshes at half of it).
    desk = await phone(
        exchange, "alice", "alice-desk", scenario("callee_timer.xml", interval=4, refresh_within_ms=4000)
    )
    network = await trunk(exchange, "far", scenario("callee_timer.xml", interval=4, refresh_within_ms=4000))
    headers = await api.login("alice")
    placed = await api.http.post("/api/v1/me/calls", json={"to": FAR, "method": "callback"}, headers=headers)
    assert placed.status_code == 202, placed.text
    callback = exchange.applications.app_calls.callbacks[placed.json()["id"]]
    await wait_for_state(api, headers, "active")

    def refreshed(leg: CalleeLeg | None) -> bool:
        return leg is not None and leg.session_timer is not None and leg.session_timer.refreshes_sent >= 1

    async with asyncio.timeout(15):
        while not (refreshed(callback.user_leg) and refreshed(callback.far_leg)):  # noqa: ASYNC110 - counters
            await asyncio.sleep(0.1)
    ended = await api.http.delete(f"/api/v1/me/calls/{callback.id}", headers=headers)
    assert ended.status_code == 204, ended.text
    await desk.succeeded()  # offered, refreshed by UPDATE, then BYE
    await network.succeeded()
    assert (await finished_callback(exchange)).outcome == "answered"


@pytest.mark.parametrize("exchange", [TIMERS], indirect=True)
async def test_a_callback_leg_whose_phone_stops_refreshing_ends_the_callback(exchange: Exchange, api: Api) -> None:
    """§10 on a callback: the user's phone took the refresher role and went silent; the exchange sends it BYE
    when the session expires, and the far end gets BYE too."""
    await alice(exchange)
    desk = await phone(
        exchange, "alice", "alice-desk", scenario("callee_never_refreshes.xml", interval=4, bye_within_ms=10000)
    )
    network = await trunk(exchange, "far", scenario("callee.xml", ring_ms=100), "-rtp_echo")
    headers = await api.login("alice")
    loop = asyncio.get_running_loop()
    placed = await api.http.post("/api/v1/me/calls", json={"to": FAR, "method": "callback"}, headers=headers)
    started = loop.time()
    assert placed.status_code == 202, placed.text
    await desk.succeeded()  # BYE within the scenario's bound, the session having expired
    await network.succeeded()
    callback = await finished_callback(exchange)
    assert callback.user_leg is not None and callback.user_leg.session_expired
    assert callback.outcome == "answered"
    # §10: at interval - min(32, interval / 3) = 2.7 s after the answer, not at once (timers never fire early).
    assert loop.time() - started > 2.6


@pytest.mark.parametrize("api_url", ["http://127.0.0.1:1", "http://[::1"], ids=["not-answering", "no-url"])
async def test_a_node_that_cannot_be_asked_leaves_the_list_working_and_control_answers_503(
    exchange: Exchange, api: Api, api_url: str
) -> None:
    """Another live node carries one of alice's calls, but cannot be asked (it does not answer; its stored address
    is no URL): the list shows her calls here (none) without it, and a request about that call gets 503."""
    await alice(exchange)
    headers = await api.login("alice")
    now = datetime.now(UTC)
    async with exchange.sessions() as session:
        session.add(Node(node_id="elsewhere", started_at=now, lease_until=now + timedelta(minutes=5), api_url=api_url))
        session.add(ActiveCall(id="a" * 32, user_id=exchange.users["alice"], call_id="c" * 16, node_id="elsewhere",
                               started_at=now))  # fmt: skip
        await session.commit()
    assert await live_calls(api, headers) == []
    held = await api.http.post(f"/api/v1/me/calls/{'c' * 16}/hold", headers=headers)
    assert (held.status_code, held.json()["code"]) == (503, "node_unreachable")


async def test_a_hunt_groups_members_see_the_call_ring_and_the_one_who_answers_sees_it_start(
    exchange: Exchange, api: Api
) -> None:
    """A simultaneous hunt group rings alice and carol; carol answers. Both apps drew the call while it rang
    (`call.ringing`); alice's ends for her when carol takes it, carol's starts and ends with the call."""
    await alice(exchange)
    await exchange.add_user("carol", "203")
    await hunt_group(exchange, "simultaneous", ["alice", "carol"])
    desk = await phone(exchange, "alice", "alice-desk", scenario("callee_rings.xml"))  # cancelled by carol's answer
    carol = await phone(exchange, "carol", "carol", scenario("callee.xml", ring_ms=1500), "-rtp_echo")
    bob = await place_call(exchange, "bob", "500", "final_talks.xml", talk_ms=500)
    await bob.succeeded()
    await carol.succeeded()
    await desk.succeeded()
    key = call_key((await exchange.next_call()).call_id)
    alices = await call_stream(api, await api.login("alice"), "call.updated")
    assert [(kind, payload["id"]) for kind, payload in alices] == [("call.ringing", key), ("call.updated", key)]
    assert alices[1][1] == {"id": key, "state": "ended"}
    carols = await call_stream(api, await api.login("carol"), "call.ended")
    assert [(kind, payload["id"]) for kind, payload in carols] == [
        ("call.ringing", key), ("call.started", key), ("call.ended", key)
    ]  # fmt: skip
    assert LiveCallOut.model_validate(carols[0][1]).remote_number == "202"


async def test_a_hunt_group_member_refusing_the_call_stops_only_their_phone(exchange: Exchange, api: Api) -> None:
    """alice refuses (DELETE) a hunt-group call that rings her and carol: her desk stops ringing, carol's rings on
    and she takes the call — one member's refusal does not end the call for the others."""
    await alice(exchange)
    await exchange.add_user("carol", "203")
    await hunt_group(exchange, "simultaneous", ["alice", "carol"])
    desk = await phone(exchange, "alice", "alice-desk", scenario("callee_rings.xml"))  # rings until cancelled
    carol = await phone(exchange, "carol", "carol", scenario("callee.xml", ring_ms=6000), "-rtp_echo")
    bob = await place_call(exchange, "bob", "500", "final_talks.xml", talk_ms=500)
    headers = await api.login("alice")
    listed = await wait_for_state(api, headers, "ringing")
    refused = await api.http.delete(f"/api/v1/me/calls/{listed['id']}", headers=headers)
    assert refused.status_code == 204, refused.text
    await desk.succeeded()  # CANCEL for alice's desk
    assert await live_calls(api, headers) == []  # no longer hers
    await carol.succeeded()  # carol still rang, answered and talked
    await bob.succeeded()
    call = await exchange.next_call()
    assert call.answered and sorted(call.branches) == [("desk", 200), ("desk", 603)]


async def test_a_call_center_agent_sees_the_offered_call_ring_then_start(exchange: Exchange, api: Api) -> None:
    """A call-center call offered to its available agent is drawn in her app while it rings, like a call of her
    own: `call.ringing`, then `call.started` when she answers, then `call.ended`."""
    await exchange.add_user("alice", "201")
    await call_center(exchange, ["alice"])
    headers = await api.login("alice")
    agent = "/api/v1/me/services/call-center-agent"
    assert (await api.http.put(agent, json={"state": "available"}, headers=headers)).status_code == 200
    desk = await phone(exchange, "alice", "alice", scenario("callee.xml", ring_ms=1500), "-rtp_echo")
    outside = await call_from_trunk(exchange, QUEUE_NUMBER)
    await outside.succeeded()
    await desk.succeeded()
    key = call_key((await exchange.next_call()).call_id)
    found = await call_stream(api, headers, "call.ended")
    assert [(kind, payload["id"]) for kind, payload in found] == [
        ("call.ringing", key), ("call.started", key), ("call.ended", key)
    ]  # fmt: skip
