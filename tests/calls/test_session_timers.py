"""RFC 4028 session timers against SIPp peers: 422 for a too-small interval, a refreshing peer keeps the call, a
silent one gets BYE on both legs, and the exchange refreshes both legs itself when it is the refresher.

A call comes in from the trunk (SIPp on the trunk's address, so no digest) to Bob's registered SIPp phone. The
exchange accepts intervals down to 2 s here (RFC 4028's floor of 90 s would make each test minutes long).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from hipper.domain.services import Voicemail
from hipper.engine.call import Call
from hipper.engine.leg import glare_retry_seconds
from tests.calls.conftest import Exchange, Sipp, free_media_port, phone, scenario, start_sipp

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
    # Three UPDATEs 2 s apart: the call lives about 6 s, past the 6 s interval's 4 s expiry point more than once.
    # Each UPDATE comes 2 s before the exchange would give up: room for a loaded machine to be late with one.
    offer = TIMER_OFFER.replace("Session-Expires: 4;", "Session-Expires: 6;")
    caller = await trunk_call(exchange, "final_refreshes.xml", offer, interval=6, refresher="uac", every_ms=2000)
    await caller.succeeded()  # every refresh got its 200 with the interval, then the caller hung up itself
    await callee.succeeded()
    call = await exchange.next_call()
    assert call.answered
    assert loop.time() - started > 6.0


@pytest.mark.parametrize("exchange", [SHORT], indirect=True)
async def test_a_peer_that_stops_refreshing_gets_bye_on_both_legs(exchange: Exchange) -> None:
    await bob(exchange)
    callee = await phone(exchange, "bob", "bob", scenario("callee.xml", ring_ms=100), "-rtp_echo")
    loop = asyncio.get_running_loop()
    started = loop.time()
    caller = await trunk_call(
        exchange, "final_stops_refreshing.xml", TIMER_OFFER, interval=4, refresher="uac", bye_within_ms=8000
    )
    await caller.succeeded()  # it never refreshed and received the exchange's BYE within 8 s of its ACK
    await callee.succeeded()  # and the callee got a BYE as well
    call = await exchange.next_call()
    assert call.answered
    # §10: the BYE comes at interval - min(32, interval/3) = 2.7 s after the answer, not at once (a lower bound
    # holds however loaded the machine: timers never fire early; the upper one is the caller's own timeout).
    assert loop.time() - started > 2.6
    assert not exchange.b2bua.on_call(exchange.users["bob"])


@pytest.mark.parametrize("exchange", [{**SHORT, "session_expires_seconds": 4}], indirect=True)
async def test_the_exchange_refreshes_both_legs_when_it_is_the_refresher(exchange: Exchange) -> None:
    await bob(exchange)
    # Bob's phone supports timers and leaves refreshing to the exchange (refresher=uac): a body-less UPDATE.
    # Each phone requires the refresh within the interval, before its session would expire (§10); the exchange
    # sends it at half of it.
    callee = await phone(exchange, "bob", "bob", scenario("callee_timer.xml", interval=4, refresh_within_ms=4000))
    # The caller offers no timer: the exchange's 200 sets one with itself as refresher (uas) and re-INVITEs.
    caller = await trunk_call(
        exchange, "final_refreshed_by_exchange.xml", "", interval=4, refresher="uas", refresh_within_ms=4000
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


class RtpListener(asyncio.DatagramProtocol):
    """The new media address of a phone that moved: counts the RTP that reaches it, and from where."""

    def __init__(self) -> None:
        self.sources: list[tuple[str, int]] = []

    def datagram_received(self, data: bytes, addr: tuple[str | Any, ...]) -> None:
        if len(data) >= 12 and data[0] & 0xC0 == 0x80:
            self.sources.append((str(addr[0]), int(addr[1])))


async def connected_call(exchange: Exchange, limit: float = 15.0) -> Call:
    async with asyncio.timeout(limit):
        while True:  # polled: the B2BUA keeps a set of calls, with no event per connection
            for call in exchange.b2bua.calls:
                if call.connected is not None and call.answered_at is not None:
                    return call
            await asyncio.sleep(0.05)


@pytest.mark.parametrize("exchange", [SHORT], indirect=True)
async def test_a_refresh_offering_a_new_address_moves_the_media_and_a_hold_stops_it(exchange: Exchange) -> None:
    await bob(exchange)
    # Bob talks (SIPp plays 7 s of A-law from its media port) for the whole call.
    talks = '<nop><action><exec play_pcap_audio="/usr/share/sip-tester/g711a.pcap" /></action></nop>'
    callee = await phone(exchange, "bob", "bob", scenario("callee.xml", ring_ms=100, after_ack=talks))
    new_port = free_media_port()
    loop = asyncio.get_running_loop()
    transport, listener = await loop.create_datagram_endpoint(RtpListener, local_addr=("127.0.0.1", new_port))
    try:
        extra = "\n      Supported: timer\n      Session-Expires: 30;refresher=uac\n      Min-SE: 2"
        caller = await trunk_call(
            exchange, "final_moves_then_holds.xml", extra, interval=30, new_host="127.0.0.1", new_port=new_port,
            moved_ms=1500, held_ms=3000,
        )  # fmt: skip
        call = await connected_call(exchange)
        assert call.a.endpoint_id is not None and call.connected is not None
        anchor = ("127.0.0.1", exchange.media.local_port(call.a.endpoint_id))
        bob_side = call.connected.endpoint_id or ""
        # The refresh re-INVITE moved the caller: Bob's audio, relayed by the anchor, reaches the new address.
        async with asyncio.timeout(10):
            while len(listener.sources) < 10:  # noqa: ASYNC110 - datagrams counted by a protocol callback
                await asyncio.sleep(0.05)
        assert set(listener.sources) == {anchor}
        # The hold (sendonly, answered recvonly): nothing more reaches the caller while Bob still talks.
        async with asyncio.timeout(10):
            while True:
                before = (len(listener.sources), exchange.media.stats(bob_side)["packets_received"])
                await asyncio.sleep(0.6)
                after = (len(listener.sources), exchange.media.stats(bob_side)["packets_received"])
                if after[0] == before[0] and after[1] >= before[1] + 10:
                    break
        assert call in exchange.b2bua.calls  # held, not hung up
        await caller.succeeded()  # both re-INVITEs answered: the refresh with its Session-Expires, the hold recvonly
        await callee.succeeded()
    finally:
        transport.close()
    assert (await exchange.next_call()).answered


@pytest.mark.parametrize("exchange", [SHORT], indirect=True)
async def test_the_answer_to_our_refresh_re_invite_moves_the_media_to_the_new_address(exchange: Exchange) -> None:
    await bob(exchange)
    new_port = free_media_port()
    loop = asyncio.get_running_loop()
    transport, listener = await loop.create_datagram_endpoint(RtpListener, local_addr=("127.0.0.1", new_port))
    try:
        # Bob makes the exchange the refresher (8 s: a re-INVITE after 4 s, the next after 8 s, when the call is
        # over) and answers it from a new address.
        callee = await phone(
            exchange, "bob", "bob",
            scenario("callee_moves_on_refresh.xml", interval=8, refresh_within_ms=8000, new_host="127.0.0.1",
                     new_port=new_port),
        )  # fmt: skip
        # The caller talks (7 s of A-law from a pcap) and hangs up after 6 s.
        caller = await trunk_call(exchange, "final_talks.xml", "", talk_ms=6000)
        call = await connected_call(exchange)
        assert call.connected is not None and call.connected.endpoint_id is not None
        anchor = ("127.0.0.1", exchange.media.local_port(call.connected.endpoint_id))
        # After the refresh the caller's audio, relayed by Bob's side of the anchor, reaches Bob's new address.
        async with asyncio.timeout(15):
            while len(listener.sources) < 10:  # noqa: ASYNC110 - datagrams counted by a protocol callback
                await asyncio.sleep(0.05)
        assert set(listener.sources) == {anchor}
        assert call.connected.session_timer is not None and call.connected.session_timer.refreshes_sent >= 1
        await caller.succeeded()
        await callee.succeeded()  # the re-INVITE refreshed with its Session-Expires and offered SDP; then BYE
    finally:
        transport.close()
    assert (await exchange.next_call()).answered


@pytest.mark.parametrize("exchange", [SHORT], indirect=True)
async def test_a_re_invite_crossing_our_refresh_gets_491(exchange: Exchange) -> None:
    await bob(exchange)
    # Bob makes the exchange the refresher (8 s: the re-INVITE after 4 s) and sends a hold of his own meanwhile.
    callee = await phone(exchange, "bob", "bob", scenario("callee_glare.xml", interval=8, refresh_within_ms=8000))
    caller = await trunk_call(exchange, "final_talks.xml", "", talk_ms=6000)
    call = await connected_call(exchange)
    await callee.succeeded()  # his re-INVITE got 491 (RFC 3261 §14.2), then he answered the refresh
    await caller.succeeded()
    assert (await exchange.next_call()).answered
    assert call.connected is not None and call.connected.session_timer is not None
    assert call.connected.session_timer.refreshes_sent == 1


def test_a_refresh_that_met_491_waits_as_rfc_3261_says() -> None:
    """§14.1: 2.1–4 s for the side that chose the Call-ID, 0–2 s for the other, in units of 10 ms."""
    ours = [glare_retry_seconds(we_own_the_call_id=True) for _ in range(2000)]
    theirs = [glare_retry_seconds(we_own_the_call_id=False) for _ in range(2000)]
    assert 2.1 <= min(ours) <= max(ours) <= 4.0
    assert 0.0 <= min(theirs) <= max(theirs) <= 2.0
    assert all(abs(wait * 100 - round(wait * 100)) < 1e-9 for wait in ours + theirs)
    assert len(set(ours)) > 50 and len(set(theirs)) > 50  # random: the two sides do not cross again in step
