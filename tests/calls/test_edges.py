"""BroadWorks-exact edges (issue 9, item 6): answer confirmation that times out and keeps its key to itself, a chain
of forwards with its whole history, a forwarding loop met in that history, and E.164 identities on every leg that
leaves the exchange."""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path

import pytest

from hipper.domain.services import (
    Anywhere,
    CallForwardingAlways,
    CallForwardingBusy,
    CallForwardingNoAnswer,
    FixedMobile,
    SimultaneousRing,
    Voicemail,
)
from hipper.domain.services.anywhere import AnywhereLocation
from hipper.domain.services.simultaneous_ring import SimultaneousRingTarget
from hipper.store import admin
from hipper.store.models import Company
from tests.calls.conftest import (
    Exchange,
    expect_headers,
    phone,
    place_call,
    scenario,
    start_sipp,
    trunk,
)
from tests.calls.test_groups import hunt_group

pytestmark = pytest.mark.sip

EXTERNAL = "+31612345678"
ALICE = "+31201234101"
BOB = "+31201234102"
CAROL = "+31201234103"
DAVE = "+31201234104"
BOB_MOBILE = "+31612340002"
OUTSIDE = "+31301234567"
DTMF_PCAP = Path("/usr/share/sip-tester/dtmf_2833_1.pcap")
TELEPHONE_EVENT = 101  # the payload type the caller's SDP (caller.xml) gives telephone-event
PCMA = 8


def spaced_dtmf_pcap(target: Path, interval: float = 0.05) -> Path:
    """SIPp's capture of the key 1, re-timed as RFC 4733 §2.5.1.4 sends it: every packet, the three end packets too,
    one interval apart (the capture has the end packets back to back, which hides a relay of the digit's tail)."""
    data = DTMF_PCAP.read_bytes()
    out = bytearray(data[:24])
    offset, number = 24, 0
    start = struct.unpack_from("<I", data, 24)[0]
    while offset < len(data):
        _, _, included, original = struct.unpack_from("<IIII", data, offset)
        moment = start + number * interval
        out += struct.pack("<IIII", int(moment), round((moment % 1) * 1_000_000), included, original)
        out += data[offset + 16 : offset + 16 + included]
        offset += 16 + included
        number += 1
    target.write_bytes(bytes(out))
    return target


class RtpSink(asyncio.DatagramProtocol):
    """The caller's RTP port: records the payload type of every packet the exchange sends to the caller."""

    def __init__(self) -> None:
        self.payload_types: list[int] = []

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        if len(data) >= 12:
            self.payload_types.append(data[1] & 0x7F)


# -- a) answer confirmation ------------------------------------------------------------------------------------


@pytest.mark.parametrize("exchange", [{"answer_confirmation_seconds": 2.0}], indirect=True)
async def test_an_answer_not_confirmed_in_time_is_released_while_the_desk_keeps_ringing(exchange: Exchange) -> None:
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202")
    await exchange.set_service(
        "bob", Anywhere(locations=[AnywhereLocation(name="car", number=EXTERNAL, answer_confirmation=True)])
    )
    await exchange.set_service("bob", Voicemail(active=False))  # no timeout: the phones ring until one answers
    # The location answers at once (a mobile's voicemail would) and presses nothing: released with BYE 2 s after
    # its answer — well before the desk answers (5 s later); with no limit the BYE would come only then.
    location = await trunk(exchange, "location", scenario("callee.xml", ring_ms=0, bye_wait='timeout="5000" '))
    desk = await phone(exchange, "bob", "desk", scenario("callee.xml", ring_ms=7000), "-rtp_echo")
    alice = await place_call(exchange, "alice", "202", "final_talks.xml", talk_ms=1500)
    await location.succeeded()
    await alice.succeeded()
    await desk.succeeded()
    call = await exchange.next_call()
    assert call.answered
    assert sorted(call.branches) == [("anywhere", 200), ("desk", 200)]
    assert call.media["callee_packets_received"] > 30  # the desk's echo: the desk was the call's answer
    assert [(r.direction, r.outcome) for r in await exchange.call_logs("bob")] == [("received", "answered")]


