"""Live call control from the app (manual 5.2, /api/v1/me/calls/{id}/…): hold and resume with music on hold,
blind transfer, consultation then attended transfer or merge, call pull, recording on demand — each on a real
exchange with SIPp phones, judged on the audio each phone hears (a test-owned RTP socket per phone, sending its
own tone) and on the call-log rows."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from hipper.domain.services import CallMethod, CallRecording, FixedMobile, Voicemail
from hipper.engine.leg import Leg
from hipper.media.engine import Release
from hipper.media.g711 import Pcm
from hipper.media.tones import MUSIC_ON_HOLD_NOTES
from hipper.sip.transaction import ServerTransaction
from hipper.store.models import Event, Recording
from hipper.store.models import Voicemail as Message
from tests.calls.conftest import Exchange, poke, start_sipp
from tests.calls.test_app_calls import Api, live_calls, serving_api
from tests.media_apps.conftest import (
    Ear,
    answering_phone,
    audio_of,
    band_energy,
    call_from_phone,
    ear,
    scenario,
    settled,
    settled_calls,
    tone,
    utc,
)
from tests.media_apps.test_phone_call_control import (
    HOLD_SDP,
    HUNT_GROUP_ABROAD,
    Script,
    answering,
    dialog_call_id,
    hunt_group_abroad,
)
from tests.ops.test_events import next_event, read_events

pytestmark = pytest.mark.sip

TONES = {"alice": 500.0, "bob": 800.0, "carol": 1250.0, "bob_mobile": 1900.0}
BOB_MOBILE = "+31612340202"
OUTSIDE = "+31207654321"
HOLD_NOTE = MUSIC_ON_HOLD_NOTES[1]


@pytest.fixture
async def api(exchange: Exchange) -> AsyncIterator[Api]:
    async with serving_api(exchange) as served:
        yield served


@dataclass
class Office:
    """alice (201) calls bob (202), who answers on his desk phone; carol (203) is there to be transferred to."""

    exchange: Exchange
    api: Api
    ears: dict[str, Ear]
    phones: dict[str, Any]
    bob: dict[str, str]  # bob's API headers

    async def bob_call(self) -> str:
        async with asyncio.timeout(15):
            while True:
                calls = await live_calls(self.api, self.bob)
                if calls and calls[0]["state"] == "active":
                    return str(calls[0]["id"])
                await asyncio.sleep(0.05)

    async def post(self, path: str, json: dict[str, object] | None = None, headers: dict[str, str] | None = None,
                   ) -> Any:  # fmt: skip
        return await self.api.http.post(f"/api/v1/me/calls/{path}", json=json, headers=headers or self.bob)


@pytest.fixture
async def office(exchange: Exchange, api: Api) -> AsyncIterator[Office]:
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202", mobile=BOB_MOBILE)
    await exchange.add_user("carol", "203")
    await exchange.set_service("bob", CallMethod(method="callback", callback_device="mobile"))
    # alice's call rings bob's desk phone only: a mobile branch would still be retransmitting its INVITE (no 1xx
    # came, so no CANCEL may go, RFC 3261 §9.1) when the test's mobile starts listening, and answer that.
    await exchange.set_service("bob", FixedMobile(fixed_rings="desk"))
    ears = {name: await ear() for name in TONES}
    try:
        phones = {"bob": await answering_phone(exchange, "bob", ears["bob"])}
        phones["alice"] = await call_from_phone(
            exchange, "alice", "202", ears["alice"], end="end_hang_up_when_told.xml"
        )
        for name in ("alice", "bob"):
            await ears[name].connected()
            ears[name].keep_talking(tone(TONES[name], 30.0))
        yield Office(exchange, api, ears, phones, await api.login("bob"))
    finally:
        for each in ears.values():
            each.close()


async def bob_mobile_answers(office: Office) -> Any:
    """bob's mobile (on the mobile network's port) answers the exchange's next call there."""
    text = scenario("callee.xml", rtp_port=office.ears["bob_mobile"].port)
    office.ears["bob_mobile"].sipp_logs = (office.exchange.workdir, "bob-mobile")
    return await start_sipp(office.exchange, "bob-mobile", text, port=office.exchange.mobile_port, limit=40)


async def talking(office: Office, name: str) -> None:
    await office.ears[name].connected()
    office.ears[name].keep_talking(tone(TONES[name], 30.0))


async def hears(office: Office, name: str, frequency: float, limit: float = 10.0) -> None:
    heard = office.ears[name]
    await heard.wait_for_tone(frequency, limit=limit, after=len(heard.audio()))


async def test_hold_plays_music_to_the_other_party_and_resume_brings_them_back(office: Office) -> None:
    call_id = await office.bob_call()
    [listed] = await live_calls(office.api, office.bob)
    assert (listed["remote_number"], listed["remote_name"], listed["direction"]) == ("201", "Alice", "incoming")
    await hears(office, "alice", TONES["bob"])

    # A second device of bob's (the app's event stream) learns of the hold without asking.
    async with office.api.http.stream("GET", "/api/v1/events", headers=office.bob) as stream:
        events = read_events(stream)
        held = await office.post(f"{call_id}/hold")
        assert held.status_code == 200, held.text
        assert (held.json()["state"], held.json()["held"]) == ("held", True)
        update = await next_event(events)
        while update.event != "call.updated":
            update = await next_event(events)
        assert (update.data["id"], update.data["state"]) == (call_id, "held")
    await hears(office, "alice", HOLD_NOTE)  # music on hold, not bob
    again = await office.post(f"{call_id}/hold")
    assert (again.status_code, again.json()["code"]) == (409, "already_held")

    resumed = await office.post(f"{call_id}/resume")
    assert resumed.status_code == 200, resumed.text
    assert (resumed.json()["state"], resumed.json()["held"]) == ("active", False)
    await hears(office, "alice", TONES["bob"])
    await hears(office, "bob", TONES["alice"])
    again = await office.post(f"{call_id}/resume")
    assert (again.status_code, again.json()["code"]) == (409, "not_held")
    # Someone else's call is no call at all to carol.
    carol = await office.api.login("carol")
    assert (await office.post(f"{call_id}/hold", headers=carol)).status_code == 404
    assert (await office.post("00ff/hold")).status_code == 404
    # alice's media goes away under the operation (she hangs up at that very moment): 409, never a 5xx.
    [call] = office.exchange.b2bua.calls
    assert call.a.endpoint_id is not None
    await office.exchange.media.execute(Release(call.a.endpoint_id))
    raced = await office.post(f"{call_id}/hold")
    assert (raced.status_code, raced.json()["code"]) == (409, "call_changed")
    await office.phones["alice"].hang_up()
    await office.phones["bob"].succeeded()


