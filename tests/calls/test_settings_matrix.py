"""End-to-end calls with real SIP peers for the settings the other call tests leave out (issue 3, point 10):
each precedence line and setting of docs/call-routing.md has at least one call that exercises it."""

from __future__ import annotations

import asyncio
import wave
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from hipper.apps.voicemail import system_greeting
from hipper.domain.services import (
    Anonymous,
    Anywhere,
    CallForwardingAlways,
    FixedMobile,
    OutgoingIdentity,
    PersonalAssistant,
    SimultaneousRing,
    Voicemail,
)
from hipper.domain.services.anywhere import AnywhereLocation
from hipper.domain.services.simultaneous_ring import SimultaneousRingTarget
from hipper.media.prompts import tone_path
from hipper.store import admin
from hipper.store.models import Company, User
from hipper.store.models import Voicemail as VoicemailMessage
from tests.calls.conftest import (
    Exchange,
    Sipp,
    expect_headers,
    phone,
    place_call,
    register,
    scenario,
    start_sipp,
    until_on_a_call,
    with_request_uri,
)
from tests.sip.peers import free_udp_port

pytestmark = pytest.mark.sip

EXTERNAL = "+31612345678"
OUTSIDE = "+31301234567"
BOB_DIRECT = "+31201234102"
BOB_MOBILE = "+31612340002"
CALL_CENTER = "+31201234900"


class Silent(asyncio.DatagramProtocol):
    """Takes every datagram sent to a port where no peer may be rung (a SIPp there could not prove an absence)."""

    def __init__(self) -> None:
        self.datagrams: list[bytes] = []

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.datagrams.append(data)

    @property
    def invites(self) -> list[bytes]:
        # A registered contact may also get a NOTIFY (message waiting) or OPTIONS; only an INVITE is ringing.
        return [d for d in self.datagrams if d.startswith(b"INVITE ")]


@asynccontextmanager
async def listening(port: int) -> AsyncIterator[Silent]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(Silent, local_addr=("127.0.0.1", port))
    try:
        yield protocol
    finally:
        transport.close()


async def call_in(exchange: Exchange, dialled: str, *, port: int | None = None, from_user: str = OUTSIDE,
                  talk_ms: int = 1000) -> Sipp:  # fmt: skip
    """A call arriving from the trunk (or, with `port`, from the mobile network) for `dialled`."""
    text = scenario(
        "trunk_caller.xml", final="final_talks.xml", user=from_user, from_user=from_user, display="Outside",
        extra="", talk_ms=talk_ms,
    )  # fmt: skip
    return await start_sipp(exchange, "caller", text, "-s", dialled, port=port or exchange.trunk_port)


# -- voicemail: on busy, not reachable, forward always to voicemail ------------------------------------------


def greeting_ms(extension: str) -> int:
    """How long the system greeting and the tone play, so that the caller speaks only once recording starts."""
    seconds = 0.0
    for path in (*system_greeting("en", extension), tone_path("beep")):
        with wave.open(str(path)) as audio:
            seconds += audio.getnframes() / audio.getframerate()
    return int(seconds * 1000) + 700  # a margin for the engine's start and the shared machine


@pytest.mark.parametrize("exchange", [{"voicemail_silence_seconds": 2.0}], indirect=True)
async def test_voicemail_on_busy_takes_a_message_when_the_desk_refuses_busy(exchange: Exchange) -> None:
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202")
    await exchange.set_service("bob", Voicemail(active=True, on_busy=True, on_no_answer=False))
    bob = await phone(exchange, "bob", "bob", scenario("callee_refuses.xml", status=486))
    alice = await place_call(
        exchange, "alice", "202", "final_leaves_message.xml", greeting_ms=greeting_ms("202"), limit=40
    )
    await bob.succeeded()
    await alice.succeeded(45)  # a 200 from the voicemail, greeting and tone, a message, then its BYE
    call = await exchange.next_call(45)
    assert call.outcome == "voicemail"
    assert call.branches == [("desk", 486)]
    assert call.media["caller_packets_sent"] > 100  # the greeting reached the caller as RTP
    rows = await exchange.call_logs("bob")
    assert [(r.direction, r.outcome) for r in rows] == [("missed", "busy, voicemail")]
    assert rows[0].plan is not None and rows[0].plan["steps"][0]["on_busy"][0]["action"] == "voicemail"
    async with asyncio.timeout(10):
        while not (messages := await voicemails_of(exchange, "bob")):  # noqa: ASYNC110 - stored after the BYE
            await asyncio.sleep(0.1)
    assert messages[0].caller_number == "201" and messages[0].duration_ms > 1000


