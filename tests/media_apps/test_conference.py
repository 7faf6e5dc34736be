"""Three-way calling from the phone: alice calls bob, adds carol with *7203#, merges with *8. Three SIPp legs,
each with its own RTP socket sending its own tone; each hears the other two tones and never its own, and a
recording of the call holds the conference from the merge on."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import numpy as np
import pytest
from sqlalchemy import select

from hipper.domain.services import CallRecording
from hipper.engine.call import Call
from hipper.engine.leg import LegState
from hipper.media.engine import Command, CreateEndpoint, MediaError
from hipper.store.models import CallLog, Recording
from tests.calls.conftest import Exchange, Sipp, poke, register, start_sipp, trunk
from tests.calls.conftest import scenario as calls_scenario
from tests.media_apps.conftest import (
    Caller,
    Ear,
    answering_phone,
    audio_of,
    band_energy,
    call_from_phone,
    ear,
    rms,
    scenario,
    settled,
    settled_calls,
    tone,
)
from tests.media_apps.test_phone_call_control import Script, answering, dialog_call_id
from tests.sip.peers import free_udp_port

pytestmark = pytest.mark.sip

TONES = {"alice": 500.0, "bob": 800.0, "carol": 1250.0}


def heard_since(phone: Ear, start: int) -> np.ndarray:
    return phone.audio()[start:]


async def in_the_mix(phone: Ear, frequency: float, limit: float = 15.0) -> None:
    """Until the last 200 ms `phone` heard hold `frequency` among other sounds (a share of a mix, not most of it)."""
    async with asyncio.timeout(limit):
        while True:  # polled: packets arriving on the phone's socket
            recent = phone.audio()[-1600:]
            if len(recent) == 1600 and rms(recent) > 300 and band_energy(recent, frequency) > 0.2:
                return
            await asyncio.sleep(0.05)


async def code_handled(caplog: pytest.LogCaptureFixture, action: str, limit: float = 15.0) -> float:
    """Until the exchange took the keypad code `action` (its `call.code` line, written as it is carried out);
    returns when (the record's wall-clock time)."""
    async with asyncio.timeout(limit):
        while True:  # polled: the digits reach the exchange as RTP, with no event a test can await
            taken = [r for r in caplog.records if r.getMessage() == "call.code" and getattr(r, "code", "") == action]
            if taken:
                return taken[-1].created
            await asyncio.sleep(0.05)


async def three_users(exchange: Exchange) -> None:
    for name, extension in (("alice", "201"), ("bob", "202"), ("carol", "203")):
        await exchange.add_user(name, extension)


async def carol_added_then_gone(
    exchange: Exchange,
    ears: dict[str, Ear],
    carol: Callable[[], Awaitable[Sipp]],
    *,
    carol_limit: float,
) -> tuple[Caller, Sipp]:
    """bob answers alice's call; alice adds carol (*7203#), whose phone (`carol`) ends up gone before any merge;
    returns alice's and bob's phones once alice hears bob again."""
    bob_phone = await answering_phone(exchange, "bob", ears["bob"])
    carol_phone = await carol()
    alice_phone = await call_from_phone(exchange, "alice", "202", ears["alice"], end="end_hang_up_when_told.xml")
    await ears["bob"].connected()
    await ears["alice"].connected()
    await ears["alice"].press("*7203#")
    await carol_phone.succeeded(carol_limit)
    ears["bob"].keep_talking(tone(TONES["bob"], 30.0))
    await ears["alice"].wait_for_tone(TONES["bob"], limit=10)  # alice is back with bob
    return alice_phone, bob_phone


async def test_add_then_merge_each_hears_the_others_never_itself(exchange: Exchange) -> None:
    await three_users(exchange)
    ears = {name: await ear() for name in TONES}
    try:
        bob_phone = await answering_phone(exchange, "bob", ears["bob"])
        carol_phone = await answering_phone(exchange, "carol", ears["carol"])
        alice_phone = await call_from_phone(exchange, "alice", "202", ears["alice"], end="end_hang_up_when_told.xml")
        await ears["bob"].connected()
        await ears["alice"].connected()
        # Add: carol's phone rings and answers; alice talks to carol, bob waits.
        await ears["alice"].press("*7203#")
        await ears["carol"].connected()
        bob_before = len(ears["bob"].audio())
        ears["carol"].keep_talking(tone(TONES["carol"], 1.0))
        await ears["alice"].wait_for_tone(TONES["carol"], limit=10)
        await ears["carol"].quiet()
        # Before the merge bob waits: he does not hear carol.
        waiting = ears["bob"].audio()[bob_before:]
        assert not len(waiting) or band_energy(waiting, TONES["carol"]) < 0.01 or rms(waiting) < 50
        await ears["alice"].press("*8")
        for name, phone in ears.items():
            phone.keep_talking(tone(TONES[name], 30.0))
        await in_the_mix(ears["bob"], TONES["carol"])  # merged: bob, who waited, hears carol
        starts = {name: len(phone.audio()) for name, phone in ears.items()}
        for phone in ears.values():
            await hears_for(phone, 2.5)
        heard = {name: heard_since(phone, starts[name]) for name, phone in ears.items()}
        await alice_phone.hang_up(20)
        await bob_phone.succeeded(20)
        await carol_phone.succeeded(20)
    finally:
        for phone in ears.values():
            phone.close()
    await exchange.next_call()
    for name, audio in heard.items():
        assert len(audio) >= 2 * 8000, f"{name} heard only {len(audio)} samples"
        middle = audio[4000 : 4000 + 16000]  # 2 s from half a second after the merge: all three talk
        assert rms(middle) > 1000
        others = [other for other in TONES if other != name]
        for other in others:
            assert band_energy(middle, TONES[other]) > 0.2, f"{name} does not hear {other}"
        assert band_energy(middle, TONES[name]) < 0.01, f"{name} hears itself"


async def test_added_party_hanging_up_before_the_merge_brings_back_the_first(
    exchange: Exchange, caplog: pytest.LogCaptureFixture
) -> None:
    await three_users(exchange)
    caplog.set_level("INFO", logger="hipper")
    ears = {name: await ear() for name in TONES}
    try:

        async def carol_answers_then_hangs_up() -> Sipp:
            return await answering_phone(exchange, "carol", ears["carol"], hang_up_ms=1500)

        alice_phone, bob_phone = await carol_added_then_gone(
            exchange, ears, carol_answers_then_hangs_up, carol_limit=15
        )
        await ears["alice"].press("*8")  # nothing to merge now: the call goes on as it was
        await code_handled(caplog, "merge")
        await ears["alice"].wait_for_tone(TONES["bob"], limit=10, after=len(ears["alice"].audio()))
        await alice_phone.hang_up(20)
        await bob_phone.succeeded(20)
    finally:
        for phone in ears.values():
            phone.close()
    call = await exchange.next_call()
    assert call.answered


async def hears_for(phone: Ear, seconds: float, limit: float = 15.0) -> None:
    """Until `phone` has received `seconds` more of the call's audio (counted in packets, not in wall time)."""
    target = len(phone.audio()) + int(8000 * seconds)
    async with asyncio.timeout(limit):
        while len(phone.audio()) < target:  # noqa: ASYNC110 - packets arriving on the phone's socket
            await asyncio.sleep(0.05)


def windows(audio: np.ndarray, size: int) -> np.ndarray:
    return audio[: len(audio) - len(audio) % size].reshape(-1, size)


async def test_a_recorded_call_records_the_conference_from_the_merge_on(
    exchange: Exchange, caplog: pytest.LogCaptureFixture
) -> None:
    """alice records (always, with pause/resume); bob and carol talk all along, carol also before the merge,
    while only alice hears her. The file: alice and bob, then all three from the merge on, without a gap."""
    await three_users(exchange)
    caplog.set_level("INFO", logger="hipper")
    await exchange.set_service("alice", CallRecording.model_validate({"mode": "always_pause_resume"}))
    ears = {name: await ear() for name in TONES}
    alice, bob, carol = ears["alice"], ears["bob"], ears["carol"]
    try:
        bob_phone = await answering_phone(exchange, "bob", bob)
        carol_phone = await answering_phone(exchange, "carol", carol)
        alice_phone = await call_from_phone(exchange, "alice", "202", alice, end="end_hang_up_when_told.xml")
        await bob.connected()
        await alice.connected()
        bob.keep_talking(tone(TONES["bob"], 30.0))
        await alice.talk(tone(TONES["alice"], 1.2))
        await alice.press("*7203#")
        await carol.connected()
        carol.keep_talking(tone(TONES["carol"], 30.0))
        await alice.wait_for_tone(TONES["carol"], limit=10)
        await asyncio.sleep(1.0)  # carol talks to alice: not recorded yet
        await alice.press("*8")
        alice.keep_talking(tone(TONES["alice"], 2.0))
        await asyncio.sleep(2.2)
        await alice.press("*2")
        paused_at = await code_handled(caplog, "pause")
        await asyncio.sleep(1.2)  # everyone talks on, into the paused recording
        await alice.press("*3")
        paused_for = await code_handled(caplog, "resume") - paused_at
        alice.keep_talking(tone(TONES["alice"], 30.0))
        await hears_for(alice, 3.0)  # all three talk on, recorded again
        await alice_phone.hang_up(20)
        await bob_phone.succeeded(20)
        await carol_phone.succeeded(20)
    finally:
        for phone in ears.values():
            phone.close()
    await exchange.next_call()
    await settled(exchange)
    async with exchange.sessions() as session:
        rows = list((await session.execute(select(Recording))).scalars())
    assert len(rows) == 1 and rows[0].user_id == exchange.users["alice"]
    audio = audio_of(exchange, rows[0])
    # From its start (just after the answer; later on a loaded machine) to alice's hang-up, on one timeline (a jump
    # at the merge would lengthen or shorten it): as long as the call really lasted from then — measured by the
    # exchange's own clock, not by SIPp's pause, which a loaded machine stretches.
    async with exchange.sessions() as session:
        [placed] = (await session.execute(select(CallLog).where(CallLog.user_id == exchange.users["alice"]))).scalars()
    assert placed.answered_at is not None and placed.ended_at is not None
    lasted = (placed.ended_at - rows[0].started_at).total_seconds()
    assert abs(len(audio) / 8000 - lasted) < 1.0, (len(audio) / 8000, lasted)

    parts = windows(audio, 1600)  # 200 ms
    energy = {name: np.array([band_energy(part, f) for part in parts]) for name, f in TONES.items()}
    loudness = np.array([rms(part) for part in parts])
    has = {name: energy[name] > 0.15 for name in TONES}
    merged = int(np.argmax(has["carol"]))
    assert has["carol"][merged], "carol is never in the recording"
    # Before the merge: alice and bob, and never carol, though she talked to alice for over a second.
    before = slice(0, merged - 1)
    assert (has["alice"][before] & has["bob"][before]).sum() >= 3
    assert has["bob"][before].sum() >= 10
    assert (energy["carol"][before] < 0.01).all()
    # The pause: silence, though all three talked on.
    silent = np.flatnonzero(loudness[merged:] == 0) + merged
    assert len(silent) >= 4, "no paused stretch"
    paused_from, paused_to = int(silent[0]), int(silent[-1])
    # As long as the exchange kept it paused (from its *2 to its *3: a loaded machine takes the keys late), give
    # or take the 200 ms windows it starts and ends in.
    assert paused_for / 0.2 - 2 <= paused_to - paused_from + 1 <= paused_for / 0.2 + 1, paused_for
    # After the merge, before and after the pause: all three, each well audible.
    for stretch in (slice(merged + 1, paused_from), slice(paused_to + 2, len(parts) - 1)):
        together = has["alice"][stretch] & has["bob"][stretch] & has["carol"][stretch]
        assert together.sum() >= 4, f"not all three in {stretch}"
    # No gap: bob talks throughout, so every 20 ms up to the pause holds sound (across the merge too).
    frames = windows(audio, 160).astype(np.float64)
    frame_loud = np.sqrt((frames**2).mean(axis=1)) > 1000
    first = int(np.argmax(frame_loud))
    gaps = np.flatnonzero(~frame_loud[first : (paused_from - 1) * 10])  # up to the window the pause starts in
    assert not len(gaps), f"gaps in the recording at {[(first + gap) * 20 for gap in gaps]} ms"


@pytest.mark.parametrize("exchange", [{"session_min_se_seconds": 2}], indirect=True)
async def test_an_added_party_whose_session_expires_gets_bye_and_the_first_party_is_back(exchange: Exchange) -> None:
    """The added party's leg offers RFC 4028 session timers like any call leg; carol's phone takes the refresher
    role and never refreshes, so the exchange ends her leg with BYE (§10) and alice is back with bob."""
    await three_users(exchange)
    ears = {name: await ear() for name in TONES}
    try:

        async def carol_never_refreshes() -> Sipp:
            port = free_udp_port()
            await register(exchange, "carol", port)
            text = scenario("callee_never_refreshes.xml", rtp_port=ears["carol"].port, interval=4, bye_within_ms=10000)
            return await start_sipp(exchange, "callee-carol", text, port=port, limit=40)

        # carol's phone was offered the timer, answered, then got BYE when the session expired
        alice_phone, bob_phone = await carol_added_then_gone(exchange, ears, carol_never_refreshes, carol_limit=20)
        await alice_phone.hang_up(30)
        await bob_phone.succeeded(30)
    finally:
        for phone in ears.values():
            phone.close()
    call = await exchange.next_call()
    assert call.answered
    assert [status for label, status in call.branches if label == "conference"] == [200]


async def test_an_added_party_out_through_the_trunk_is_subject_to_the_users_call_barring(
    exchange: Exchange, caplog: pytest.LogCaptureFixture
) -> None:
    """Toll fraud (docs/security.md): a party added from the keypad (*7<number>#) out through the trunk goes on the
    user's account, so their call barring applies as to a blind transfer, a callback or a call from the phone:
    alice, barred from premium numbers, adds 0900 1234567 from her keypad and it does not ring."""
    await three_users(exchange)
    ears = {name: await ear() for name in ("alice", "bob")}
    try:
        bob_phone = await answering_phone(exchange, "bob", ears["bob"])
        alice_phone = await call_from_phone(exchange, "alice", "202", ears["alice"], end="end_hang_up_when_told.xml")
        await ears["bob"].connected()
        await ears["alice"].connected()
        caplog.set_level("INFO", logger="hipper")
        await ears["alice"].press("*709001234567#")
        [call] = exchange.b2bua.calls
        # The add was handled (its refusal logged, then the add given up), and no leg of it rang.
        async with asyncio.timeout(10):
            while not [r for r in caplog.records if r.getMessage() == "conference.add_unroutable"]:  # noqa: ASYNC110
                await asyncio.sleep(0.05)  # the keypad's digits reach the exchange as RTP: no event to await
        [refusal] = [r for r in caplog.records if r.getMessage() == "call.outbound_refused"]
        assert getattr(refusal, "call_id", "").startswith(f"{call.call_id}/add/")
        assert not [leg.uri.user for leg in call.branches if leg.label == "conference"], "barred number rung"
        await alice_phone.hang_up(20)
        await bob_phone.succeeded(20)
    finally:
        for phone in ears.values():
            phone.close()


@pytest.mark.parametrize("exchange", [{"outbound_max_calls_per_user": 1}], indirect=True)
async def test_an_added_outside_party_who_hung_up_no_longer_counts_against_the_users_limit(
    exchange: Exchange,
) -> None:
    """Toll fraud limits count what is up: alice (one outside call at a time) adds an outside party with *7, who
    answers and hangs up; she is back with bob, and a second outside party she adds rings — the first one's place
    in her limit went with its leg, not with the whole call."""
    await three_users(exchange)
    ears = {name: await ear() for name in ("alice", "bob")}
    try:
        bob_phone = await answering_phone(exchange, "bob", ears["bob"])
        alice_phone = await call_from_phone(exchange, "alice", "202", ears["alice"], end="end_hang_up_when_told.xml")
        await ears["bob"].connected()
        await ears["alice"].connected()
        ears["bob"].keep_talking(tone(TONES["bob"], 30.0))
        for number in ("0301234567", "0301234568"):
            outside = await trunk(exchange, f"far-{number}", calls_scenario("callee_hangs_up.xml"))
            await ears["alice"].press(f"*7{number}#")
            await outside.succeeded(15)  # it rang, answered and hung up
            await ears["alice"].wait_for_tone(TONES["bob"], limit=10)  # alice is back with bob
        await alice_phone.hang_up(20)
        await bob_phone.succeeded(20)
    finally:
        for phone in ears.values():
            phone.close()


async def test_after_the_added_party_leaves_a_three_way_call_another_can_be_added(exchange: Exchange) -> None:
    """alice merges carol into her call with bob (*7203#, *8); carol hangs up: alice and bob talk on, and alice
    can add a party again (the three-way slot went with carol)."""
    await three_users(exchange)
    ears = {name: await ear() for name in TONES}
    try:
        bob_phone = await answering_phone(exchange, "bob", ears["bob"])
        carol_phone = await answering_phone(exchange, "carol", ears["carol"], hang_up_ms=2500)
        alice_phone = await call_from_phone(exchange, "alice", "202", ears["alice"], end="end_hang_up_when_told.xml")
        await ears["bob"].connected()
        await ears["alice"].connected()
        await ears["alice"].press("*7203#")
        await ears["carol"].connected()
        await ears["alice"].press("*8")
        await carol_phone.succeeded(15)  # she hung up from the three-way call
        ears["bob"].keep_talking(tone(TONES["bob"], 30.0))
        await ears["alice"].wait_for_tone(TONES["bob"], limit=10)  # alice and bob talk on
        carol_again = await answering_phone(exchange, "carol", ears["carol"], hang_up_ms=500)
        await ears["alice"].press("*7203#")
        await carol_again.succeeded(15)  # added: her phone rang, she answered and hung up
        await alice_phone.hang_up(20)
        await bob_phone.succeeded(20)
    finally:
        for phone in ears.values():
            phone.close()


async def merged_by_alice(alice: Ear, bob: Ear, carol: Ear) -> None:
    """bob's call to alice is answered; alice adds carol (*7203#) and merges (*8): carol hears bob (who talks on)."""
    await bob.connected()
    await alice.connected()
    await alice.press("*7203#")
    await carol.connected()
    await alice.press("*8")
    bob.keep_talking(tone(TONES["bob"], 6.0))
    await carol.wait_for_tone(TONES["bob"], limit=10)


async def test_when_the_first_party_leaves_a_three_way_call_the_user_and_the_added_party_talk_on(
    exchange: Exchange,
) -> None:
    """bob calls alice; alice adds carol (*7203#) and merges (*8); bob hangs up: alice and carol go on talking (any
    party of a three-way call may leave, as in the app's merge), and the call ends when alice hangs up."""
    await three_users(exchange)
    ears = {name: await ear() for name in TONES}
    try:
        alice_phone = await answering_phone(exchange, "alice", ears["alice"])
        carol_phone = await answering_phone(exchange, "carol", ears["carol"])
        bob_phone = await call_from_phone(exchange, "bob", "201", ears["bob"], end="end_hang_up_when_told.xml")
        await merged_by_alice(ears["alice"], ears["bob"], ears["carol"])
        await bob_phone.hang_up(20)  # the first party leaves
        for talker, listener in (("carol", "alice"), ("alice", "carol")):
            ears[talker].keep_talking(tone(TONES[talker], 30.0))
            await ears[listener].wait_for_tone(TONES[talker], limit=10)
            await ears[talker].quiet()
        [call] = exchange.b2bua.calls
        # Call control too finds carol as the party alice talks to now (a hold's music, a transfer, the listing).
        talking_to = exchange.applications.call_control.controls_of(exchange.users["alice"], call.key).other
        assert talking_to.endpoint_id is not None and talking_to.user_id == exchange.users["carol"]
        await alice_hangs_up_in_the_app(exchange, call, alice_phone, carol_phone)
    finally:
        for phone in ears.values():
            phone.close()
    call = await exchange.next_call()
    assert call.answered


async def test_a_party_leaving_a_three_way_call_cancels_their_own_add_still_ringing(exchange: Exchange) -> None:
    """bob calls alice; alice adds carol and merges. bob, a user too, adds dave (*7204#) and hangs up while dave's
    phone rings: dave's ringing is cancelled at once (it rang on for the add's 30 s, and an answer would have
    reached nobody), and alice and carol talk on."""
    await three_users(exchange)
    await exchange.add_user("dave", "204")
    ears = {name: await ear() for name in TONES}
    try:
        alice_phone = await answering_phone(exchange, "alice", ears["alice"])
        carol_phone = await answering_phone(exchange, "carol", ears["carol"])
        bob_phone = await call_from_phone(exchange, "bob", "201", ears["bob"], end="end_hang_up_when_told.xml")
        await merged_by_alice(ears["alice"], ears["bob"], ears["carol"])
        dave_phone = await start_ringing(exchange, "dave")  # rings until cancelled
        [call] = exchange.b2bua.calls
        await ears["bob"].quiet()  # his keys, not his talk
        await ears["bob"].press("*7204#")
        dave = exchange.users["dave"]
        async with asyncio.timeout(10):
            while not any(leg.user_id == dave and leg.state is LegState.EARLY for leg in call.branches):  # noqa: ASYNC110
                await asyncio.sleep(0.02)  # the call's legs: no event to wait on
        await bob_phone.hang_up(20)  # bob leaves the three-way call, his add still ringing
        await dave_phone.succeeded(10)  # CANCEL now, not when the add's 30 s ran out
        assert exchange.b2bua.calls == {call}  # the call goes on for alice and carol
        ears["carol"].keep_talking(tone(TONES["carol"], 30.0))
        await ears["alice"].wait_for_tone(TONES["carol"], limit=10)
        await alice_hangs_up_in_the_app(exchange, call, alice_phone, carol_phone)
    finally:
        for phone in ears.values():
            phone.close()
    await settled_calls(exchange)


async def alice_hangs_up_in_the_app(exchange: Exchange, call: Call, *phones: Sipp) -> None:
    """alice ends the call from her app: every phone still on it gets its BYE (their scenarios end)."""
    assert exchange.applications.app_calls.hang_up(exchange.users["alice"], call.key)
    for each in phones:
        await each.succeeded(20)


@pytest.mark.parametrize("exchange", [{"session_min_se_seconds": 2}], indirect=True)
async def test_a_user_leaving_a_three_way_call_has_their_recording_end_when_they_left(exchange: Exchange) -> None:
    """bob, who records always, calls alice; alice adds carol and merges; bob hangs up. His recording stops then
    and is stored (row and file) — not holding alice and carol talking on after he left — and his keypad codes'
    endpoint is gone from the call."""
    await three_users(exchange)
    await exchange.set_service("bob", CallRecording.model_validate({"mode": "always"}))
    ears = {name: await ear() for name in TONES}
    try:
        alice_phone = await answering_phone(exchange, "alice", ears["alice"])
        carol_phone = await answering_phone(exchange, "carol", ears["carol"])
        bob_phone = await call_from_phone(exchange, "bob", "201", ears["bob"], end="end_hang_up_when_told.xml")
        await merged_by_alice(ears["alice"], ears["bob"], ears["carol"])
        [call] = exchange.b2bua.calls
        bob_endpoint = call.a.endpoint_id
        await bob_phone.hang_up(20)  # bob leaves
        ears["carol"].keep_talking(tone(TONES["carol"], 30.0))
        await ears["alice"].wait_for_tone(TONES["carol"], limit=10)
        await hears_for(ears["alice"], 4.0)  # alice and carol talk on, for 4 s of audio at least
        assert bob_endpoint not in call.events  # his endpoint, and his keypad codes with it, left the call
        await alice_hangs_up_in_the_app(exchange, call, alice_phone, carol_phone)
    finally:
        for phone in ears.values():
            phone.close()
    await settled_calls(exchange)
    await settled(exchange)
    async with exchange.sessions() as session:
        [row] = list((await session.execute(select(Recording))).scalars())
        logs = {
            log.user_id: log
            for log in (await session.execute(select(CallLog).where(CallLog.call_id == bob_phone.call_id))).scalars()
        }
    assert row.user_id == exchange.users["bob"]
    audio = audio_of(exchange, row)  # the file is there
    assert abs(len(audio) * 1000 // 8000 - row.duration_ms) <= 20
    bob_log, alice_log = logs[exchange.users["bob"]], logs[exchange.users["alice"]]
    assert bob_log.outcome == "answered, left"
    assert bob_log.answered_at is not None and bob_log.ended_at is not None and alice_log.ended_at is not None
    bob_part = (bob_log.ended_at - bob_log.answered_at).total_seconds()
    whole_call = (alice_log.ended_at - bob_log.answered_at).total_seconds()
    assert whole_call - bob_part >= 3.5, (bob_part, whole_call)  # alice and carol talked on after he left
    # The recording ends when bob left, not with the call: from its start (the answer, or later on a loaded
    # machine) to then.
    recorded = (bob_log.ended_at - row.started_at).total_seconds()
    assert abs(row.duration_ms / 1000 - recorded) < 1.0, (row.duration_ms, recorded, whole_call)


async def test_after_the_first_party_left_the_user_adds_again_and_the_added_partys_bye_ends_the_call(
    exchange: Exchange,
) -> None:
    """bob calls alice; alice adds carol and merges; bob hangs up. The three-way slot is free again (alice adds bob
    back, who answers and hangs up: alice is with carol again); carol is now the party alice is on the call with, so
    her BYE ends the call. bob's call-log row ends when he left it ("left"), alice's when the call ended."""
    await three_users(exchange)
    ears = {name: await ear() for name in TONES}
    bob_again_ear = await ear()
    try:
        alice_phone = await answering_phone(exchange, "alice", ears["alice"])
        carol = await answering(exchange, "carol", Script("callee").poke().bye())
        bob_phone = await call_from_phone(exchange, "bob", "201", ears["bob"], end="end_hang_up_when_told.xml")
        await merged_by_alice(ears["alice"], ears["bob"], carol.ear)
        await bob_phone.hang_up(20)  # the first party leaves
        [call] = exchange.b2bua.calls
        [carol_leg] = call.joined  # in the first party's place
        carol.call_id = dialog_call_id(carol_leg)
        bob_again = await answering_phone(exchange, "bob", bob_again_ear, hang_up_ms=500)
        await ears["alice"].press("*7202#")
        await bob_again.succeeded(15)  # added: his phone rang, he answered and hung up
        carol.ear.keep_talking(tone(TONES["carol"], 30.0))
        await ears["alice"].wait_for_tone(TONES["carol"], limit=10, after=len(ears["alice"].audio()))  # with carol
        await poke(carol.port, carol.call_id)  # carol hangs up
        await carol.sipp.succeeded(20)
        await alice_phone.succeeded(20)  # the call ended: alice got BYE
    finally:
        for phone in (*ears.values(), bob_again_ear, carol.ear):
            phone.close()
    await settled_calls(exchange)
    async with exchange.sessions() as session:
        rows = {
            row.user_id: row
            for row in (await session.execute(select(CallLog).where(CallLog.call_id == bob_phone.call_id))).scalars()
        }
    bob_row, alice_row = rows[exchange.users["bob"]], rows[exchange.users["alice"]]
    assert (bob_row.direction, bob_row.outcome) == ("placed", "answered, left")
    assert (alice_row.direction, alice_row.outcome) == ("received", "answered")
    assert bob_row.ended_at is not None and alice_row.ended_at is not None
    assert bob_row.ended_at < alice_row.ended_at


async def test_a_failure_starting_the_added_partys_legs_cancels_those_started(
    exchange: Exchange, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """carol has two phones; alice adds her, and the media engine has no endpoint for the second branch: the first
    one, ringing already, is cancelled at once (not left ringing until the call ends), and alice and bob talk on."""
    await three_users(exchange)
    ears = {name: await ear() for name in ("alice", "bob")}
    try:
        carol_phone = await start_carol_ringing(exchange)
        await register(exchange, "carol", free_udp_port())  # her second phone: its branch never starts
        bob_phone = await answering_phone(exchange, "bob", ears["bob"])
        alice_phone = await call_from_phone(exchange, "alice", "202", ears["alice"], end="end_hang_up_when_told.xml")
        await ears["bob"].connected()
        await ears["alice"].connected()
        media = exchange.b2bua.media
        execute = media.execute
        created = 0

        async def no_second_endpoint(command: Command) -> object:
            nonlocal created
            if isinstance(command, CreateEndpoint):
                created += 1
                if created == 2:
                    raise MediaError("no media port")
            return await execute(command)

        monkeypatch.setattr(media, "execute", no_second_endpoint)
        await ears["alice"].press("*7203#")
        await carol_phone.succeeded(15)  # her first phone rang and got CANCEL while the call goes on
        assert exchange.b2bua.calls
        ears["bob"].keep_talking(tone(TONES["bob"], 30.0))
        await ears["alice"].wait_for_tone(TONES["bob"], limit=10)
        await alice_phone.hang_up(20)
        await bob_phone.succeeded(20)
    finally:
        for phone in ears.values():
            phone.close()
    await settled_calls(exchange)
    assert [r for r in caplog.records if r.getMessage() == "call.code_failed"]  # the add, and only it, failed
    caplog.clear()  # its record's traceback holds the call: the exchange's leak check would count it


async def start_carol_ringing(exchange: Exchange) -> Sipp:
    return await start_ringing(exchange, "carol")


async def start_ringing(exchange: Exchange, name: str) -> Sipp:
    """The user's phone, ringing for the next call until it is cancelled."""
    port = free_udp_port()
    await register(exchange, name, port)
    return await start_sipp(exchange, f"callee-{name}", calls_scenario("callee_rings.xml"), port=port)