async def test_blind_transfer_connects_the_caller_to_the_target_and_releases_the_user(office: Office) -> None:
    exchange = office.exchange
    office.phones["carol"] = await answering_phone(exchange, "carol", office.ears["carol"])
    call_id = await office.bob_call()

    bad = await office.post(f"{call_id}/transfer", {"mode": "blind", "to": "not a number"})
    assert bad.status_code == 422, bad.text
    missing = await office.post(f"{call_id}/transfer", {"mode": "blind"})
    assert missing.status_code == 422, missing.text
    barred = await office.post(f"{call_id}/transfer", {"mode": "blind", "to": "0900 123 4567"})  # premium
    assert (barred.status_code, barred.json()["code"]) == (403, "barred")
    await hears(office, "alice", TONES["bob"])  # refused: the call is as it was
    moved = await office.post(f"{call_id}/transfer", {"mode": "blind", "to": "203"})
    assert moved.status_code == 202, moved.text

    await office.phones["bob"].succeeded()  # bob's leg got its BYE at once
    await talking(office, "carol")
    await hears(office, "alice", TONES["carol"])
    await hears(office, "carol", TONES["alice"])
    assert await live_calls(office.api, office.bob) == []  # the call goes on, but no longer bob's
    await office.phones["alice"].hang_up()  # alice hangs up …
    await office.phones["carol"].succeeded()  # … and carol gets her BYE
    await settled_calls(exchange)
    [carol_row] = await exchange.call_logs("carol")
    assert (carol_row.direction, carol_row.remote_number) == ("received", "201")  # carol saw alice, not bob
    assert carol_row.answered_at is not None
    [bob_row] = await exchange.call_logs("bob")  # carol is a colleague: no call out on bob's account
    assert bob_row.direction == "received" and bob_row.answered_at is not None
    # bob's row ends when he transferred (his part of the call), and says so; carol's when the call ended.
    assert bob_row.outcome == "answered, transferred"
    assert bob_row.ended_at is not None and carol_row.ended_at is not None and bob_row.ended_at < carol_row.ended_at


async def test_a_transfer_inside_the_exchange_is_not_barred_and_one_to_nobody_keeps_the_call(office: Office) -> None:
    """bob may not call abroad. The company's Brussels hunt group is no call abroad but one inside the exchange:
    transferred (it was 403 barred here, while the phone's REFER connected it: test_phone_call_control.py). An
    extension that is nobody's is refused before bob lets go of the call (it was 202, and alice heard the busy
    tone and was hung up), as the phone's REFER gets NOTIFY 404."""
    exchange = office.exchange
    await hunt_group_abroad(exchange, "carol", "bob")
    office.phones["carol"] = await answering_phone(exchange, "carol", office.ears["carol"])
    call_id = await office.bob_call()

    nobody = await office.post(f"{call_id}/transfer", {"mode": "blind", "to": "299"})
    assert (nobody.status_code, nobody.json()["detail"][0]["code"]) == (422, "unknown_number"), nobody.text
    abroad = await office.post(f"{call_id}/transfer", {"mode": "blind", "to": "+3225550199"})  # outside: barred
    assert (abroad.status_code, abroad.json()["code"]) == (403, "barred"), abroad.text
    await hears(office, "alice", TONES["bob"])  # refused: the call is as it was
    moved = await office.post(f"{call_id}/transfer", {"mode": "blind", "to": HUNT_GROUP_ABROAD})
    assert moved.status_code == 202, moved.text

    await office.phones["bob"].succeeded()
    await talking(office, "carol")
    await hears(office, "alice", TONES["carol"])
    await hears(office, "carol", TONES["alice"])
    await office.phones["alice"].hang_up()
    await office.phones["carol"].succeeded()


async def test_a_call_placed_from_the_app_to_a_number_inside_the_exchange_is_not_barred(
    exchange: Exchange, api: Api
) -> None:
    """bob may not call abroad; his callback to the company's Brussels hunt group is no call abroad — the exchange
    rings its far leg inside (it was 403 here: the app judged "internal" by colleagues' numbers only)."""
    await exchange.add_user("bob", "202", mobile=BOB_MOBILE)
    await exchange.add_user("carol", "203")
    await exchange.set_service("bob", CallMethod(method="callback", callback_device="mobile"))
    await hunt_group_abroad(exchange, "carol", "bob")
    ears = {name: await ear() for name in ("carol", "bob_mobile")}
    try:
        office = Office(exchange, api, ears, {}, await api.login("bob"))
        barred = await api.http.post("/api/v1/me/calls", json={"to": "+3225550199"}, headers=office.bob)
        assert (barred.status_code, barred.json()["detail"]) == (403, "International Calls Barred")
        office.phones["bob_mobile"] = await bob_mobile_answers(office)
        office.phones["carol"] = await answering_phone(exchange, "carol", ears["carol"])
        placed = await api.http.post("/api/v1/me/calls", json={"to": HUNT_GROUP_ABROAD}, headers=office.bob)
        assert placed.status_code == 202, placed.text
        await talking(office, "bob_mobile")
        await talking(office, "carol")
        await hears(office, "carol", TONES["bob_mobile"])
        await hears(office, "bob_mobile", TONES["carol"])
        hung_up = await api.http.delete(f"/api/v1/me/calls/{placed.json()['id']}", headers=office.bob)
        assert hung_up.status_code == 204
        await office.phones["bob_mobile"].succeeded()
        await office.phones["carol"].succeeded()
    finally:
        for each in ears.values():
            each.close()


