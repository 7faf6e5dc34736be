"""Slice (c): forward always, do not disturb, remote office, simultaneous ring, Anywhere, answer confirmation."""

from __future__ import annotations

import pytest

from hipper.config import Settings
from hipper.domain.services import (
    Anywhere,
    CallForwardingAlways,
    CallForwardingAlwaysSecondary,
    DoNotDisturb,
    RemoteOffice,
    SimultaneousRing,
    Voicemail,
)
from hipper.domain.services.anywhere import AnywhereLocation
from hipper.domain.services.simultaneous_ring import SimultaneousRingTarget
from tests.calls.conftest import RING_SPLASH_ALERT_INFO, Exchange, expect_headers, phone, place_call, scenario, trunk

pytestmark = pytest.mark.sip

EXTERNAL = "+31612345678"
PRESS_1 = """
  <pause milliseconds="500" />
  <nop>
    <action>
      <exec play_pcap_audio="/usr/share/sip-tester/dtmf_2833_1.pcap" />
    </action>
  </nop>
"""


async def test_forward_always_goes_out_without_ringing_the_desk(exchange: Exchange) -> None:
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202", direct="+31201234102")
    await exchange.set_service("bob", CallForwardingAlways(active=True, destination=EXTERNAL))
    checks = expect_headers(("History-Info", r"cause=302"), ("Diversion", r"reason=unconditional;counter=1"))
    network = await trunk(exchange, "trunk", scenario("callee.xml", ring_ms=100, **checks), "-rtp_echo")
    alice = await place_call(exchange, "alice", "202", "final_talks.xml", talk_ms=1000)
    await alice.succeeded()
    await network.succeeded()
    call = await exchange.next_call()
    assert call.answered and call.branches == [("forward", 200)]
    rows = await exchange.call_logs("bob")
    assert [(r.direction, r.outcome) for r in rows] == [("missed", "forwarded")]
    assert rows[0].plan is not None and rows[0].plan["steps"][0]["line"] == 1


async def test_do_not_disturb_is_busy_with_a_ring_splash_on_the_desk(exchange: Exchange) -> None:
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202")
    await exchange.set_service("bob", DoNotDisturb(active=True, ring_splash=True))
    checks = expect_headers(("Alert-Info", RING_SPLASH_ALERT_INFO))
    bob = await phone(exchange, "bob", "bob", scenario("callee_rings.xml", **checks))
    alice = await place_call(exchange, "alice", "202", "final_rejected.xml", status=486)
    await alice.succeeded()
    await bob.succeeded()  # the desk rang briefly (Alert-Info) and was cancelled
    call = await exchange.next_call()
    assert call.outcome == "busy"
    assert [(r.direction, r.outcome) for r in await exchange.call_logs("bob")] == [("missed", "busy")]


async def test_remote_office_rings_its_number_instead_of_the_desk(exchange: Exchange) -> None:
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202")
    await exchange.set_service("bob", RemoteOffice(active=True, destination=EXTERNAL))
    network = await trunk(exchange, "trunk", scenario("callee.xml", ring_ms=100), "-rtp_echo")
    alice = await place_call(exchange, "alice", "202", "final_talks.xml", talk_ms=1000)
    await alice.succeeded()
    await network.succeeded()
    call = await exchange.next_call()
    assert call.answered and call.branches == [("remote_office", 200)]
    assert [(r.direction, r.outcome) for r in await exchange.call_logs("bob")] == [("received", "answered")]


async def test_simultaneous_ring_with_answer_confirmation_connects_only_after_the_key(exchange: Exchange) -> None:
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202")
    await exchange.set_service(
        "bob",
        SimultaneousRing(active=True, targets=[SimultaneousRingTarget(number=EXTERNAL, answer_confirmation=True)]),
    )
    await exchange.set_service("bob", Voicemail(active=False))
    # The desk rings and is cancelled only once the simultaneous-ring target pressed 1 after answering.
    bob = await phone(exchange, "bob", "bob", scenario("callee_rings.xml"))
    network = await trunk(exchange, "trunk", scenario("callee.xml", ring_ms=300, after_ack=PRESS_1), "-rtp_echo")
    alice = await place_call(exchange, "alice", "202", "final_talks.xml", talk_ms=1000)
    await alice.succeeded()
    await bob.succeeded()
    await network.succeeded()
    call = await exchange.next_call()
    assert call.answered
    assert sorted(call.branches) == [("desk", 487), ("simultaneous_ring", 200)]


async def test_an_answer_without_the_key_is_not_an_answer(exchange: Exchange) -> None:
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202")
    await exchange.set_service(
        "bob",
        Anywhere(locations=[AnywhereLocation(name="car", number=EXTERNAL, answer_confirmation=True)]),
    )
    await exchange.set_service("bob", Voicemail(active=False))
    # The Anywhere location answers (a mobile voicemail would) but presses nothing: the desk still wins.
    network = await trunk(exchange, "trunk", scenario("callee.xml", ring_ms=100))
    bob = await phone(exchange, "bob", "bob", scenario("callee.xml", ring_ms=1500), "-rtp_echo")
    alice = await place_call(exchange, "alice", "202", "final_talks.xml", talk_ms=2000)
    await alice.succeeded()
    await bob.succeeded()
    await network.succeeded()  # got a BYE once the desk answered
    call = await exchange.next_call()
    assert call.answered
    assert sorted(call.branches) == [("anywhere", 200), ("desk", 200)]
    assert call.media["callee_packets_received"] > 30  # the desk's echo, not the location's silence


async def test_the_fixed_number_forward_takes_calls_to_the_fixed_number(exchange: Exchange) -> None:
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202", direct="+31201234102", mobile="+31612340002")
    await exchange.set_service("bob", CallForwardingAlwaysSecondary(active=True, destination=EXTERNAL))
    checks = expect_headers(("History-Info", r"cause=302"), ("To", r"sip:\+31612345678@"))
    network = await trunk(exchange, "trunk", scenario("callee.xml", ring_ms=100, **checks))
    alice = await place_call(exchange, "alice", "202", "final_talks.xml", talk_ms=300)
    await alice.succeeded()
    await network.succeeded()
    assert (await exchange.next_call()).branches == [("forward", 200)]
    rows = await exchange.call_logs("bob")
    assert rows[0].plan is not None and rows[0].plan["steps"][0]["service"] == "call-forwarding-always-secondary"


# RFC 7462 §4 and the IANA "Alert URN Identifiers" registry: the categories and identifiers a phone may know.
REGISTERED_ALERT_URNS = {
    "service": {"normal", "call-waiting", "forward", "recall:callback", "recall:hold", "recall:transfer"},
    "duration": {"normal", "short", "long"},
}


def test_the_ring_splash_alert_info_uses_registered_rfc_7462_urns() -> None:
    values = [value.strip() for value in Settings().ring_splash_alert_info.split(",")]
    urns = [value[1:-1] for value in values if value.startswith("<urn:")]
    assert urns, "the standard URNs are there"
    for urn in urns:
        _, namespace, category, identifier = urn.split(":", 3)
        assert namespace == "alert" and identifier in REGISTERED_ALERT_URNS[category], urn
    assert all(value.startswith("<") and value.endswith(">") for value in values)  # RFC 3261 §20.4 alert-param
