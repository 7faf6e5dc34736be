"""The telephony traps of DESIGN.md, each against real SIPp peers."""

from __future__ import annotations

import asyncio
import gc
import itertools

import pytest

from hipper.engine.b2bua import Finished
from hipper.engine.call import Call
from hipper.sip.message import Response
from hipper.sip.transaction import State
from tests.calls.conftest import Exchange, phone, place_call, scenario
from tests.sip.conftest import RawClient
from tests.sip.peers import free_udp_port

pytestmark = pytest.mark.sip


async def test_the_caller_gives_up_while_ringing(exchange: Exchange) -> None:
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202")
    bob = await phone(exchange, "bob", "bob", scenario("callee_rings.xml"))
    alice = await place_call(
        exchange, "alice", "202", "final_cancel.xml", ring_ms=800,
        provisional='<recv response="100" optional="true" />\n  <recv response="180" />',
    )  # fmt: skip
    await alice.succeeded()  # CANCEL → 200, then 487 for the INVITE, ACKed
    await bob.succeeded()  # the ringing phone got a CANCEL too
    call = await exchange.next_call()
    assert call.outcome == "cancelled" and [label for label, _ in call.branches] == ["desk"]
    assert [(r.direction, r.outcome) for r in await exchange.call_logs("bob")] == [("missed", "cancelled")]


async def test_a_200_that_crosses_the_cancel_is_acked_and_ended_with_bye(exchange: Exchange) -> None:
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202")
    await exchange.add_device("bob", "bob-softphone")
    late = await phone(exchange, "bob-softphone", "late", scenario("callee_answers_after_cancel.xml"))
    desk = await phone(exchange, "bob", "desk", scenario("callee.xml", ring_ms=500), "-rtp_echo")
    alice = await place_call(exchange, "alice", "202", "final_talks.xml", talk_ms=1000)
    await alice.succeeded()
    await desk.succeeded()
    await late.succeeded()  # its late 200 got an ACK and then a BYE
    call = await exchange.next_call()
    assert call.answered
    assert sorted(call.branches) == [("desk", 200), ("desk", 200)]


# After the call: the callee sends its 200 to the INVITE again (it missed our ACK), on the INVITE's own Via branch.
INVITE_VIA = '<action><ereg regexp=".*" search_in="hdr" header="Via:" assign_to="invite_via" /></action>'
REPEATS_ITS_200 = """
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      Via: [$invite_via]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      CSeq: 1 INVITE
      Contact: <sip:callee@[local_ip]:[local_port]>
      Content-Length: 0

    ]]>
  </send>
  <recv request="ACK" timeout="5000" />
"""


async def test_a_200_repeated_after_the_call_ended_is_acked_again(exchange: Exchange) -> None:
    """RFC 6026 §7.1 / RFC 3261 §13.2.2.4: a 2xx retransmission goes to the INVITE's UAC, which ACKs it again —
    also after the call ended, while the transaction absorbs retransmissions (Timer M, 32 s)."""
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202")
    callee = scenario("callee.xml", ring_ms=100, check=INVITE_VIA, refs=REPEATS_ITS_200)
    bob = await phone(exchange, "bob", "bob", callee)
    alice = await place_call(exchange, "alice", "202", "final_talks.xml", talk_ms=200)
    await alice.succeeded()
    await bob.succeeded()  # its repeated 200 (after our BYE and its 200 to it) got an ACK
    assert (await exchange.next_call()).answered


async def test_an_ended_call_is_freed_while_its_transactions_still_absorb_retransmissions(
    exchange: Exchange,
) -> None:
    """The branch's INVITE transaction lives 32 s after the call (Timer M); it must not keep the call's objects
    alive that long (at 40 calls/s, ≈ 1,300 ended calls for the garbage collector to walk)."""
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202")
    bob = await phone(exchange, "bob", "bob", scenario("callee.xml", ring_ms=100))
    alice = await place_call(exchange, "alice", "202", "final_talks.xml", talk_ms=200)
    await alice.succeeded()
    await bob.succeeded()
    assert (await exchange.next_call()).answered
    invites = [tx for tx in exchange.stack.transactions.client.values() if tx.invite]
    assert [tx.state for tx in invites] == [State.ACCEPTED]  # still absorbing 2xx retransmissions
    gc.collect()
    assert not [o for o in gc.get_objects() if isinstance(o, Call)]