async def once_active(office: Office, call_id: str, limit: float = 10.0) -> dict[str, dict[str, Any]]:
    """Bob's calls by id, once `call_id` among them is active (answered on another phone: polled)."""
    async with asyncio.timeout(limit):
        while True:
            calls = {c["id"]: c for c in await live_calls(office.api, office.bob)}
            if calls.get(call_id, {}).get("state") == "active":
                return calls
            await asyncio.sleep(0.05)


async def consulting(office: Office) -> tuple[str, str]:
    """bob consults carol: alice waits on hold, bob's mobile rings and answers, then carol's phone."""
    office.phones["bob_mobile"] = await bob_mobile_answers(office)
    office.phones["carol"] = await answering_phone(office.exchange, "carol", office.ears["carol"])
    call_id = await office.bob_call()
    started = await office.post(f"{call_id}/consultations", {"to": "203"})
    assert started.status_code == 202, started.text
    consultation = started.json()["id"]
    await hears(office, "alice", HOLD_NOTE)
    await talking(office, "bob_mobile")
    await talking(office, "carol")
    await hears(office, "carol", TONES["bob_mobile"])
    calls = await once_active(office, consultation)
    assert calls[call_id]["held"] is True and calls[consultation]["consultation_of"] == call_id
    return call_id, consultation


async def transferred_attended(office: Office, call_id: str, consultation: str) -> None:
    """bob transfers alice to carol (attended): his legs go, the two others talk, and alice's hanging up ends it."""
    done = await office.post(f"{call_id}/transfer", {"mode": "attended", "consultation": consultation})
    assert done.status_code == 200, done.text
    await office.phones["bob"].succeeded()  # both of bob's legs released
    await office.phones["bob_mobile"].succeeded()
    await hears(office, "alice", TONES["carol"])
    await hears(office, "carol", TONES["alice"])
    assert await live_calls(office.api, office.bob) == []
    await office.phones["alice"].hang_up()  # alice hangs up: carol, on the other call, gets BYE too
    await office.phones["carol"].succeeded()


async def test_consultation_then_attended_transfer_connects_the_two_others(office: Office) -> None:
    call_id, consultation = await consulting(office)
    # Swap: back to alice (carol waits), then to carol again.
    assert (await office.post(f"{call_id}/resume")).status_code == 200
    await hears(office, "bob", TONES["alice"])
    await hears(office, "carol", HOLD_NOTE)
    assert (await office.post(f"{consultation}/resume")).status_code == 200
    await hears(office, "carol", TONES["bob_mobile"])

    await transferred_attended(office, call_id, consultation)


async def test_an_attended_transfer_to_an_outside_consultation_keeps_its_cost_on_the_users_log(office: Office,
                                                                                               ) -> None:  # fmt: skip
    """bob consults an outside number (a callback: his mobile, then the trunk) and connects alice to it: his rows
    end at the transfer, and the call out — still on his account — is a row of its own until it ends."""
    exchange = office.exchange
    office.phones["bob_mobile"] = await bob_mobile_answers(office)
    office.ears["carol"].sipp_logs = (exchange.workdir, "outside")
    outside = await start_sipp(
        exchange, "outside", scenario("callee.xml", rtp_port=office.ears["carol"].port), port=exchange.trunk_port,
        limit=40,
    )  # fmt: skip
    call_id = await office.bob_call()
    started = await office.post(f"{call_id}/consultations", {"to": OUTSIDE})
    assert started.status_code == 202, started.text
    await talking(office, "bob_mobile")
    await talking(office, "carol")
    await hears(office, "carol", TONES["bob_mobile"])
    consultation = started.json()["id"]
    await once_active(office, consultation)
    done = await office.post(f"{call_id}/transfer", {"mode": "attended", "consultation": consultation})
    assert done.status_code == 200, done.text
    await office.phones["bob"].succeeded()
    await office.phones["bob_mobile"].succeeded()
    transferred_at = datetime.now(UTC)
    await hears(office, "alice", TONES["carol"])
    await office.phones["alice"].hang_up()  # alice hangs up: the outside party gets BYE
    await outside.succeeded()
    await settled_calls(exchange)
    received, callback, rest = await exchange.call_logs("bob")
    assert (received.direction, received.outcome) == ("received", "answered, transferred")
    assert (callback.remote_number, callback.outcome) == (OUTSIDE, "callback, answered, transferred")
    assert (rest.direction, rest.remote_number, rest.outcome) == ("placed", OUTSIDE, "transfer, answered")
    assert utc(callback.ended_at) <= transferred_at < utc(rest.ended_at)


async def ends_told(exchange: Exchange, name: str, call_id: str) -> list[str]:
    """The user's events that told the end of the call `call_id` (`call.ended`, a `call.updated` `ended`)."""
    async with exchange.sessions() as session:
        found = await session.execute(select(Event).where(Event.user_id == exchange.users[name]).order_by(Event.id))
        events = list(found.scalars())
    return [
        event.type for event in events
        if event.payload.get("id") == call_id and (event.type == "call.ended" or event.payload.get("state") == "ended")
    ]  # fmt: skip


