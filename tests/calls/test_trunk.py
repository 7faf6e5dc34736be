"""Slice (e): calls in from the trunk to a user's number, out to the trunk with the outgoing identity (and
anonymous), company numbers by day and by night."""

from __future__ import annotations

import pytest

from hipper.domain.services import Anonymous, CallForwardingAlways, Voicemail
from hipper.store import admin
from hipper.store.models import Company
from tests.calls.conftest import (
    PASSWORD,
    Exchange,
    Sipp,
    expect_headers,
    phone,
    place_call,
    scenario,
    start_sipp,
)

pytestmark = pytest.mark.sip

OUTSIDE = "+31301234567"


async def call_from_trunk(exchange: Exchange, dialled: str, *, from_user: str = OUTSIDE, extra: str = "",
                          talk_ms: int = 1000) -> Sipp:  # fmt: skip
    text = scenario(
        "trunk_caller.xml", final="final_talks.xml", user=from_user, from_user=from_user, display="Outside",
        extra=extra, talk_ms=talk_ms,
    )  # fmt: skip
    return await start_sipp(exchange, "trunk-caller", text, "-s", dialled, port=exchange.trunk_port)


async def test_a_call_from_the_trunk_to_a_direct_number_rings_the_user(exchange: Exchange) -> None:
    await exchange.add_user("bob", "202", direct="+31201234102")
    checks = expect_headers(("From", r"sip:\+31301234567@"))
    bob = await phone(exchange, "bob", "bob", scenario("callee.xml", ring_ms=100, **checks), "-rtp_echo")
    outside = await call_from_trunk(exchange, "+31201234102")
    await outside.succeeded()
    await bob.succeeded()
    call = await exchange.next_call()
    assert call.answered and call.branches == [("desk", 200)]
    assert call.media["caller_packets_received"] > 30 and call.media["callee_packets_received"] > 30
    rows = await exchange.call_logs("bob")
    assert [(r.direction, r.outcome, r.remote_number) for r in rows] == [("received", "answered", OUTSIDE)]


async def test_an_anonymous_call_from_the_trunk_stays_anonymous(exchange: Exchange) -> None:
    await exchange.add_user("bob", "202", direct="+31201234102")
    checks = expect_headers(("From", r"anonymous@anonymous\.invalid"))
    bob = await phone(exchange, "bob", "bob", scenario("callee.xml", ring_ms=100, **checks))
    outside = await call_from_trunk(exchange, "+31201234102", extra="\n      Privacy: id")
    await outside.succeeded()
    await bob.succeeded()
    await exchange.next_call()
    rows = await exchange.call_logs("bob")
    assert [(r.direction, r.remote_number) for r in rows] == [("received", "")]


async def test_an_unknown_number_from_the_trunk_is_404(exchange: Exchange) -> None:
    text = scenario(
        "trunk_caller.xml", final="final_rejected.xml", user=OUTSIDE, from_user=OUTSIDE, display="Outside",
        extra="", status=404,
    ).replace("[branch-5]", "[branch-4]")  # fmt: skip
    outside = await start_sipp(exchange, "trunk-caller", text, "-s", "+31209999999", port=exchange.trunk_port)
    await outside.succeeded()


async def test_a_call_out_presents_the_direct_number_and_asserts_it_to_the_trunk(exchange: Exchange) -> None:
    await exchange.add_user("alice", "201", direct="+31201234101")
    checks = expect_headers(
        ("From", r"sip:\+31201234101@"),
        ("P-Asserted-Identity", r"sip:\+31201234101@"),
        ("To", r"sip:\+31612345678@"),
    )
    network = await start_sipp(
        exchange, "trunk", scenario("callee.xml", ring_ms=100, **checks), "-rtp_echo", port=exchange.trunk_port
    )
    alice = await place_call(exchange, "alice", "0612345678", "final_talks.xml", talk_ms=1000)
    await alice.succeeded()
    await network.succeeded()
    call = await exchange.next_call()
    assert call.answered and call.branches == [("trunk", 200)]
    rows = await exchange.call_logs("alice")
    assert [(r.direction, r.remote_number, r.local_identity) for r in rows] == [
        ("placed", "+31612345678", "+31201234101")
    ]


async def test_an_anonymous_call_out_hides_the_number_but_asserts_it_to_the_trusted_trunk(
    exchange: Exchange,
) -> None:
    await exchange.add_user("alice", "201", direct="+31201234101")
    await exchange.set_service("alice", Anonymous(desk=True))
    checks = expect_headers(
        ("From", r"anonymous@anonymous\.invalid"),
        ("Privacy", r"^ *id"),
        ("P-Asserted-Identity", r"sip:\+31201234101@"),
    )
    network = await start_sipp(
        exchange, "trunk", scenario("callee.xml", ring_ms=100, **checks), port=exchange.trunk_port
    )
    alice = await place_call(exchange, "alice", "0612345678", "final_talks.xml", talk_ms=500)
    await alice.succeeded()
    await network.succeeded()


