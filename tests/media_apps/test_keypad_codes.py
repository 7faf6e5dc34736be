"""Keypad codes live in the call's inbox (issue 9 point 1): a user's codes are plain state the call hands their
digits to, one after the other with its SIP requests, in the call's own task. An Add (*7<number>#) rings the
added party for up to half a minute, so it runs in a task of the call's of its own: meanwhile the inbox goes on —
the other party's hold and resume are answered at once, not after the ringing — and the call's end cancels it."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from hipper.apps.conference import ADD_RING_SECONDS
from hipper.engine.call import Call
from tests.calls.conftest import Exchange, phone
from tests.calls.conftest import scenario as calls_scenario
from tests.calls.test_tasks_per_call import THE_CALLS_OWN, tasks_counted
from tests.media_apps.conftest import poke
from tests.media_apps.test_phone_call_control import (
    HOLD_NOTE,
    TONES,
    Script,
    alice_calls_bob,
    close,
    hears,
)

pytestmark = pytest.mark.sip

# The added party rings for ADD_RING_SECONDS: what the inbox handles meanwhile must come well within that.
WITHIN_SECONDS = 10.0
assert WITHIN_SECONDS < ADD_RING_SECONDS / 2


async def added_party_rings(exchange: Exchange, limit: float = 10.0) -> Call:
    """The answered call whose Add rings (its "conference" branch is out, not answered)."""
    async with asyncio.timeout(limit):
        while True:  # polled: the call has no event for a branch started
            for call in exchange.b2bua.calls:
                if any(leg.label == "conference" and leg.status in (None, 180) for leg in call.branches):
                    return call
            await asyncio.sleep(0.05)


async def test_while_an_added_party_rings_the_call_answers_a_hold_and_ends_in_its_own_task(
    exchange: Exchange,
) -> None:
    for name, extension in (("alice", "201"), ("bob", "202"), ("carol", "203")):
        await exchange.add_user(name, extension)
    carol = await phone(exchange, "carol", "callee-carol", calls_scenario("callee_rings.xml"), limit=40)
    bob_script = (
        Script("callee").poke().reinvite("inactive", "inactive").poke().reinvite("sendrecv", "sendrecv")
        .bye_received()
    )  # fmt: skip
    started: Counter[str] = Counter()
    with tasks_counted(started):
        alice, bob = await alice_calls_bob(exchange, Script("caller").poke().bye(), bob_script)
        try:
            await alice.ear.quiet()  # her keys, not her voice (one RTP stream from her phone)
            await alice.ear.press("*7203#")
            call = await added_party_rings(exchange)
            await poke(bob.port, bob.call_id)  # bob holds while carol rings
            await hears(alice, HOLD_NOTE, limit=WITHIN_SECONDS)
            await poke(bob.port, bob.call_id)  # and takes the call back
            await hears(alice, TONES["bob"], limit=WITHIN_SECONDS)
            assert not call.over.is_set()
            await poke(alice.port, alice.call_id)  # alice hangs up: carol's ringing is cancelled with the call
            async with asyncio.timeout(WITHIN_SECONDS):
                await alice.sipp.succeeded()
                await bob.sipp.succeeded()
                await carol.succeeded()
        finally:
            close(alice, bob)
        assert (await exchange.next_call()).answered
    print("tasks:", dict(started))
    # The call's own task and the Add's; none per user, none for a digit or a request.
    assert started[THE_CALLS_OWN] == 1, started
    assert started["recording.KeypadCodes._conference"] == 1, started
    assert not [where for where in started if "in_call" in where or "user_controls" in where], started