async def test_a_call_with_controls_ends_once_on_the_event_stream(office: Office) -> None:
    """bob holds and resumes the call (it has his controls now); alice hangs up. bob's apps hear the call's end once,
    its `call.ended` — before, his controls' end also sent a `call.updated` with state `ended`."""
    exchange = office.exchange
    call_id = await office.bob_call()
    for operation in ("hold", "resume"):
        done = await office.post(f"{call_id}/{operation}")
        assert done.status_code == 200, done.text
    await office.phones["alice"].hang_up()
    await office.phones["bob"].succeeded()
    await settled_calls(exchange)  # the call's rows, and with them its call.ended, are written
    # The controls' end ran (with the call's end, before its rows): an event of theirs would be written by now.
    assert exchange.applications.call_control.controls == {}
    assert await ends_told(exchange, "bob", call_id) == ["call.ended"]
    assert await ends_told(exchange, "alice", call_id) == ["call.ended"]


async def test_listing_the_calls_makes_no_call_control_and_the_call_ends_once(office: Office) -> None:
    """GET /me/calls is safe (RFC 9110 §9.2.1): listing makes no call-control state. It made controls for every
    answered call it listed, and those ended the call a second time for the user (a `call.updated` `ended` next
    to the call's own `call.ended`)."""
    exchange = office.exchange
    control = exchange.applications.call_control
    alice = await office.api.login("alice")
    call_id = await office.bob_call()
    for _ in range(2):
        [bobs] = await live_calls(office.api, office.bob)
        assert (bobs["id"], bobs["state"], bobs["held"], bobs["merged"]) == (call_id, "active", False, False)
        assert (bobs["consultation_of"], bobs["recording"]) == (None, None)  # recording is off for bob
        [alices] = await live_calls(office.api, alice)
        assert (alices["id"], alices["direction"], alices["state"]) == (call_id, "outgoing", "active")
    assert control.controls == {} and control.consultations == {}
    await office.phones["alice"].hang_up()
    await office.phones["bob"].succeeded()
    await settled_calls(exchange)  # the call's rows, and with them its call.ended, are written
    async with exchange.sessions() as session:
        found = await session.execute(select(Event).order_by(Event.id))
        events = list(found.scalars())
    for name in ("alice", "bob"):
        ends = [
            event.type for event in events
            if event.user_id == exchange.users[name] and event.payload.get("id") == call_id
            and (event.type == "call.ended" or event.payload.get("state") == "ended")
        ]  # fmt: skip
        assert ends == ["call.ended"], (name, ends)


async def test_consult_swap_and_attended_transfer_without_listing_the_calls(office: Office) -> None:
    """An API client need not list its calls between the steps: the call's id from `call.started`, the
    consultation's answer from its `call.updated`, then swap and transfer. The swap held only calls a GET had
    happened to make controls for: without one, carol was not put on hold and the swap back to her was 409."""
    exchange = office.exchange
    office.phones["bob_mobile"] = await bob_mobile_answers(office)
    office.phones["carol"] = await answering_phone(exchange, "carol", office.ears["carol"])
    stream_headers = {**office.bob, "Last-Event-ID": "0"}
    async with office.api.http.stream("GET", "/api/v1/events", headers=stream_headers) as stream:
        events = read_events(stream)
        started = await next_event(events, 15)
        while started.event != "call.started":
            started = await next_event(events, 15)
        call_id = started.data["id"]
        consulted = await office.post(f"{call_id}/consultations", {"to": "203"})
        assert consulted.status_code == 202, consulted.text
        consultation = consulted.json()["id"]
        update = await next_event(events, 15)
        while (update.event, update.data.get("id"), update.data.get("state")) != (
            "call.updated", consultation, "active"
        ):  # fmt: skip
            update = await next_event(events, 15)
    await hears(office, "alice", HOLD_NOTE)
    await talking(office, "bob_mobile")
    await talking(office, "carol")
    await hears(office, "carol", TONES["bob_mobile"])

    swapped = await office.post(f"{call_id}/resume")  # back to alice: carol waits
    assert swapped.status_code == 200, swapped.text
    await hears(office, "bob", TONES["alice"])
    await hears(office, "carol", HOLD_NOTE)
    back = await office.post(f"{consultation}/resume")  # and to carol again: alice waits
    assert back.status_code == 200, back.text
    await hears(office, "carol", TONES["bob_mobile"])
    await hears(office, "alice", HOLD_NOTE)

    await transferred_attended(office, call_id, consultation)


async def test_merge_makes_a_three_way_call(office: Office) -> None:
    call_id, consultation = await consulting(office)
    merged = await office.post(f"{call_id}/merge", {"with": consultation})
    assert merged.status_code == 200, merged.text
    assert merged.json()["merged"] is True
    await office.phones["bob_mobile"].succeeded()  # bob talks on his desk phone, the mobile leg is released
    # One speaker at a time (a mix of two tones is neither tone): the other two hear them.
    parties = ("alice", "bob", "carol")
    for speaker in parties:
        for name in parties:
            await office.ears[name].quiet()
        await talking(office, speaker)
        for listener in parties:
            if listener != speaker:
                await hears(office, listener, TONES[speaker])
    assert [c["id"] for c in await live_calls(office.api, office.bob)] == [call_id]
    assert (await office.post(f"{call_id}/hold")).json()["code"] == "merged"
    # alice hangs up (her call's first party!): bob and carol go on talking.
    await office.phones["alice"].hang_up()
    await office.ears["alice"].quiet()
    for speaker, listener in (("bob", "carol"), ("carol", "bob")):
        for name in parties:
            await office.ears[name].quiet()
        await talking(office, speaker)
        await hears(office, listener, TONES[speaker])
    # The two of them: a plain call again, which bob holds and resumes — carol hears the music, then bob.
    [listed] = await live_calls(office.api, office.bob)
    assert listed["merged"] is False
    assert (await office.post(f"{call_id}/hold")).status_code == 200
    await hears(office, "carol", HOLD_NOTE)
    assert (await office.post(f"{call_id}/resume")).status_code == 200
    await office.ears["carol"].quiet()
    await talking(office, "bob")
    await hears(office, "carol", TONES["bob"])
    ended = await office.api.http.delete(f"/api/v1/me/calls/{call_id}", headers=office.bob)
    assert ended.status_code == 204, ended.text
    await office.phones["bob"].succeeded()
    await office.phones["carol"].succeeded()
    await settled_calls(office.exchange)
    # alice (a colleague) left the three-way call: her row ends then, as when she leaves one merged on a phone.
    assert [row.outcome for row in await office.exchange.call_logs("alice")] == ["answered, left"]


