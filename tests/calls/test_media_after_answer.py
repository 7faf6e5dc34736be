"""RFC 3264 §6 on real calls: the caller gets no RTP from the exchange before our SDP has gone out to it (the 200
OK, or a 183 for early media), and gets it from then on. Before, the caller's endpoint sent silence from the
INVITE on: wrong by the RFC, and the largest per-call CPU cost there was (docs/performance.md)."""

from __future__ import annotations

import asyncio

import pytest

from hipper.engine.leg import CallerLeg
from tests.calls.conftest import PASSWORD, Exchange, phone, place_call, scenario, start_sipp

pytestmark = pytest.mark.sip

TALK = '<nop><action><exec play_pcap_audio="/usr/share/sip-tester/g711a.pcap" /></action></nop>'


class RtpSink(asyncio.DatagramProtocol):
    """The caller's RTP port: the loop time each packet from the exchange arrived."""

    def __init__(self) -> None:
        self.arrivals: list[float] = []

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        if len(data) >= 12:
            self.arrivals.append(asyncio.get_running_loop().time())


def sdp_sent_times(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The loop times at which the exchange (in this process, on this loop) sent the caller our SDP."""
    times: list[float] = []
    answer, early_media = CallerLeg.answer, CallerLeg.early_media

    def answering(leg: CallerLeg, sdp: str) -> None:
        times.append(asyncio.get_running_loop().time())
        answer(leg, sdp)

    def early(leg: CallerLeg, sdp: str) -> None:
        times.append(asyncio.get_running_loop().time())
        early_media(leg, sdp)

    monkeypatch.setattr(CallerLeg, "answer", answering)
    monkeypatch.setattr(CallerLeg, "early_media", early)
    return times


async def test_the_caller_gets_no_rtp_while_it_rings_and_rtp_from_the_200_on(
    exchange: Exchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202")
    sent = sdp_sent_times(monkeypatch)
    loop = asyncio.get_running_loop()
    transport, sink = await loop.create_datagram_endpoint(RtpSink, local_addr=("127.0.0.1", 0))
    try:
        port = transport.get_extra_info("sockname")[1]
        # Bob's phone rings a second (our 180 to alice carries no SDP), answers and talks; alice only listens
        # (she sends nothing, so her SDP's port is where her RTP goes).
        bob = await phone(exchange, "bob", "bob", scenario("callee.xml", ring_ms=1000, after_ack=TALK))
        alice = await place_call(exchange, "alice", "202", "final_listens.xml", talk_ms=1500, media_port=port)
        await alice.succeeded()
        await bob.succeeded()
    finally:
        transport.close()
    assert (await exchange.next_call()).answered
    assert len(sent) == 1  # the 200 OK
    assert len(sink.arrivals) > 10  # after the answer alice hears bob
    assert min(sink.arrivals) > sent[0]  # and nothing before it


async def test_the_caller_gets_no_rtp_before_the_183_that_brings_early_media(
    exchange: Exchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    await exchange.add_user("alice", "201", direct="+31201234101")
    sent = sdp_sent_times(monkeypatch)
    # The network thinks for half a second before its 183 with SDP and announcement (then refuses: 486).
    network_text = scenario("callee_early_media.xml").replace(
        '<recv request="INVITE" />', '<recv request="INVITE" />\n  <pause milliseconds="500" />', 1
    )
    network = await start_sipp(exchange, "trunk", network_text, port=exchange.trunk_port)
    loop = asyncio.get_running_loop()
    transport, sink = await loop.create_datagram_endpoint(RtpSink, local_addr=("127.0.0.1", 0))
    try:
        port = transport.get_extra_info("sockname")[1]
        text = scenario(
            "caller.xml", final="final_rejected.xml", user="alice", status=486, media_port=port,
            provisional='<recv response="100" optional="true" />\n  <recv response="183" />',
        ).replace("[branch-5]", "[branch-4]")  # fmt: skip
        alice = await start_sipp(exchange, "caller", text, "-s", "0612345678", "-au", "alice", "-ap", PASSWORD)
        await alice.succeeded()
        await network.succeeded()
    finally:
        transport.close()
    assert not (await exchange.next_call()).answered
    assert len(sent) == 1  # the 183
    assert len(sink.arrivals) > 10  # the announcement
    assert min(sink.arrivals) > sent[0]
