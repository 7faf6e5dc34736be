"""RFC 4028 session timers against SIPp peers: 422 for a too-small interval, a refreshing peer keeps the call, a
silent one gets BYE on both legs, and the exchange refreshes both legs itself when it is the refresher.

A call comes in from the trunk (SIPp on the trunk's address, so no digest) to Bob's registered SIPp phone. The
exchange accepts intervals down to 2 s here (RFC 4028's floor of 90 s would make each test minutes long).
"""

from __future__ import annotations

import asyncio

import pytest

from hipper.domain.services import Voicemail
from tests.calls.conftest import Exchange, Sipp, phone, scenario, start_sipp

pytestmark = pytest.mark.sip

OUTSIDE = "+31301234567"
BOB_DIRECT = "+31201234102"
SHORT = {"session_min_se_seconds": 2}
TIMER_OFFER = "\n      Supported: timer\n      Session-Expires: 4;refresher=uac\n      Min-SE: 2"


async def trunk_call(exchange: Exchange, final: str, extra: str, **values: object) -> Sipp:
    text = scenario(
        "trunk_caller.xml", final=final, user=OUTSIDE, from_user=OUTSIDE, display="Outside", extra=extra, **values
    )
    return await start_sipp(exchange, "caller", text, "-s", BOB_DIRECT, port=exchange.trunk_port)


async def bob(exchange: Exchange) -> None:
    await exchange.add_user("bob", "202", direct=BOB_DIRECT)
    await exchange.set_service("bob", Voicemail(active=False))


async def test_a_session_interval_below_the_minimum_gets_422_with_min_se(exchange: Exchange) -> None:
    await bob(exchange)
    extra = "\n      Supported: timer\n      Session-Expires: 30"
    caller = await trunk_call(exchange, "final_too_small.xml", extra, min_se=90)
    await caller.succeeded()
    assert exchange.b2bua.calls == set()  # refused before any call started


@pytest.mark.parametrize("exchange", [SHORT], indirect=True)
async def test_a_peer_that_refreshes_keeps_the_call(exchange: Exchange) -> None:
    await bob(exchange)
    callee = await phone(exchange, "bob", "bob", scenario("callee.xml", ring_ms=100), "-rtp_echo")
    loop = asyncio.get_running_loop()
    started = loop.time()
    # Three UPDATEs 1.5 s apart: the call lives about 5 s, past the 4 s interval and its 2.7 s expiry point.
    caller = await trunk_call(exchange, "final_refreshes.xml", TIMER_OFFER, interval=4, refresher="uac", every_ms=1500)
    await caller.succeeded()  # every refresh got its 200 with the interval, then the caller hung up itself
    await callee.succeeded()
    call = await exchange.next_call()
    assert call.answered
    assert loop.time() - started > 4.5


@pytest.mark.parametrize("exchange", [SHORT], indirect=True)
async def test_a_peer_that_stops_refreshing_gets_bye_on_both_legs(exchange: Exchange) -> None:
    await bob(exchange)
    callee = await phone(exchange, "bob", "bob", scenario("callee.xml", ring_ms=100), "-rtp_echo")
    loop = asyncio.get_running_loop()
    started = loop.time()
    caller = await trunk_call(
        exchange, "final_stops_refreshing.xml", TIMER_OFFER, interval=4, refresher="uac", bye_within_ms=6000
    )
    await caller.succeeded()  # it never refreshed and received the exchange's BYE
    await callee.succeeded()  # and the callee got a BYE as well
    call = await exchange.next_call()
    assert call.answered
    # §10: the BYE comes at interval - min(32, interval/3) = 2.7 s after the answer, not at once.
    assert 2.5 < loop.time() - started < 6.0
    assert not exchange.b2bua.on_call(exchange.users["bob"])


@pytest.mark.parametrize("exchange", [{**SHORT, "session_expires_seconds": 4}], indirect=True)
async def test_the_exchange_refreshes_both_legs_when_it_is_the_refresher(exchange: Exchange) -> None:
    await bob(exchange)
    # Bob's phone supports timers and leaves refreshing to the exchange (refresher=uac): a body-less UPDATE.
    callee = await phone(exchange, "bob", "bob", scenario("callee_timer.xml", interval=4, refresh_within_ms=3500))
    # The caller offers no timer: the exchange's 200 sets one with itself as refresher (uas) and re-INVITEs.
    caller = await trunk_call(
        exchange, "final_refreshed_by_exchange.xml", "", interval=4, refresher="uas", refresh_within_ms=3500
    )
    await caller.succeeded()
    await callee.succeeded()
    call = await exchange.next_call()
    assert call.answered


@pytest.mark.parametrize("exchange", [{"session_expires_seconds": 120}], indirect=True)
async def test_a_callee_asking_for_a_longer_interval_gets_the_invite_again(exchange: Exchange) -> None:
    await bob(exchange)
    callee = await phone(exchange, "bob", "bob", scenario("callee_wants_longer_session.xml", min_se=600))
    caller = await trunk_call(exchange, "final_talks.xml", "", talk_ms=500)
    await caller.succeeded()
    await callee.succeeded()  # 422 Min-SE 600, then the retried INVITE asked for 600 s and was answered
    call = await exchange.next_call()
    assert call.answered and call.branches == [("desk", 200)]