async def merged_then_carol_leaves(office: Office) -> tuple[str, Ear]:
    """bob merges his call with alice and his consultation with carol (the app), then carol leaves (her app's
    hang-up): bob and alice talk on. Also makes dave (204) and his ear; the call's id and dave's ear."""
    exchange = office.exchange
    await exchange.add_user("dave", "204")
    office.ears["dave"] = dave = await ear()  # closed with the others
    call_id, consultation = await consulting(office)
    merged = await office.post(f"{call_id}/merge", {"with": consultation})
    assert merged.status_code == 200, merged.text
    await office.phones["bob_mobile"].succeeded()
    app_calls = exchange.applications.app_calls
    [carols] = app_calls.live(exchange.users["carol"])
    assert app_calls.hang_up(exchange.users["carol"], carols.id)  # carol leaves the three-way call
    await office.phones["carol"].succeeded()
    await hears(office, "bob", TONES["alice"])  # bob and alice talk on
    return call_id, dave


async def test_a_phones_merge_on_a_call_the_app_merged_joins_its_three_way_call(office: Office) -> None:
    """bob merges his call with alice and his consultation with carol (the app); carol leaves it (her app's hang-up).
    bob then adds dave from his desk phone (*7204#) and merges him in (*8): the call's one leave hook takes dave in,
    so alice — the first party — hanging up leaves bob and dave talking. Before, the phone's merge made a hook of
    its own the call never used, and alice's leaving ended the whole call."""
    exchange = office.exchange
    dave_tone = 1600.0
    call_id, dave = await merged_then_carol_leaves(office)
    [listed] = await live_calls(office.api, office.bob)
    assert listed["merged"] is False  # the two of them: a plain call again (hold, transfer), as after a phone's *8
    dave_phone = await answering_phone(exchange, "dave", dave)
    await office.ears["bob"].quiet()  # his keys, not his talk
    await office.ears["bob"].press("*7204#")
    await dave.connected()
    dave.keep_talking(tone(dave_tone, 30.0))
    await hears(office, "bob", dave_tone)
    await office.ears["bob"].press("*8")
    await hears(office, "alice", dave_tone)  # the three of them in the mix
    assert [c["merged"] for c in await live_calls(office.api, office.bob)] == [True]
    [call] = [c for c in exchange.b2bua.calls if c.key == call_id]
    await office.phones["alice"].hang_up()  # the first party leaves
    await office.ears["alice"].quiet()
    await talking(office, "bob")
    await dave.wait_for_tone(TONES["bob"], limit=10, after=len(dave.audio()))
    await hears(office, "bob", dave_tone)
    assert not call.over.is_set()  # bob and dave talk on
    # bob's controls follow the one party left in the mix (dave), not alice's ended leg: a hold plays dave the music.
    assert [c["merged"] for c in await live_calls(office.api, office.bob)] == [False]
    held = await office.post(f"{call_id}/hold")
    assert held.status_code == 200, held.text
    await dave.wait_for_tone(HOLD_NOTE, limit=10, after=len(dave.audio()))
    assert (await office.post(f"{call_id}/resume")).status_code == 200
    await dave.wait_for_tone(TONES["bob"], limit=10, after=len(dave.audio()))
    ended = await office.api.http.delete(f"/api/v1/me/calls/{call_id}", headers=office.bob)
    assert ended.status_code == 204, ended.text
    await office.phones["bob"].succeeded()
    await dave_phone.succeeded()
    await settled_calls(exchange)


async def test_a_second_app_merge_of_a_merge_down_to_two_is_refused(office: Office) -> None:
    """bob merges his call with alice and his consultation with carol (the app); carol leaves, so bob and alice talk
    on as a plain call. bob consults dave from it and asks to merge again: refused (409 merged), since the call keeps
    the first merge's leave hook and a second merge's hook would end dave's call when the last other party left.
    The refusal changes nothing: bob hangs up the consultation (dave gets BYE) and goes back to alice."""
    exchange = office.exchange
    call_id, dave = await merged_then_carol_leaves(office)
    office.phones["bob_mobile"] = await bob_mobile_answers(office)
    dave_phone = await answering_phone(exchange, "dave", dave)
    started = await office.post(f"{call_id}/consultations", {"to": "204"})
    assert started.status_code == 202, started.text
    second = started.json()["id"]
    await once_active(office, second)
    refused = await office.post(f"{call_id}/merge", {"with": second})
    assert refused.status_code == 409, refused.text
    assert refused.json()["code"] == "merged"
    hung_up = await office.api.http.delete(f"/api/v1/me/calls/{second}", headers=office.bob)
    assert hung_up.status_code == 204, hung_up.text
    await dave_phone.succeeded()
    await office.phones["bob_mobile"].succeeded()
    resumed = await office.post(f"{call_id}/resume")
    assert resumed.status_code == 200, resumed.text
    await office.ears["alice"].quiet()
    await hears(office, "alice", TONES["bob"])
    await office.phones["alice"].hang_up()
    await office.phones["bob"].succeeded()
    await settled_calls(exchange)


async def test_pull_moves_the_call_to_the_mobile(office: Office) -> None:
    office.phones["bob_mobile"] = await bob_mobile_answers(office)
    call_id = await office.bob_call()
    pulled = await office.post(f"{call_id}/pull", {"device": "mobile"})
    assert pulled.status_code == 200, pulled.text
    await office.phones["bob"].succeeded()  # the desk phone's leg got BYE
    await talking(office, "bob_mobile")
    await hears(office, "alice", TONES["bob_mobile"])
    await hears(office, "bob_mobile", TONES["alice"])
    assert [c["id"] for c in await live_calls(office.api, office.bob)] == [call_id]
    await office.phones["alice"].hang_up()
    await office.phones["bob_mobile"].succeeded()