async def test_the_company_number_rings_the_day_destination_and_at_night_the_night_destination(
    exchange: Exchange,
) -> None:
    await exchange.add_user("bob", "202")
    await exchange.add_user("carol", "203")
    async with exchange.sessions() as session:
        company = await session.get(Company, exchange.company_id)
        assert company is not None
        company.day_destination = "202"
        company.night_destination = "203"
        await session.commit()
    bob = await phone(exchange, "bob", "bob", scenario("callee.xml", ring_ms=100))
    outside = await call_from_trunk(exchange, "+31201234000")
    await outside.succeeded()
    await bob.succeeded()
    await exchange.next_call()
    assert [(r.direction, r.outcome) for r in await exchange.call_logs("bob")] == [("received", "answered")]

    async with exchange.sessions() as session:
        company = await session.get(Company, exchange.company_id)
        assert company is not None
        company.night_mode = True
        await session.commit()
    carol = await phone(exchange, "carol", "carol", scenario("callee.xml", ring_ms=100))
    outside = await call_from_trunk(exchange, "+31201234000")
    await outside.succeeded()
    await carol.succeeded()
    await exchange.next_call()
    assert [(r.direction, r.outcome) for r in await exchange.call_logs("carol")] == [("received", "answered")]


async def test_a_call_diverted_too_often_elsewhere_is_not_forwarded_again(exchange: Exchange) -> None:
    """Loops across exchanges: the incoming Diversion counter counts; past the limit the forward is refused."""
    await exchange.add_user("bob", "202", direct="+31201234102")
    await exchange.set_service("bob", CallForwardingAlways(active=True, destination="+31612345678"))
    await exchange.set_service("bob", Voicemail(active=False))
    text = scenario(
        "trunk_caller.xml", final="final_rejected.xml", user=OUTSIDE, from_user=OUTSIDE, display="Outside",
        extra="\n      Diversion: <sip:+31309999999@example.net>;reason=unconditional;counter=5", status=482,
    ).replace("[branch-5]", "[branch-4]")  # fmt: skip
    outside = await start_sipp(exchange, "trunk-caller", text, "-s", "+31201234102", port=exchange.trunk_port)
    await outside.succeeded()
    await exchange.next_call()
    [row] = await exchange.call_logs("bob")
    assert row.plan is not None and "refused" in row.plan["steps"][0]["reason"]


async def test_max_forwards_is_decremented_on_the_way_out(exchange: Exchange) -> None:
    await exchange.add_user("alice", "201", direct="+31201234101")
    checks = expect_headers(("Max-Forwards", r"^ *69"))
    network = await start_sipp(
        exchange, "trunk", scenario("callee.xml", ring_ms=100, **checks), port=exchange.trunk_port
    )
    alice = await place_call(exchange, "alice", "0612345678", "final_talks.xml", talk_ms=300)
    await alice.succeeded()
    await network.succeeded()


async def test_a_department_number_rings_its_destination(exchange: Exchange) -> None:
    await exchange.add_user("bob", "202")
    async with exchange.sessions() as session:
        company = await session.get(Company, exchange.company_id)
        assert company is not None
        await admin.create_group(session, company, "Sales", "+31201234500", day_destination="202")
        await session.commit()
    bob = await phone(exchange, "bob", "bob", scenario("callee.xml", ring_ms=100))
    outside = await call_from_trunk(exchange, "+31201234500")
    await outside.succeeded()
    await bob.succeeded()
    assert (await exchange.next_call()).answered


async def test_early_media_from_the_network_reaches_the_caller(exchange: Exchange) -> None:
    """183 with SDP: the caller gets a 183 with the exchange's SDP and hears the network's announcement."""
    await exchange.add_user("alice", "201", direct="+31201234101")
    network = await start_sipp(exchange, "trunk", scenario("callee_early_media.xml"), port=exchange.trunk_port)
    text = scenario(
        "caller.xml", final="final_rejected.xml", user="alice", status=486,
        provisional='<recv response="100" optional="true" />\n  <recv response="183" />',  # the 183 must come
    ).replace("[branch-5]", "[branch-4]")  # fmt: skip
    alice = await start_sipp(exchange, "caller", text, "-s", "0612345678", "-au", "alice", "-ap", PASSWORD)
    await alice.succeeded()
    await network.succeeded()
    call = await exchange.next_call()
    assert not call.answered and call.outcome == "busy"
    assert call.media["caller_packets_sent"] > 40  # the announcement, relayed before any answer