async def test_the_confirmation_key_is_not_passed_on_to_the_caller(exchange: Exchange) -> None:
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202")
    await exchange.set_service(
        "bob",
        SimultaneousRing(active=True, targets=[SimultaneousRingTarget(number=EXTERNAL, answer_confirmation=True)]),
    )
    await exchange.set_service("bob", Voicemail(active=False))
    dtmf = spaced_dtmf_pcap(exchange.workdir / "dtmf_1.pcap")
    after_ack = f"""
  <pause milliseconds="500" />
  <nop><action><exec play_pcap_audio="{dtmf}" /></action></nop>
  <pause milliseconds="1000" />
  <nop><action><exec play_pcap_audio="/usr/share/sip-tester/g711a.pcap" /></action></nop>
"""
    location = await trunk(exchange, "location", scenario("callee.xml", ring_ms=100, after_ack=after_ack))
    loop = asyncio.get_running_loop()
    transport, sink = await loop.create_datagram_endpoint(RtpSink, local_addr=("127.0.0.1", 0))
    try:
        port = transport.get_extra_info("sockname")[1]
        alice = await place_call(exchange, "alice", "202", "final_listens.xml", talk_ms=2000, media_port=port)
        await alice.succeeded()
        await location.succeeded()
    finally:
        transport.close()
    call = await exchange.next_call()
    assert call.answered and call.branches == [("simultaneous_ring", 200)]
    assert sink.payload_types.count(PCMA) > 20  # the location's speech reached the caller after the key ...
    assert TELEPHONE_EVENT not in sink.payload_types  # ... the key itself did not, not even its end packets


# -- b) the whole history of a chain of forwards ---------------------------------------------------------------


async def test_a_chain_of_forwards_reaches_the_trunk_with_its_whole_history(exchange: Exchange) -> None:
    """alice → bob (busy) → carol (no answer) → dave (always) → outside: four History-Info entries with RFC 4458
    causes and nested indices, three Diversion entries (the originally called bob last), all E.164."""
    await exchange.add_user("alice", "201", direct=ALICE)
    await exchange.add_user("bob", "202", direct=BOB)
    await exchange.add_user("carol", "203", direct=CAROL)
    await exchange.add_user("dave", "204", direct=DAVE)
    await exchange.set_service("bob", CallForwardingBusy(active=True, destination="203"))
    await exchange.set_service("carol", CallForwardingNoAnswer(active=True, destination="204", rings=1))
    await exchange.set_service("dave", CallForwardingAlways(active=True, destination=EXTERNAL))
    realm = r"@hipper\.test"
    history = (
        rf"^ *<sip:\{BOB}{realm}>;index=1,"
        rf"<sip:\{CAROL}{realm};cause=486>;index=1\.1;mp=1,"
        rf"<sip:\{DAVE}{realm};cause=408>;index=1\.1\.1;mp=1\.1,"
        rf"<sip:\{EXTERNAL}{realm};cause=302>;index=1\.1\.1\.1;mp=1\.1\.1 *$"
    )
    diversion = (
        rf"^ *<sip:\{DAVE}{realm}>;reason=unconditional;counter=1,"
        rf"<sip:\{CAROL}{realm}>;reason=no-answer;counter=1,"
        rf"<sip:\{BOB}{realm}>;reason=user-busy;counter=1 *$"
    )
    checks = expect_headers(
        ("History-Info", history),
        ("Diversion", diversion),
        ("From", rf"<sip:\{ALICE}@"),
        ("P-Asserted-Identity", rf"^ *<sip:\{ALICE}@"),
    )
    network = await trunk(exchange, "trunk", scenario("callee.xml", ring_ms=100, **checks), "-rtp_echo")
    bob = await phone(exchange, "bob", "bob", scenario("callee_refuses.xml", status=486))
    carol_checks = expect_headers(
        ("History-Info", rf"^ *<sip:\{BOB}{realm}>;index=1,<sip:\{CAROL}{realm};cause=486>;index=1\.1;mp=1 *$"),
        ("Diversion", rf"^ *<sip:\{BOB}{realm}>;reason=user-busy;counter=1 *$"),
    )
    carol = await phone(exchange, "carol", "carol", scenario("callee_rings.xml", **carol_checks))
    alice = await place_call(exchange, "alice", "202", "final_talks.xml", talk_ms=1000)
    await alice.succeeded()
    await bob.succeeded()
    await carol.succeeded()
    await network.succeeded()
    call = await exchange.next_call()
    assert call.answered and call.branches == [("desk", 486), ("desk", 487), ("forward", 200)]
    outcomes = {name: [(r.direction, r.outcome) for r in await exchange.call_logs(name)] for name in exchange.users}
    assert outcomes == {
        "alice": [("placed", "answered")],
        "bob": [("missed", "busy, forwarded")],
        "carol": [("missed", "no-answer, forwarded")],
        "dave": [("missed", "forwarded")],
    }