async def test_our_200_is_retransmitted_until_the_ack(exchange: Exchange) -> None:
    """RFC 3261 §13.3.1.4 with a hand-driven trunk (no SIPp: it would take the retransmission for its own)."""
    await exchange.add_user("bob", "202", direct="+31201234102")
    bob = await phone(exchange, "bob", "bob", scenario("callee.xml", ring_ms=100))
    loop = asyncio.get_running_loop()
    transport, network = await loop.create_datagram_endpoint(RawClient, local_addr=("127.0.0.1", exchange.trunk_port))
    try:
        media = free_udp_port()
        sdp = f"v=0\r\no=t 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" \
              f"m=audio {media} RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n"  # fmt: skip
        head = (
            f"INVITE sip:+31201234102@127.0.0.1:{exchange.port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{exchange.trunk_port};branch=z9hG4bKraw1;rport\r\n"
            "From: <sip:+31301234567@127.0.0.1>;tag=raw\r\nTo: <sip:+31201234102@127.0.0.1>\r\n"
            "Call-ID: raw-call@127.0.0.1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
            f"Contact: <sip:trunk@127.0.0.1:{exchange.trunk_port}>\r\nContent-Type: application/sdp\r\n"
        )
        network.send(f"{head}Content-Length: {len(sdp)}\r\n\r\n{sdp}", exchange.port)
        oks: list[Response] = []
        arrivals: list[float] = []
        async with asyncio.timeout(10):
            while len(oks) < 4:  # the 200 and three retransmissions (T1 = 0.5 s, then 1 s, then 2 s)
                response = await network.receive(10)
                if response.status == 200:
                    oks.append(response)
                    arrivals.append(loop.time())
        # One retransmitter: each interval apart (0.5, 1, 2 s), never two copies at once (the leg used to
        # retransmit beside the transaction: 200s at 0.0, 0.5, 0.5, 1.5, 1.5 s). Timers only run late, not early.
        gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
        assert min(gaps) > 0.4, gaps
        to = oks[0].headers.get("To")
        ack = (
            f"ACK sip:hipper@127.0.0.1:{exchange.port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{exchange.trunk_port};branch=z9hG4bKraw2;rport\r\n"
            f"From: <sip:+31301234567@127.0.0.1>;tag=raw\r\nTo: {to}\r\nCall-ID: raw-call@127.0.0.1\r\n"
            "CSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
        network.send(ack, exchange.port)
        await network.nothing(2.5)  # the ACK stopped the retransmissions
        bye = ack.replace("ACK sip", "BYE sip", 1).replace("CSeq: 1 ACK", "CSeq: 2 BYE").replace("raw2", "raw3")
        network.send(bye, exchange.port)
        assert (await network.receive(5)).status == 200
        await bob.succeeded()
        call = await exchange.next_call()
        assert call.answered
    finally:
        transport.close()


TALK_BACK = """
  <nop>
    <action>
      <exec play_pcap_audio="/usr/share/sip-tester/g711a.pcap" />
    </action>
  </nop>
"""


async def test_a_phone_behind_nat_is_reached_where_it_registered_from_and_media_latches(exchange: Exchange) -> None:
    """Contact and SDP name 192.0.2.1 (unreachable): SIP goes to the REGISTER's source, RTP to where it comes from."""
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202")
    natted = scenario("callee.xml", ring_ms=100, contact_host="192.0.2.1", media_host="192.0.2.1", after_ack=TALK_BACK)
    bob = await phone(exchange, "bob", "bob", natted, contact_host="192.0.2.1")
    [binding] = await exchange.registrations("bob")
    assert binding.contact.startswith("sip:bob@192.0.2.1:") and binding.source.startswith("udp:127.0.0.1:")
    alice = await place_call(exchange, "alice", "202", "final_talks.xml", talk_ms=2500)
    await alice.succeeded()
    await bob.succeeded()
    call = await exchange.next_call()
    assert call.answered
    assert call.media["callee_packets_received"] > 50  # Bob's audio arrived from 127.0.0.1 …
    assert call.media["caller_packets_sent"] > 50  # … and went on to Alice


@pytest.mark.parametrize("exchange", [{"rtp_timeout_seconds": 1.5}], indirect=True)
async def test_a_call_without_rtp_is_ended_by_the_rtp_timeout(exchange: Exchange) -> None:
    """A leaked dialog would leave both users busy forever: no RTP for a while ends the call (BYE both ways)."""
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202")
    bob = await phone(exchange, "bob", "bob", scenario("callee.xml", ring_ms=100))
    alice = await place_call(exchange, "alice", "202", "final_application.xml")  # sends no RTP, waits for BYE
    await alice.succeeded()
    await bob.succeeded()
    call = await exchange.next_call()
    assert call.answered
    assert not exchange.b2bua.on_call(exchange.users["bob"])


def test_what_ended_is_kept_only_for_those_who_watch() -> None:
    """A node runs for months: a call's summary (or a finished callback) nobody watches is not kept."""
    ended: Finished[str] = Finished()
    ended.put("before anyone watched")
    watching = ended.watch()
    ended.put("a call")
    assert watching.get_nowait() == "a call" and watching.empty()