async def voicemails_of(exchange: Exchange, name: str) -> list[VoicemailMessage]:
    async with exchange.sessions() as session:
        rows = await session.execute(select(VoicemailMessage).where(VoicemailMessage.user_id == exchange.users[name]))
        return list(rows.scalars())


@pytest.mark.parametrize("exchange", [{"voicemail_silence_seconds": 2.0}], indirect=True)
async def test_voicemail_takes_the_call_when_nothing_is_registered(exchange: Exchange) -> None:
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202")
    await exchange.set_service("bob", Voicemail(active=True))
    alice = await place_call(exchange, "alice", "202", "final_application.xml")
    await alice.succeeded()
    call = await exchange.next_call()
    assert call.outcome == "voicemail" and call.branches == []
    assert call.media["caller_packets_sent"] > 100
    rows = await exchange.call_logs("bob")
    assert rows[0].plan is not None and rows[0].plan["steps"][0]["line"] == 9
    assert rows[0].plan["steps"][0]["action"] == "voicemail"


@pytest.mark.parametrize("exchange", [{"voicemail_silence_seconds": 2.0}], indirect=True)
async def test_forward_always_to_voicemail_does_not_ring_the_desk(exchange: Exchange) -> None:
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202")
    await exchange.set_service("bob", CallForwardingAlways(active=True, to_voicemail=True))
    desk_port = free_udp_port()
    await register(exchange, "bob", desk_port)
    async with listening(desk_port) as desk:
        alice = await place_call(exchange, "alice", "202", "final_application.xml")
        await alice.succeeded()
        call = await exchange.next_call()
    assert desk.invites == []
    assert call.outcome == "voicemail" and call.branches == []
    assert call.media["caller_packets_sent"] > 100
    rows = await exchange.call_logs("bob")
    assert rows[0].plan is not None
    assert rows[0].plan["steps"][0]["line"] == 1 and rows[0].plan["steps"][0]["action"] == "voicemail"


# -- the Personal Assistant past its end -----------------------------------------------------------------------


async def test_an_expired_personal_assistant_lets_the_call_ring(exchange: Exchange) -> None:
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202")
    # The API refuses an `until` in the past; a stored one simply ran out, which is what this call meets.
    ended = datetime.now(UTC) - timedelta(minutes=5)
    await exchange.set_service("bob", PersonalAssistant(active=True, presence="meeting", until=ended))
    bob = await phone(exchange, "bob", "bob", scenario("callee.xml", ring_ms=100), "-rtp_echo")
    alice = await place_call(exchange, "alice", "202", "final_talks.xml", talk_ms=1000)
    await alice.succeeded()
    await bob.succeeded()
    call = await exchange.next_call()
    assert call.answered and call.branches == [("desk", 200)]
    rows = await exchange.call_logs("bob")
    assert [(r.direction, r.outcome) for r in rows] == [("received", "answered")]
    assert rows[0].plan is not None
    assert any("Personal Assistant ended" in note for note in rows[0].plan["notes"])


# -- simultaneous ring while on a call -------------------------------------------------------------------------