async def test_the_history_a_call_arrived_with_is_kept_ahead_of_ours(exchange: Exchange) -> None:
    """A network forwarded the call to bob already; bob forwards it on: the trunk sees both exchanges' entries —
    the network's last entry is bob's number already, so ours only add the forward (RFC 7044 §10.1.1)."""
    await exchange.add_user("bob", "202", direct=BOB)
    await exchange.set_service("bob", CallForwardingAlways(active=True, destination=EXTERNAL))
    elsewhere = "+31309999999"
    arrived = (
        f"\n      History-Info: <sip:{elsewhere}@carrier.example>;index=1,"
        f"<sip:{BOB}@carrier.example;cause=302>;index=1.1;mp=1"
        f"\n      Diversion: <sip:{elsewhere}@carrier.example>;reason=unconditional;counter=1"
    )
    realm = r"@hipper\.test"
    checks = expect_headers(
        (
            "History-Info",
            rf"^ *<sip:\{elsewhere}@carrier\.example>;index=1,<sip:\{BOB}@carrier\.example;cause=302>;index=1\.1;mp=1,"
            rf"<sip:\{EXTERNAL}{realm};cause=302>;index=1\.1\.1;mp=1\.1 *$",
        ),
        (
            "Diversion",
            rf"^ *<sip:\{BOB}{realm}>;reason=unconditional;counter=1,"
            rf"<sip:\{elsewhere}@carrier\.example>;reason=unconditional;counter=1 *$",
        ),
        ("From", r"<sip:\+31301234567@"),
        ("P-Asserted-Identity", r"^ *<sip:\+31301234567@"),
    )
    network = await trunk(exchange, "trunk", scenario("callee.xml", ring_ms=100, **checks), "-rtp_echo")
    # Delivered over the mobile network's address (one SIPp cannot both place the call and play the trunk).
    text = scenario(
        "trunk_caller.xml", final="final_talks.xml", user=OUTSIDE, from_user=OUTSIDE, display="Outside",
        extra=arrived, talk_ms=500,
    )  # fmt: skip
    caller = await start_sipp(exchange, "caller", text, "-s", BOB, port=exchange.mobile_port)
    await caller.succeeded()
    await network.succeeded()
    assert (await exchange.next_call()).branches == [("forward", 200)]


# -- c) a forwarding loop ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("exchange", [{"voicemail_silence_seconds": 2.0}], indirect=True)
async def test_a_forwarding_loop_ends_in_the_voicemail_of_the_user_met_again(exchange: Exchange) -> None:
    await exchange.add_user("alice", "201", direct=ALICE)
    await exchange.add_user("bob", "202", direct=BOB)
    await exchange.add_user("carol", "203", direct=CAROL)
    await exchange.set_service("bob", CallForwardingAlways(active=True, destination="203"))
    await exchange.set_service("carol", CallForwardingAlways(active=True, destination=BOB))
    await exchange.set_service("carol", Voicemail(active=False))
    alice = await place_call(exchange, "alice", "202", "final_application.xml")
    await alice.succeeded()  # answered by bob's voicemail: greeting, tone, silence, BYE
    await exchange.next_call()
    assert [(r.direction, r.outcome) for r in await exchange.call_logs("bob")] == [
        ("missed", "forwarded, loop, voicemail")
    ]
    assert [(r.direction, r.outcome) for r in await exchange.call_logs("carol")] == [("missed", "forwarded")]
    assert [r.direction for r in await exchange.call_logs("alice")] == ["placed"]


