"""Three-way calling from the phone: alice calls bob, adds carol with *7203#, merges with *8. Three SIPp legs,
each with its own RTP socket sending its own tone; each hears the other two tones and never its own."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from tests.calls.conftest import Exchange
from tests.media_apps.conftest import Ear, answering_phone, band_energy, call_from_phone, ear, rms, tone

pytestmark = pytest.mark.sip

TONES = {"alice": 500.0, "bob": 800.0, "carol": 1250.0}


def heard_since(phone: Ear, start: int) -> np.ndarray:
    return phone.audio()[start:]


async def test_add_then_merge_each_hears_the_others_never_itself(exchange: Exchange) -> None:
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202")
    await exchange.add_user("carol", "203")
    ears = {name: await ear() for name in TONES}
    try:
        bob_phone = await answering_phone(exchange, "bob", ears["bob"])
        carol_phone = await answering_phone(exchange, "carol", ears["carol"])
        alice_phone = await call_from_phone(
            exchange, "alice", "202", ears["alice"], end="end_hang_up.xml", talk_ms=12000
        )
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
        await asyncio.sleep(0.3)
        starts = {name: len(phone.audio()) for name, phone in ears.items()}
        for name, phone in ears.items():
            phone.keep_talking(tone(TONES[name], 3.0))
        await asyncio.sleep(3.2)
        heard = {name: heard_since(phone, starts[name]) for name, phone in ears.items()}
        await alice_phone.succeeded(20)
        await bob_phone.succeeded(20)
        await carol_phone.succeeded(20)
    finally:
        for phone in ears.values():
            phone.close()
    await exchange.next_call()
    for name, audio in heard.items():
        assert len(audio) >= 2 * 8000, f"{name} heard only {len(audio)} samples"
        middle = audio[4000 : 4000 + 16000]  # 2 s well inside the stretch where all three talk
        assert rms(middle) > 1000
        others = [other for other in TONES if other != name]
        for other in others:
            assert band_energy(middle, TONES[other]) > 0.2, f"{name} does not hear {other}"
        assert band_energy(middle, TONES[name]) < 0.01, f"{name} hears itself"


async def test_added_party_hanging_up_before_the_merge_brings_back_the_first(exchange: Exchange) -> None:
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202")
    await exchange.add_user("carol", "203")
    ears = {name: await ear() for name in TONES}
    try:
        bob_phone = await answering_phone(exchange, "bob", ears["bob"])
        carol_phone = await answering_phone(exchange, "carol", ears["carol"], hang_up_ms=1500)
        alice_phone = await call_from_phone(
            exchange, "alice", "202", ears["alice"], end="end_hang_up.xml", talk_ms=9000
        )
        await ears["bob"].connected()
        await ears["alice"].connected()
        await ears["alice"].press("*7203#")
        await carol_phone.succeeded(15)  # answered, then hung up
        ears["bob"].keep_talking(tone(TONES["bob"], 4.0))
        await ears["alice"].wait_for_tone(TONES["bob"], limit=5)  # alice is back with bob
        await ears["alice"].press("*8")  # nothing to merge now: the call goes on as it was
        await asyncio.sleep(0.5)
        await ears["alice"].wait_for_tone(TONES["bob"], limit=3)
        await alice_phone.succeeded(20)
        await bob_phone.succeeded(20)
    finally:
        for phone in ears.values():
            phone.close()
    call = await exchange.next_call()
    assert call.answered
