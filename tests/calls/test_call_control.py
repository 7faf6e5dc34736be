"""Call control while the user is already on a call (precedence line 6, docs/call-routing.md):

- Anywhere call control (manual §7.2.10): a location takes the waiting call as a separate call only with it on;
- fixed-mobile `call_control_mode` (manual §7.7): "exchange" applies the exchange's call waiting to the mobile
  too; "mobile_network" still offers the call to the handset, and the mobile network's answer decides.

Bob is made "on a call" by calling Alice from a SIPp phone that never registers, so the only phones that could
ring for Carol's call are the ones under test.
"""

from __future__ import annotations

import pytest

from hipper.domain.services import Anywhere, AnywhereLocation, CallWaiting, FixedMobile, Voicemail
from tests.calls.conftest import Exchange, Sipp, phone, place_call, scenario, start_sipp, until_on_a_call

pytestmark = pytest.mark.sip

EXTERNAL = "+31612345678"
BOB_DIRECT = "+31201234102"
BOB_MOBILE = "+31612340002"


async def bob_on_a_call(exchange: Exchange, talk_ms: int) -> tuple[Sipp, Sipp]:
    alice = await phone(exchange, "alice", "alice", scenario("callee.xml", ring_ms=100), "-rtp_echo")
    bob = await place_call(exchange, "bob", "201", "final_talks.xml", talk_ms=talk_ms)
    await until_on_a_call(exchange, "bob", alice, bob)
    return alice, bob


@pytest.mark.parametrize("call_control", [True, False], ids=["call-control-on", "call-control-off"])
async def test_an_anywhere_location_takes_a_waiting_call_only_with_call_control(
    exchange: Exchange, call_control: bool
) -> None:
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202", direct=BOB_DIRECT)
    await exchange.add_user("carol", "203")
    await exchange.set_service("bob", Voicemail(active=False))
    await exchange.set_service("bob", CallWaiting(active=True))
    await exchange.set_service("bob", FixedMobile(fixed_rings="desk"))
    await exchange.set_service(
        "bob", Anywhere(locations=[AnywhereLocation(name="car", number=EXTERNAL, call_control=call_control)])
    )
    network = None
    if call_control:
        network = await start_sipp(
            exchange, "trunk", scenario("callee.xml", ring_ms=200), "-rtp_echo", port=exchange.trunk_port
        )
    alice, bob = await bob_on_a_call(exchange, talk_ms=4000)
    if call_control:
        carol = await place_call(exchange, "carol", "202", "final_talks.xml", talk_ms=500)
    else:
        carol = await place_call(exchange, "carol", "202", "final_rejected.xml", status=486)
    await carol.succeeded()
    second = await exchange.next_call()
    if network is not None:
        await network.succeeded()
        assert second.answered and second.branches == [("anywhere", 200)]
    else:
        assert second.outcome == "busy" and second.branches == []
        rows = [r for r in await exchange.call_logs("bob") if r.direction != "placed"]
        assert rows and rows[-1].plan is not None
        assert any("call control is off" in note for note in rows[-1].plan["notes"])
    for sipp in (bob, alice):
        await sipp.succeeded()
    first = await exchange.next_call()
    assert first.answered


@pytest.mark.parametrize(
    ("mode", "branches"),
    [("exchange", []), ("mobile_network", [("mobile", 486)])],
    ids=["by-the-exchange", "by-the-mobile-network"],
)
async def test_fixed_mobile_call_control_mode_decides_who_says_busy(
    exchange: Exchange, mode: str, branches: list[tuple[str, int]]
) -> None:
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202", direct=BOB_DIRECT, mobile=BOB_MOBILE)
    await exchange.add_user("carol", "203")
    await exchange.set_service("bob", Voicemail(active=False))
    await exchange.set_service("bob", CallWaiting(active=False))
    # The administrator's setting (read-only for the user).
    await exchange.set_service("bob", FixedMobile(call_control_mode=mode))  # type: ignore[arg-type]
    handset = None
    if mode == "mobile_network":
        # The mobile network's call waiting is off too: it refuses the call as busy.
        handset = await start_sipp(
            exchange, "handset", scenario("callee_refuses.xml", status=486), port=exchange.mobile_port
        )
    alice, bob = await bob_on_a_call(exchange, talk_ms=3000)
    carol = await place_call(exchange, "carol", "202", "final_rejected.xml", status=486)
    await carol.succeeded()
    if handset is not None:
        await handset.succeeded()
    second = await exchange.next_call()
    assert second.outcome == "busy" and second.branches == branches
    for sipp in (bob, alice):
        await sipp.succeeded()
    await exchange.next_call()
