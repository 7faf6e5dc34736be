"""The mobile network as a peer (fixed-mobile integration): calls to a user's mobile number arrive from it and are
routed by the exchange; ringing the handset goes back with the routing prefix; calls from the handset leave with
the identity of SPEC G3."""

from __future__ import annotations

import pytest

from hipper.domain.services import OutgoingIdentity, Voicemail
from tests.calls.conftest import Exchange, expect_headers, phone, scenario, start_sipp

pytestmark = pytest.mark.sip

OUTSIDE = "+31301234567"
BOB_MOBILE = "+31612340002"


async def test_a_call_to_the_mobile_number_rings_desk_and_handset_through_the_prefix(exchange: Exchange) -> None:
    await exchange.add_user("bob", "202", direct="+31201234102", mobile=BOB_MOBILE)
    await exchange.set_service("bob", Voicemail(active=False))
    desk = await phone(exchange, "bob", "desk", scenario("callee_rings.xml"))
    handset_checks = expect_headers(("To", r"sip:\+31612340002@"))
    handset_checks["check"] = handset_checks["check"].replace(
        "</action>",
        '<ereg regexp="^INVITE sip:9\\+31612340002@" search_in="msg" check_it="true" assign_to="uri" /></action>',
    )
    handset_checks["refs"] = '<Reference variables="seen0,uri" />'
    handset = await start_sipp(
        exchange, "handset", scenario("callee.xml", ring_ms=300, **handset_checks), "-rtp_echo",
        port=exchange.mobile_port,
    )  # fmt: skip
    # Someone outside dialled Bob's mobile number and the network delivered it to the exchange (here over the
    # trunk's address: one SIPp cannot both place the call and play the handset on the mobile network's port).
    text = scenario(
        "trunk_caller.xml", final="final_talks.xml", user=OUTSIDE, from_user=OUTSIDE, display="Outside",
        extra="", talk_ms=1000,
    )  # fmt: skip
    caller = await start_sipp(exchange, "caller", text, "-s", BOB_MOBILE, port=exchange.trunk_port)
    await caller.succeeded()
    await handset.succeeded()
    await desk.succeeded()
    call = await exchange.next_call()
    assert call.answered and sorted(call.branches) == [("desk", 487), ("mobile", 200)]
    rows = await exchange.call_logs("bob")
    assert rows[0].plan is not None and rows[0].plan["called"] == "mobile"


async def test_a_call_from_the_handset_leaves_with_the_mobile_identity(exchange: Exchange) -> None:
    await exchange.add_user("bob", "202", direct="+31201234102", mobile=BOB_MOBILE)
    await exchange.set_service("bob", OutgoingIdentity(mobile="mobile"))
    checks = expect_headers(("From", r"sip:\+31612340002@"), ("P-Asserted-Identity", r"\+31612340002"))
    network = await start_sipp(
        exchange, "trunk", scenario("callee.xml", ring_ms=100, **checks), "-rtp_echo", port=exchange.trunk_port
    )
    text = scenario(
        "trunk_caller.xml", final="final_talks.xml", user=BOB_MOBILE, from_user=BOB_MOBILE, display="Bob",
        extra="", talk_ms=1000,
    )  # fmt: skip
    handset = await start_sipp(exchange, "handset", text, "-s", "+31201111222", port=exchange.mobile_port)
    await handset.succeeded()
    await network.succeeded()
    call = await exchange.next_call()
    assert call.answered and call.branches == [("trunk", 200)]
    rows = await exchange.call_logs("bob")
    assert [(r.direction, r.remote_number, r.local_identity) for r in rows] == [("placed", "+31201111222", BOB_MOBILE)]
