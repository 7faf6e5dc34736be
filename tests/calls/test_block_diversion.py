"""Anywhere's block diversion (docs/call-routing.md "Block diversion"): when the mobile network diverts the branch
to the location's voicemail, the exchange refuses that answer and the user's desk phone keeps ringing."""

from __future__ import annotations

import pytest

from hipper.domain.services import Anywhere, AnywhereLocation, FixedMobile, Voicemail
from tests.calls.conftest import Exchange, expect_headers, phone, place_call, scenario, start_sipp

pytestmark = [pytest.mark.sip, pytest.mark.parametrize("exchange", [{"block_diversion_min_answer_seconds": 1.5}],
                                                        indirect=True)]  # fmt: skip

LOCATION = "+31612345678"


async def bob_with_a_location(exchange: Exchange, *, block_diversion: bool) -> None:
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202", direct="+31201234102")
    await exchange.set_service("bob", Voicemail(active=False))
    await exchange.set_service("bob", FixedMobile(fixed_rings="desk"))
    location = AnywhereLocation(name="car", number=LOCATION, block_diversion=block_diversion)
    await exchange.set_service("bob", Anywhere(locations=[location]))


@pytest.mark.parametrize(
    ("network", "values", "status"),
    [
        # Busy / not reachable: the network's voicemail answers straight away.
        ("callee.xml", {"ring_ms": 0}, 200),
        # No reply: it answers later, but its 200 tells (History-Info with cause 408) that it was diverted.
        ("callee_diverted.xml", {"ring_ms": 2000}, 200),
        # The network announces the diversion with 181 Call Is Being Forwarded: cancelled before any answer.
        ("callee_forwards.xml", {}, 487),
    ],
    ids=["answers-at-once", "history-info-cause", "181-forwarded"],
)
async def test_the_mobile_networks_voicemail_does_not_take_the_call(
    exchange: Exchange, network: str, values: dict[str, int], status: int
) -> None:
    await bob_with_a_location(exchange, block_diversion=True)
    # The request asks for History-Info in responses and no longer carries any made-up inhibitor header.
    checks = expect_headers(("Supported", r"histinfo"))
    mobile_network = await start_sipp(
        exchange, "network", scenario(network, **values, **checks), "-rtp_echo", port=exchange.trunk_port
    )
    desk = await phone(exchange, "bob", "desk", scenario("callee.xml", ring_ms=3500), "-rtp_echo")
    alice = await place_call(exchange, "alice", "202", "final_talks.xml", talk_ms=500)
    await alice.succeeded()
    await mobile_network.succeeded()  # it was ACKed and hung up on (or cancelled), never connected
    await desk.succeeded()
    call = await exchange.next_call()
    assert call.answered
    assert sorted(call.branches) == [("anywhere", status), ("desk", 200)]
    rows = await exchange.call_logs("bob")
    assert [r.outcome for r in rows] == ["answered"]


async def test_a_person_answering_the_location_is_connected(exchange: Exchange) -> None:
    await bob_with_a_location(exchange, block_diversion=True)
    checks = expect_headers(("To", r"sip:\+31612345678@"))
    person = await start_sipp(
        exchange, "person", scenario("callee.xml", ring_ms=2500, **checks), "-rtp_echo", port=exchange.trunk_port
    )
    alice = await place_call(exchange, "alice", "202", "final_talks.xml", talk_ms=500)
    await alice.succeeded()
    await person.succeeded()
    call = await exchange.next_call()
    assert call.answered and call.branches == [("anywhere", 200)]


async def test_without_block_diversion_a_quick_answer_is_connected(exchange: Exchange) -> None:
    await bob_with_a_location(exchange, block_diversion=False)
    network = await start_sipp(
        exchange, "network", scenario("callee.xml", ring_ms=0), "-rtp_echo", port=exchange.trunk_port
    )
    alice = await place_call(exchange, "alice", "202", "final_talks.xml", talk_ms=500)
    await alice.succeeded()
    await network.succeeded()
    call = await exchange.next_call()
    assert call.answered and call.branches == [("anywhere", 200)]