async def test_simultaneous_ring_with_do_not_ring_when_busy_leaves_the_target_out_during_a_call(
    exchange: Exchange,
) -> None:
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202")
    await exchange.add_user("carol", "203")
    await exchange.set_service(
        "bob",
        SimultaneousRing(active=True, targets=[SimultaneousRingTarget(number=EXTERNAL)], do_not_ring_when_busy=True),
    )
    # Bob is on a call he placed to Carol (call waiting is on by default, so a second call still alerts).
    carol = await phone(exchange, "carol", "carol", scenario("callee.xml", ring_ms=100), "-rtp_echo")
    bob_out = await place_call(exchange, "bob", "203", "final_talks.xml", talk_ms=5000)
    await until_on_a_call(exchange, "bob", carol, bob_out)
    async with listening(exchange.trunk_port) as network:
        desk = await phone(exchange, "bob", "bob-desk", scenario("callee.xml", ring_ms=300))
        alice = await place_call(exchange, "alice", "202", "final_talks.xml", talk_ms=500)
        await alice.succeeded()
        await desk.succeeded()
    await bob_out.succeeded()
    await carol.succeeded()
    calls = [await exchange.next_call(), await exchange.next_call()]
    assert network.invites == []  # the simultaneous-ring target was not rung
    waiting = next(call for call in calls if ("desk", 200) in call.branches and len(call.branches) == 1)
    assert waiting.answered
    rows = [r for r in await exchange.call_logs("bob") if r.direction == "received"]
    assert rows[0].plan is not None
    assert any("simultaneous ring is left out" in note for note in rows[0].plan["notes"])


# -- fixed-mobile: which phones ring for which number ----------------------------------------------------------


async def test_fixed_rings_desk_rings_only_the_desk_phone(exchange: Exchange) -> None:
    await exchange.add_user("bob", "202", direct=BOB_DIRECT, mobile=BOB_MOBILE)
    await exchange.set_service("bob", FixedMobile(fixed_rings="desk"))
    async with listening(exchange.mobile_port) as network:
        desk = await phone(exchange, "bob", "desk", scenario("callee.xml", ring_ms=300), "-rtp_echo")
        caller = await call_in(exchange, BOB_DIRECT)
        await caller.succeeded()
        await desk.succeeded()
        call = await exchange.next_call()
    assert network.invites == []
    assert call.answered and call.branches == [("desk", 200)]


async def test_fixed_rings_mobile_rings_only_the_handset_through_the_prefix(exchange: Exchange) -> None:
    await exchange.add_user("bob", "202", direct=BOB_DIRECT, mobile=BOB_MOBILE)
    await exchange.set_service("bob", FixedMobile(fixed_rings="mobile"))
    await exchange.set_service("bob", Voicemail(active=False))
    desk_port = free_udp_port()
    await register(exchange, "bob", desk_port)
    checks = with_request_uri(expect_headers(("To", r"sip:\+31201234102@")), r"^INVITE sip:9\+31612340002@")
    async with listening(desk_port) as desk:
        handset = await start_sipp(
            exchange, "handset", scenario("callee.xml", ring_ms=300, **checks), "-rtp_echo", port=exchange.mobile_port
        )
        caller = await call_in(exchange, BOB_DIRECT)
        await caller.succeeded()
        await handset.succeeded()
        call = await exchange.next_call()
    assert desk.invites == []
    assert call.answered and call.branches == [("mobile", 200)]


async def test_mobile_rings_both_rings_the_desk_and_the_handset(exchange: Exchange) -> None:
    await exchange.add_user("bob", "202", direct=BOB_DIRECT, mobile=BOB_MOBILE)
    await exchange.set_service("bob", FixedMobile(mobile_rings="both", fixed_rings="desk"))
    await exchange.set_service("bob", Voicemail(active=False))
    desk = await phone(exchange, "bob", "desk", scenario("callee_rings.xml"))
    checks = with_request_uri(expect_headers(("To", r"sip:\+31612340002@")), r"^INVITE sip:9\+31612340002@")
    handset = await start_sipp(
        exchange, "handset", scenario("callee.xml", ring_ms=800, **checks), "-rtp_echo", port=exchange.mobile_port
    )
    caller = await call_in(exchange, BOB_MOBILE)
    await caller.succeeded()
    await handset.succeeded()
    await desk.succeeded()  # it rang and was cancelled when the handset answered
    call = await exchange.next_call()
    assert call.answered and sorted(call.branches) == [("desk", 487), ("mobile", 200)]


