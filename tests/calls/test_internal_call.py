"""Slice (a): an internal call A → B through the B2BUA with anchored media, between real SIP peers."""

from __future__ import annotations

import pytest

from hipper.domain.services import CallForwardingAlways
from hipper.passwords import Hasher
from hipper.store import admin, devices
from tests.calls.conftest import (
    PASSWORD,
    REALM,
    Exchange,
    Sipp,
    expect_headers,
    phone,
    place_call,
    scenario,
    start_sipp,
)

pytestmark = pytest.mark.sip


async def test_internal_call_with_digest_ringing_answer_media_and_call_logs(exchange: Exchange) -> None:
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202")
    bob = await phone(exchange, "bob", "bob", scenario("callee.xml", ring_ms=300), "-rtp_echo")
    alice = await place_call(exchange, "alice", "202", "final_talks.xml", talk_ms=3000)
    await alice.succeeded()
    await bob.succeeded()
    call = await exchange.next_call()
    assert call.answered and call.outcome == "answered"
    assert call.branches == [("desk", 200)]
    # RTP really went through the exchange both ways: the caller's capture to Bob, Bob's echo back to Alice.
    assert call.media["caller_packets_received"] > 50
    assert call.media["callee_packets_sent"] > 50
    assert call.media["callee_packets_received"] > 50
    assert call.media["caller_packets_sent"] > 50
    placed = await exchange.call_logs("alice")
    received = await exchange.call_logs("bob")
    # Each side's row says which of its own numbers the call used: the caller's extension, the callee's extension.
    assert [(r.direction, r.outcome, r.remote_number, r.local_identity) for r in placed] == [
        ("placed", "answered", "202", "201")
    ]
    assert [(r.direction, r.outcome, r.remote_number, r.local_identity) for r in received] == [
        ("received", "answered", "201", "202")
    ]
    assert received[0].plan is not None and received[0].plan["steps"][0]["action"] == "ring"
    assert received[0].answered_at is not None


async def test_callee_hangs_up_and_both_legs_end(exchange: Exchange) -> None:
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202")
    callee = scenario("callee_hangs_up.xml")
    bob = await phone(exchange, "bob", "bob", callee)
    alice = await place_call(exchange, "alice", "202", "final_application.xml")
    await bob.succeeded()
    await alice.succeeded()
    call = await exchange.next_call()
    assert call.answered


async def test_unknown_extension_is_404_and_wrong_password_is_403(exchange: Exchange) -> None:
    await exchange.add_user("alice", "201")
    alice = await place_call(exchange, "alice", "299", "final_rejected.xml", status=404)
    await alice.succeeded()
    wrong = scenario("caller.xml", final="final_rejected.xml", user="alice", status=403)
    sipp = await start_sipp(exchange, "wrong", wrong, "-s", "201", "-au", "alice", "-ap", "not-the-password")
    await sipp.succeeded()


async def test_the_caller_puts_the_call_on_hold_with_a_re_invite(exchange: Exchange) -> None:
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202")
    bob = await phone(exchange, "bob", "bob", scenario("callee.xml", ring_ms=100), "-rtp_echo")
    alice = await place_call(exchange, "alice", "202", "final_hold.xml")
    await alice.succeeded()  # its sendonly offer was answered recvonly by the exchange
    await bob.succeeded()
    assert (await exchange.next_call()).answered


async def test_a_late_offer_is_answered_in_the_ack(exchange: Exchange) -> None:
    """An INVITE without SDP: our 200 carries the offer, the caller's ACK the answer; media flows both ways."""
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202")
    bob = await phone(exchange, "bob", "bob", scenario("callee.xml", ring_ms=100), "-rtp_echo")
    text = scenario("caller_late_offer.xml", final="final_late_offer.xml", user="alice", talk_ms=2000)
    alice = await start_sipp(exchange, "caller-alice", text, "-s", "202", "-au", "alice", "-ap", PASSWORD)
    await alice.succeeded()
    await bob.succeeded()
    call = await exchange.next_call()
    assert call.answered
    assert call.media["caller_packets_received"] > 50  # Alice's audio to the address our offer named
    assert call.media["caller_packets_sent"] > 50  # Bob's echo back to Alice


