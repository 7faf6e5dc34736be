"""Slice (b): busy, no answer and not reachable, with forwarding (trunk or colleague), voicemail and loops."""

from __future__ import annotations

import pytest

from hipper.domain.services import (
    CallForwardingAlways,
    CallForwardingBusy,
    CallForwardingNoAnswer,
    CallForwardingNotReachable,
    Voicemail,
)
from tests.calls.conftest import Exchange, expect_headers, phone, place_call, scenario, trunk

pytestmark = pytest.mark.sip

EXTERNAL = "+31612345678"


async def test_busy_without_forwarding_gives_the_caller_486(exchange: Exchange) -> None:
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202")
    bob = await phone(exchange, "bob", "bob", scenario("callee_refuses.xml", status=486))
    alice = await place_call(exchange, "alice", "202", "final_rejected.xml", status=486)
    await alice.succeeded()
    await bob.succeeded()
    call = await exchange.next_call()
    assert not call.answered and call.outcome == "busy"
    assert [(r.direction, r.outcome) for r in await exchange.call_logs("bob")] == [("missed", "busy")]
    assert [(r.direction, r.outcome) for r in await exchange.call_logs("alice")] == [("placed", "busy")]


async def test_forward_on_busy_leaves_through_the_trunk_with_history_info_and_diversion(exchange: Exchange) -> None:
    await exchange.add_user("alice", "201", direct="+31201234101")
    await exchange.add_user("bob", "202", direct="+31201234102")
    await exchange.set_service("bob", CallForwardingBusy(active=True, destination=EXTERNAL))
    checks = expect_headers(
        ("History-Info", r"cause=486"),
        ("Diversion", r"<sip:\+31201234102@.*reason=user-busy;counter=1"),
    )
    network = await trunk(exchange, "trunk", scenario("callee.xml", ring_ms=200, **checks), "-rtp_echo")
    bob = await phone(exchange, "bob", "bob", scenario("callee_refuses.xml", status=486))
    alice = await place_call(exchange, "alice", "202", "final_talks.xml", talk_ms=1500)
    await alice.succeeded()
    await bob.succeeded()
    await network.succeeded()
    call = await exchange.next_call()
    assert call.answered
    assert call.branches == [("desk", 486), ("forward", 200)]
    assert call.media["callee_packets_received"] > 30  # the trunk's echo came back through the engine
    bob_rows = await exchange.call_logs("bob")
    assert [(r.direction, r.outcome) for r in bob_rows] == [("missed", "busy, forwarded")]
    assert bob_rows[0].plan is not None
    assert bob_rows[0].plan["steps"][0]["on_busy"][0]["action"] == "forward"


@pytest.mark.parametrize("exchange", [{"voicemail_silence_seconds": 2.0}], indirect=True)
async def test_no_answer_goes_to_voicemail(exchange: Exchange) -> None:
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202")
    await exchange.set_service("bob", Voicemail(active=True, on_no_answer=True, rings=2))
    bob = await phone(exchange, "bob", "bob", scenario("callee_rings.xml"))
    alice = await place_call(exchange, "alice", "202", "final_application.xml")
    await bob.succeeded()  # it rang, then got a CANCEL after two rings
    await alice.succeeded()  # answered by voicemail, heard the greeting and the tone, said nothing, got a BYE
    call = await exchange.next_call()
    assert call.outcome == "voicemail"
    assert call.branches == [("desk", 487)]
    # The greeting (and the tone) went to the caller as RTP.
    assert call.media["caller_packets_sent"] > 100
    assert [(r.direction, r.outcome) for r in await exchange.call_logs("bob")] == [("missed", "no-answer, voicemail")]


async def test_forward_on_no_answer_to_a_colleague_re_enters_routing_for_that_colleague(exchange: Exchange) -> None:
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202")
    await exchange.add_user("carol", "203")
    await exchange.set_service("bob", CallForwardingNoAnswer(active=True, destination="203", rings=1))
    bob = await phone(exchange, "bob", "bob", scenario("callee_rings.xml"))
    checks = expect_headers(("History-Info", r"cause=408"), ("Diversion", r"reason=no-answer;counter=1"))
    carol = await phone(exchange, "carol", "carol", scenario("callee.xml", ring_ms=100, **checks), "-rtp_echo")
    alice = await place_call(exchange, "alice", "202", "final_talks.xml", talk_ms=1000)
    await alice.succeeded()
    await bob.succeeded()
    await carol.succeeded()
    call = await exchange.next_call()
    assert call.answered and call.branches == [("desk", 487), ("desk", 200)]
    assert [(r.direction, r.outcome) for r in await exchange.call_logs("bob")] == [("missed", "no-answer, forwarded")]
    carol_rows = await exchange.call_logs("carol")
    assert [(r.direction, r.outcome) for r in carol_rows] == [("received", "answered")]
    assert carol_rows[0].plan is not None and carol_rows[0].plan["user_id"] == exchange.users["carol"]


async def test_not_reachable_without_voicemail_is_480(exchange: Exchange) -> None:
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202")
    await exchange.set_service("bob", Voicemail(active=False))
    alice = await place_call(exchange, "alice", "202", "final_rejected.xml", status=480)
    await alice.succeeded()
    call = await exchange.next_call()
    assert call.outcome == "not-reachable" and call.branches == []
    rows = await exchange.call_logs("bob")
    assert [(r.direction, r.outcome) for r in rows] == [("missed", "not-reachable")]
    assert rows[0].plan is not None and rows[0].plan["steps"][0]["line"] == 9


async def test_forward_when_not_reachable_goes_out_through_the_trunk(exchange: Exchange) -> None:
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202", direct="+31201234102")
    await exchange.set_service("bob", CallForwardingNotReachable(active=True, destination=EXTERNAL))
    checks = expect_headers(("History-Info", r"cause=503"), ("Diversion", r"reason=unavailable"))
    network = await trunk(exchange, "trunk", scenario("callee.xml", ring_ms=100, **checks), "-rtp_echo")
    alice = await place_call(exchange, "alice", "202", "final_talks.xml", talk_ms=1000)
    await alice.succeeded()
    await network.succeeded()
    call = await exchange.next_call()
    assert call.answered and call.branches == [("forward", 200)]


async def test_a_forwarding_loop_between_two_users_ends_with_482(exchange: Exchange) -> None:
    """bob → carol → bob: the loop is seen when the call comes back to bob (docs/call-routing.md "Loops"); without
    voicemail it ends with 482, and each user has one call-log row for the call."""
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202")
    await exchange.add_user("carol", "203")
    for name, destination in (("bob", "203"), ("carol", "202")):
        await exchange.set_service(name, CallForwardingAlways(active=True, destination=destination))
        await exchange.set_service(name, Voicemail(active=False))
    alice = await place_call(exchange, "alice", "202", "final_rejected.xml", status=482)
    await alice.succeeded()
    call = await exchange.next_call()
    assert not call.answered
    assert [(r.direction, r.outcome) for r in await exchange.call_logs("bob")] == [
        ("missed", "forwarded, loop, rejected")
    ]
    assert [(r.direction, r.outcome) for r in await exchange.call_logs("carol")] == [("missed", "forwarded")]
    rows = await exchange.call_logs("alice")
    assert [r.direction for r in rows] == ["placed"]