async def test_a_loop_through_the_company_number_is_met_in_the_history_too(exchange: Exchange) -> None:
    """bob forwards to the company number, whose day destination is bob: one row for bob, 482 (no voicemail)."""
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202", direct=BOB)
    async with exchange.sessions() as session:
        company = await session.get(Company, exchange.company_id)
        assert company is not None
        company.day_destination = "202"
        await session.commit()
    await exchange.set_service("bob", CallForwardingAlways(active=True, destination="+31201234000"))
    await exchange.set_service("bob", Voicemail(active=False))
    alice = await place_call(exchange, "alice", "202", "final_rejected.xml", status=482)
    await alice.succeeded()
    await exchange.next_call()
    assert [(r.direction, r.outcome) for r in await exchange.call_logs("bob")] == [
        ("missed", "forwarded, loop, rejected")
    ]


async def test_a_loop_between_company_numbers_ends_with_482_not_a_crash(exchange: Exchange) -> None:
    """The company number's destination is a department whose destination is the company number again."""
    await exchange.add_user("alice", "201")
    async with exchange.sessions() as session:
        company = await session.get(Company, exchange.company_id)
        assert company is not None
        company.day_destination = "+31201234500"
        await admin.create_group(session, company, "Sales", "+31201234500", day_destination="+31201234000")
        await session.commit()
    alice = await place_call(exchange, "alice", "+31201234000", "final_rejected.xml", status=482)
    await alice.succeeded()
    assert not (await exchange.next_call()).answered


# -- d) E.164 on every leg that leaves the exchange --------------------------------------------------------------


async def test_a_colleagues_call_rings_a_number_outside_with_their_e164_identity(exchange: Exchange) -> None:
    """Simultaneous ring to a number outside: the trunk sees alice's direct number, never her extension 201."""
    await exchange.add_user("alice", "201", direct=ALICE)
    await exchange.add_user("bob", "202", direct=BOB)
    await exchange.set_service("bob", SimultaneousRing(active=True, targets=[SimultaneousRingTarget(number=EXTERNAL)]))
    await exchange.set_service("bob", Voicemail(active=False))
    checks = expect_headers(("From", rf"<sip:\{ALICE}@"), ("P-Asserted-Identity", rf"^ *<sip:\{ALICE}@"))
    network = await trunk(exchange, "trunk", scenario("callee.xml", ring_ms=100, **checks), "-rtp_echo")
    alice = await place_call(exchange, "alice", "202", "final_talks.xml", talk_ms=500)
    await alice.succeeded()
    await network.succeeded()
    assert (await exchange.next_call()).branches == [("simultaneous_ring", 200)]


async def test_a_colleagues_call_to_a_mobile_reaches_the_mobile_network_with_the_company_number(
    exchange: Exchange,
) -> None:
    """A colleague with only an extension is shown with the company's number (their outgoing identity)."""
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202", direct=BOB, mobile=BOB_MOBILE)
    await exchange.set_service("bob", Voicemail(active=False))
    checks = expect_headers(("From", r"<sip:\+31201234000@"), ("P-Asserted-Identity", r"^ *<sip:\+31201234000@"))
    handset = await start_sipp(
        exchange, "handset", scenario("callee.xml", ring_ms=100, **checks), "-rtp_echo", port=exchange.mobile_port
    )
    alice = await place_call(exchange, "alice", BOB_MOBILE, "final_talks.xml", talk_ms=500)
    await alice.succeeded()
    await handset.succeeded()
    assert (await exchange.next_call()).branches == [("mobile", 200)]


async def test_a_group_call_from_a_colleague_reaches_a_members_mobile_with_an_e164_number_and_the_group_name(
    exchange: Exchange,
) -> None:
    """The hunt group's display stays ("Reception: Alice"); the extension in the From URI does not."""
    await exchange.add_user("alice", "201", direct=ALICE)
    await exchange.add_user("bob", "202", mobile=BOB_MOBILE)
    await exchange.set_service("bob", FixedMobile(group_calls_to_mobile=True))
    await hunt_group(exchange, "simultaneous", ["bob"])
    checks = expect_headers(
        ("From", rf'^ *"Reception: Alice" *<sip:\{ALICE}@'), ("P-Asserted-Identity", rf"^ *<sip:\{ALICE}@")
    )
    handset = await start_sipp(
        exchange, "handset", scenario("callee.xml", ring_ms=100, **checks), "-rtp_echo", port=exchange.mobile_port
    )
    alice = await place_call(exchange, "alice", "500", "final_talks.xml", talk_ms=500)
    await alice.succeeded()
    await handset.succeeded()
    assert (await exchange.next_call()).branches == [("mobile", 200)]