async def test_a_call_logs_one_info_line_and_no_line_per_message(
    exchange: Exchange, caplog: pytest.LogCaptureFixture
) -> None:
    """Logs at INFO follow calls, not SIP messages: one `call.ended` line with the outcome per call."""
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202")
    bob = await phone(exchange, "bob", "bob", scenario("callee.xml", ring_ms=100))
    with caplog.at_level("INFO", logger="hipper"):
        # Only this window: the capture holds the whole test's records, and whether bob's registration above was
        # logged depends on the levels an earlier test in this process left behind.
        caplog.clear()
        alice = await place_call(exchange, "alice", "202", "final_talks.xml", talk_ms=500)
        await alice.succeeded()
        await bob.succeeded()
        await exchange.next_call()
    per_call = [r for r in caplog.records if r.name.startswith(("hipper.engine", "hipper.sip"))]
    assert [r.getMessage() for r in per_call if r.levelname == "INFO"] == ["call.ended"]
    [ended] = [r for r in per_call if r.getMessage() == "call.ended"]
    assert ended.__dict__["outcome"] == "answered" and ended.__dict__["branches"] == 1


async def test_a_phone_is_told_it_may_transfer(exchange: Exchange) -> None:
    """The INVITE to a phone allows REFER and supports Replaces (RFC 3515, RFC 3891): many desk phones offer their
    transfer key only then."""
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202")
    checks = expect_headers(("Allow", r"\bREFER\b"), ("Supported", r"\breplaces\b"))
    bob = await phone(exchange, "bob", "bob", scenario("callee.xml", ring_ms=100, **checks), "-rtp_echo")
    alice = await place_call(exchange, "alice", "202", "final_talks.xml", talk_ms=200)
    await bob.succeeded()
    await alice.succeeded()


async def test_a_user_of_another_company_sees_the_callers_number_not_their_extension(exchange: Exchange) -> None:
    """Extensions are per company: alice's 201 is someone else's at Other BV. Calling dave there (his direct number),
    alice is shown as the outside world sees her — her direct number in E.164 — on his phone and in his call log,
    so his callback reaches her; her own row says which of her numbers the call used."""
    await exchange.add_user("alice", "201", direct="+31201234101")
    callee = await dave_at_other_bv(exchange)
    alice = await place_call(exchange, "alice", "+31301234567", "final_talks.xml", talk_ms=300)
    await alice.succeeded()
    await callee.succeeded()
    assert (await exchange.next_call()).answered
    [received] = await exchange.call_logs("dave")
    assert (received.direction, received.remote_number) == ("received", "+31201234101")
    [placed] = await exchange.call_logs("alice")
    assert (placed.direction, placed.remote_number, placed.local_identity) == (
        "placed", "+31301234567", "+31201234101"
    )  # fmt: skip


async def dave_at_other_bv(exchange: Exchange) -> Sipp:
    """dave, extension 201 (as alice's) at another company on the exchange, direct +31301234567; his phone answers
    and checks that the caller shows as alice's direct number."""
    async with exchange.sessions() as session:
        other = await admin.create_company(session, "Other BV", "+31301230000")
        dave = await admin.create_user(
            session, Hasher(1, 1024), username="dave", password="correct horse 1", company=other, first_name="Dave",
            extension="201", direct_number="+31301234567", licences=["full"],
        )  # fmt: skip
        await devices.create_device(session, dave, auth_username="dave", password=PASSWORD, realm=REALM)
        await session.commit()
        exchange.users["dave"] = dave.id
    checks = expect_headers(("From", r"sip:\+31201234101@"))
    return await phone(exchange, "dave", "dave", scenario("callee.xml", ring_ms=100, **checks), "-rtp_echo")


async def test_a_call_forwarded_to_another_company_shows_the_callers_number(exchange: Exchange) -> None:
    """alice calls her colleague bob, who forwards everything to dave at Other BV: dave sees alice's direct number,
    not her extension (the forward crosses companies as a direct call does)."""
    await exchange.add_user("alice", "201", direct="+31201234101")
    await exchange.add_user("bob", "202")
    await exchange.set_service("bob", CallForwardingAlways(active=True, destination="+31301234567"))
    callee = await dave_at_other_bv(exchange)
    alice = await place_call(exchange, "alice", "202", "final_talks.xml", talk_ms=300)
    await alice.succeeded()
    await callee.succeeded()
    assert (await exchange.next_call()).answered
    [received] = await exchange.call_logs("dave")
    assert (received.direction, received.remote_number) == ("received", "+31201234101")