async def test_a_three_way_call_merged_on_the_phone_is_merged_for_the_app_too(office: Office) -> None:
    """bob adds carol from his desk phone (*7203#) and merges (*8): his app lists the call merged, and refuses what
    a three-way call does not do (hold: 409 merged) — the call's one leave hook says so, whichever merge made it.
    Before, the app saw a plain call, and its hold played music over the mix to alice."""
    exchange = office.exchange
    office.phones["carol"] = await answering_phone(exchange, "carol", office.ears["carol"])
    call_id = await office.bob_call()
    await office.ears["bob"].quiet()  # his keys, not his talk
    await office.ears["bob"].press("*7203#")
    await talking(office, "carol")
    await hears(office, "bob", TONES["carol"])
    await office.ears["bob"].press("*8")
    await hears(office, "alice", TONES["carol"])  # the three of them in the mix
    [listed] = await live_calls(office.api, office.bob)
    assert (listed["id"], listed["merged"]) == (call_id, True)
    held = await office.post(f"{call_id}/hold")
    assert (held.status_code, held.json()["code"]) == (409, "merged")
    [listed] = await live_calls(office.api, office.bob)
    assert listed["merged"] is True and listed["held"] is False
    await hears(office, "alice", TONES["carol"])  # the mix as it was, no music
    await office.phones["alice"].hang_up()  # the first party leaves: bob and carol talk on
    await talking(office, "bob")
    await hears(office, "carol", TONES["bob"])
    ended = await office.api.http.delete(f"/api/v1/me/calls/{call_id}", headers=office.bob)
    assert ended.status_code == 204, ended.text
    await office.phones["bob"].succeeded()
    await office.phones["carol"].succeeded()
    await settled_calls(exchange)


@pytest.mark.parametrize(("how", "controls_before"), [
    ("attended", True), ("attended", False), ("blind", True), ("pull", True),
], ids=["attended", "attended-no-controls-before", "blind", "pull"])  # fmt: skip
async def test_the_other_partys_controls_follow_the_leg_that_replaced_the_users(
    office: Office, how: str, controls_before: bool
) -> None:
    """alice, a user too, is on bob's call; bob transfers her to carol (attended or blind), or pulls the call to his
    mobile. alice then holds: the party she talks to now hears the music, and her resume brings them back. Before,
    controls she had made earlier still pointed at bob's released leg (the music went nowhere), and after an
    attended transfer controls made afterwards found nobody to talk to (409 not_answered)."""
    exchange = office.exchange
    alice = await office.api.login("alice")
    call_id = await office.bob_call()
    if controls_before:  # alice's controls of the call exist, made while she talked to bob
        for operation in ("hold", "resume"):
            done = await office.post(f"{call_id}/{operation}", headers=alice)
            assert done.status_code == 200, done.text
        await hears(office, "alice", TONES["bob"])
    if how == "attended":
        _, consultation = await consulting(office)
        moved = await office.post(f"{call_id}/transfer", {"mode": "attended", "consultation": consultation})
        assert moved.status_code == 200, moved.text
        await office.phones["bob_mobile"].succeeded()
    elif how == "blind":
        office.phones["carol"] = await answering_phone(exchange, "carol", office.ears["carol"])
        moved = await office.post(f"{call_id}/transfer", {"mode": "blind", "to": "203"})
        assert moved.status_code == 202, moved.text
        await talking(office, "carol")
    else:
        office.phones["bob_mobile"] = await bob_mobile_answers(office)
        moved = await office.post(f"{call_id}/pull", {"device": "mobile"})
        assert moved.status_code == 200, moved.text
        await talking(office, "bob_mobile")
    await office.phones["bob"].succeeded()  # the desk phone's leg is gone
    now = "bob_mobile" if how == "pull" else "carol"  # whom alice talks to now
    await hears(office, now, TONES["alice"])
    held = await office.post(f"{call_id}/hold", headers=alice)
    assert held.status_code == 200, held.text
    await hears(office, now, HOLD_NOTE)
    resumed = await office.post(f"{call_id}/resume", headers=alice)
    assert resumed.status_code == 200, resumed.text
    await hears(office, now, TONES["alice"])
    await office.phones["alice"].hang_up()
    await office.phones[now].succeeded()
    await settled_calls(exchange)


@pytest.mark.parametrize("mode", ["on_demand_user_start"])
async def test_recording_started_and_paused_from_the_app_is_kept(office: Office, mode: str) -> None:
    exchange = office.exchange
    call_id = await office.bob_call()
    # Recording is off for bob (mode "never", the default): nothing to control on this call.
    listed = await live_calls(office.api, office.bob)
    assert listed[0]["recording"] is None
    refused = await office.post(f"{call_id}/recording", {"action": "start"})
    assert (refused.status_code, refused.json()["code"]) == (409, "recording_not_allowed")
    await office.phones["alice"].hang_up()
    await office.phones["bob"].succeeded()
    await settled_calls(exchange)
    await exchange.set_service("bob", CallRecording.model_validate({"mode": mode}))

    # The next call: started from the app, paused, resumed, stopped — stored for bob.
    office.phones["bob"] = await answering_phone(exchange, "bob", office.ears["bob"])
    office.ears["alice"].phone.engine_address = None
    office.phones["alice"] = await call_from_phone(exchange, "alice", "202", office.ears["alice"],
                                                   end="end_hang_up_when_told.xml")  # fmt: skip
    call_id = await office.bob_call()
    assert (await live_calls(office.api, office.bob))[0]["recording"] == "off"
    for action, state in (("start", "on"), ("pause", "paused"), ("resume", "on")):
        changed = await office.post(f"{call_id}/recording", {"action": action})
        assert changed.status_code == 200, changed.text
        assert changed.json()["recording"] == state
    again = await office.post(f"{call_id}/recording", {"action": "resume"})
    assert (again.status_code, again.json()["code"]) == (409, "recording_running")
    stopped = await office.post(f"{call_id}/recording", {"action": "stop"})
    assert stopped.json()["recording"] == "off"
    await office.phones["alice"].hang_up()
    await settled(exchange)
    async with exchange.sessions() as session:
        found = await session.execute(select(Recording).where(Recording.user_id == exchange.users["bob"]))
        rows = list(found.scalars())
    assert len(rows) == 1 and rows[0].remote_number == "201"