# -- Anywhere ----------------------------------------------------------------------------------------------------


async def test_an_active_anywhere_location_rings_and_an_inactive_one_does_not(exchange: Exchange) -> None:
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202", direct=BOB_DIRECT)
    await exchange.set_service(
        "bob",
        Anywhere(
            locations=[
                AnywhereLocation(name="car", number=EXTERNAL),
                AnywhereLocation(name="boat", number="+31612345699", active=False),
            ]
        ),
    )
    await exchange.set_service("bob", Voicemail(active=False))
    # Bob's desk is not registered: only the locations could ring, and only the active one may.
    checks = expect_headers(("To", r"sip:\+31612345678@"))
    network = await start_sipp(
        exchange, "trunk", scenario("callee.xml", ring_ms=200, **checks), "-rtp_echo", port=exchange.trunk_port
    )
    alice = await place_call(exchange, "alice", "202", "final_talks.xml", talk_ms=1000)
    await alice.succeeded()
    await network.succeeded()
    call = await exchange.next_call()
    assert call.answered and call.branches == [("anywhere", 200)]


# -- outgoing identity from the mobile and the call-center number ------------------------------------------------


async def test_anonymous_on_the_mobile_hides_the_number_of_a_call_from_the_handset(exchange: Exchange) -> None:
    await exchange.add_user("bob", "202", direct=BOB_DIRECT, mobile=BOB_MOBILE)
    await exchange.set_service("bob", Anonymous(mobile=True))
    checks = expect_headers(
        ("From", r"anonymous@anonymous\.invalid"),
        ("Privacy", r"^ *id"),
        ("P-Asserted-Identity", r"sip:\+31201234102@"),
    )
    network = await start_sipp(
        exchange, "trunk", scenario("callee.xml", ring_ms=100, **checks), "-rtp_echo", port=exchange.trunk_port
    )
    handset = await call_in(exchange, "+31201111222", port=exchange.mobile_port, from_user=BOB_MOBILE)
    await handset.succeeded()
    await network.succeeded()
    call = await exchange.next_call()
    assert call.answered and call.branches == [("trunk", 200)]


async def test_the_call_center_number_as_outgoing_identity_reaches_the_trunk(exchange: Exchange) -> None:
    await exchange.add_user("alice", "201", direct="+31201234101")
    async with exchange.sessions() as session:
        company = await session.get(Company, exchange.company_id)
        alice = await session.get(User, exchange.users["alice"])
        assert company is not None and alice is not None
        center = await admin.create_call_center(session, company, "Support", number=CALL_CENTER)
        await admin.add_call_center_member(session, center, alice)
        await session.commit()
    await exchange.set_service("alice", OutgoingIdentity(fixed="call_center"))
    checks = expect_headers(("From", r"sip:\+31201234900@"), ("P-Asserted-Identity", r"sip:\+31201234900@"))
    network = await start_sipp(
        exchange, "trunk", scenario("callee.xml", ring_ms=100, **checks), "-rtp_echo", port=exchange.trunk_port
    )
    caller = await place_call(exchange, "alice", "0612345678", "final_talks.xml", talk_ms=1000)
    await caller.succeeded()
    await network.succeeded()
    call = await exchange.next_call()
    assert call.answered and call.branches == [("trunk", 200)]
    rows = await exchange.call_logs("alice")
    assert [(r.direction, r.local_identity) for r in rows] == [("placed", CALL_CENTER)]