async def test_blind_transfer_follows_the_targets_own_routing_to_voicemail(office: Office) -> None:
    """Nobody answers for carol (all her calls go to voicemail): alice, transferred, leaves carol a message, and
    the message is from alice — the transfer ran carol's own plan with alice as the caller."""
    exchange = office.exchange
    await exchange.set_service("carol", Voicemail(active=True, all_calls_to_voicemail=True))
    call_id = await office.bob_call()
    moved = await office.post(f"{call_id}/transfer", {"mode": "blind", "to": "203"})
    assert moved.status_code == 202, moved.text
    await office.phones["bob"].succeeded()
    await office.ears["alice"].wait_for_tone(1000.0, limit=20)  # carol's voicemail: greeting, then the beep
    await asyncio.sleep(2.0)  # alice's message: two seconds of her tone
    await office.phones["alice"].hang_up()
    await settled_calls(exchange)
    async with exchange.sessions() as session:
        found = await session.execute(select(Message).where(Message.user_id == exchange.users["carol"]))
        [message] = list(found.scalars())
    assert message.caller_number == "201"


async def recorded_call(exchange: Exchange, api: Api, ears: dict[str, Ear]) -> tuple[Office, str]:
    """bob records every call (mode "always"); alice calls him, his desk phone answers, both talk."""
    await exchange.set_service("bob", CallRecording.model_validate({"mode": "always"}))
    await exchange.set_service("bob", FixedMobile(fixed_rings="desk"))  # as in `office`
    phones = {"bob": await answering_phone(exchange, "bob", ears["bob"])}
    phones["alice"] = await call_from_phone(exchange, "alice", "202", ears["alice"], end="end_hang_up_when_told.xml")
    office = Office(exchange, api, ears, phones, await api.login("bob"))
    for name in ("alice", "bob"):
        await talking(office, name)
    return office, await office.bob_call()


async def bobs_recording(exchange: Exchange) -> Pcm:
    """The one recording bob has, once stored."""
    await settled(exchange)
    async with exchange.sessions() as session:
        found = await session.execute(select(Recording).where(Recording.user_id == exchange.users["bob"]))
        [row] = list(found.scalars())
    return audio_of(exchange, row)


async def test_a_users_recording_ends_when_they_transfer_the_call_away(exchange: Exchange, api: Api) -> None:
    """bob records every call; he transfers alice to carol: his recording holds alice and him, never carol."""
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202")
    await exchange.add_user("carol", "203")
    ears = {name: await ear() for name in ("alice", "bob", "carol")}
    try:
        carol_phone = await answering_phone(exchange, "carol", ears["carol"])
        office, call_id = await recorded_call(exchange, api, ears)
        async with asyncio.timeout(10):
            while (await live_calls(api, office.bob))[0]["recording"] != "on":  # noqa: ASYNC110 - polled API
                await asyncio.sleep(0.05)
        heard = ears["alice"]  # a second of talk recorded, then the transfer
        await heard.wait_for_tone(TONES["bob"], limit=10, after=len(heard.audio()) + 8000)
        assert (await office.post(f"{call_id}/transfer", {"mode": "blind", "to": "203"})).status_code == 202
        await office.phones["bob"].succeeded()
        await talking(office, "carol")
        await hears(office, "alice", TONES["carol"])
        await office.phones["alice"].hang_up()
        await carol_phone.succeeded()
        audio = await bobs_recording(exchange)  # both directions mixed: alice's and bob's tones, none of carol's
    finally:
        for each in ears.values():
            each.close()
    assert band_energy(audio, TONES["bob"]) > 0.2 and band_energy(audio, TONES["alice"]) > 0.2
    assert band_energy(audio, TONES["carol"]) < 0.02


async def test_a_pulled_call_is_recorded_on_on_the_new_device(exchange: Exchange, api: Api) -> None:
    """bob records every call; he pulls alice's call to his mobile: the one recording holds his mobile's voice too."""
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202", mobile=BOB_MOBILE)
    ears = {name: await ear() for name in ("alice", "bob", "bob_mobile")}
    try:
        office, call_id = await recorded_call(exchange, api, ears)
        mobile = await bob_mobile_answers(office)  # only now: the desk phone answered alice's call
        pulled = await office.post(f"{call_id}/pull", {"device": "mobile"})
        assert pulled.status_code == 200, pulled.text
        await office.phones["bob"].succeeded()
        await talking(office, "bob_mobile")
        heard = ears["alice"]  # two seconds of bob's mobile heard (and recorded), then alice hangs up
        await heard.wait_for_tone(TONES["bob_mobile"], limit=10, after=len(heard.audio()) + 16000)
        await office.phones["alice"].hang_up()
        await mobile.succeeded()
        audio = await bobs_recording(exchange)
    finally:
        for each in ears.values():
            each.close()
    # alice talks throughout; bob on his desk phone for a moment, then on his mobile until the end.
    assert band_energy(audio, TONES["bob"]) > 0.005 and band_energy(audio, TONES["bob_mobile"]) > 0.05


async def test_a_call_placed_from_the_app_is_recorded_and_controlled_like_one_answered(
    exchange: Exchange, api: Api
) -> None:
    """bob records every call, with pause and resume; his call placed from the app (the exchange rings his mobile,
    then alice) is recorded once — both voices — and the app pauses and resumes it."""
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202", mobile=BOB_MOBILE)
    await exchange.set_service("bob", CallMethod(method="callback", callback_device="mobile"))
    await exchange.set_service("bob", CallRecording.model_validate({"mode": "always_pause_resume"}))
    ears = {name: await ear() for name in ("alice", "bob_mobile")}
    try:
        office = Office(exchange, api, ears, {}, await api.login("bob"))
        office.phones["bob_mobile"] = await bob_mobile_answers(office)
        office.phones["alice"] = await answering_phone(exchange, "alice", ears["alice"])
        placed = await api.http.post("/api/v1/me/calls", json={"to": "201"}, headers=office.bob)
        assert placed.status_code == 202, placed.text
        callback_id = placed.json()["id"]
        await talking(office, "bob_mobile")
        await talking(office, "alice")
        await hears(office, "alice", TONES["bob_mobile"])
        async with asyncio.timeout(10):
            while (await live_calls(api, office.bob))[0]["recording"] != "on":  # noqa: ASYNC110 - polled API
                await asyncio.sleep(0.05)
        for action, state in (("pause", "paused"), ("resume", "on")):
            changed = await office.post(f"{callback_id}/recording", {"action": action})
            assert changed.status_code == 200, changed.text
            assert changed.json()["recording"] == state
        await hears(office, "bob_mobile", TONES["alice"])  # recorded again after the resume
        assert (await api.http.delete(f"/api/v1/me/calls/{callback_id}", headers=office.bob)).status_code == 204
        await office.phones["bob_mobile"].succeeded()
        await office.phones["alice"].succeeded()
        audio = await bobs_recording(exchange)  # one recording: the callback's, not also its far leg's
    finally:
        for each in ears.values():
            each.close()
    assert band_energy(audio, TONES["bob_mobile"]) > 0.05 and band_energy(audio, TONES["alice"]) > 0.05


# A re-INVITE of the answering phone (its first request in the dialog) answered 481, and the ACK of that 481: the
# INVITE's own branch (RFC 3261 §17.1.1.3; SIPp's [branch-3]: the INVITE three messages back).
REINVITE_481 = (
    """
  <send retrans="500">
    <![CDATA[
      INVITE [$target] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: <sip:callee@[local_ip]>;tag=[pid]callee[call_number]
      To:[$remote]
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:callee@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      """
    + HOLD_SDP.format(version=2, address="127.0.0.1", direction="sendonly")
    + """
    ]]>
  </send>
  <recv response="100" optional="true" />
  <recv response="481" />
  <send>
    <![CDATA[
      ACK [$target] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch-3];rport
      From: <sip:callee@[local_ip]>;tag=[pid]callee[call_number]
      To:[$remote]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>"""
)


async def test_an_offer_arriving_while_the_call_ends_is_answered_481(
    exchange: Exchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    """alice's call to bob is ending — over, its legs not torn down yet (a closing of the call's still runs) — when
    bob's phone re-INVITEs: 481 at once, then the BYE. Before, the offer went to the call's inbox, which takes
    nothing once the call is over: it was never answered (the phone retransmitted it into the BYE)."""
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202")
    script = Script("callee").poke()
    script.parts.append(REINVITE_481)
    bob = await answering(exchange, "bob", script.bye_received())
    alice_ear = await ear()
    try:
        alice = await call_from_phone(exchange, "alice", "202", alice_ear)
        await alice_ear.connected()
        [call] = exchange.b2bua.calls
        assert call.connected is not None
        bob.call_id = dialog_call_id(call.connected)
        closing, offered = asyncio.Event(), asyncio.Event()

        async def still_closing() -> None:  # the call's end waits here, its legs still up
            await closing.wait()

        call.at_end(still_closing)
        in_dialog = call.in_dialog

        def seen(leg: Leg, tx: ServerTransaction) -> None:
            in_dialog(leg, tx)  # answered (or not) by the call, at once
            if tx.request.method == "INVITE":
                offered.set()

        monkeypatch.setattr(call, "in_dialog", seen)
        assert exchange.applications.app_calls.hang_up(exchange.users["alice"], call.key)  # the call is over
        await poke(bob.port, bob.call_id)  # bob's phone re-INVITEs
        async with asyncio.timeout(10):
            await offered.wait()
        closing.set()  # the call's end goes on: BYE to both
        await bob.sipp.succeeded()  # 481 (and its ACK), then the BYE
        await alice.succeeded()
    finally:
        for phone in (alice_ear, bob.ear):
            phone.close()
    await settled_calls(exchange)


async def test_reading_the_recording_mode_at_the_answer_gives_way_to_the_calls_end(
    exchange: Exchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bob answers alice's call while reading the users' recording mode hangs (a slow database); alice hangs up
    meanwhile: bob's phone gets its BYE at once — the read is raced with the call's end (apps/recording.py), so
    the call's teardown does not wait for it. The read still hangs while the test checks."""
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202")
    snapshots = exchange.b2bua.snapshots
    document = snapshots.document
    reading, database_back = asyncio.Event(), asyncio.Event()

    async def slow(user_id: int, model: Any) -> Any:
        if model is CallRecording:
            reading.set()
            await database_back.wait()
        return await document(user_id, model)

    monkeypatch.setattr(snapshots, "document", slow)
    ears = {name: await ear() for name in ("alice", "bob")}
    try:
        bob = await answering_phone(exchange, "bob", ears["bob"])
        alice = await call_from_phone(exchange, "alice", "202", ears["alice"], end="end_hang_up_when_told.xml")
        async with asyncio.timeout(15):
            await reading.wait()  # the call is answered, its recording mode being read
        await alice.hang_up()
        await bob.succeeded(10)  # BYE while the read still hangs
        assert not database_back.is_set()
    finally:
        database_back.set()
        for phone in ears.values():
            phone.close()
    await settled_calls(exchange)
